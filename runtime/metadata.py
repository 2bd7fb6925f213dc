"""What an exported model says about itself: keypoint layout, input size, normalisation, versions.

The same dictionary is stored in the ONNX file's ``metadata_props`` (one string per key, JSON for
structured values) and in the ``model.json`` sidecar, so the runtime needs no constants of its own.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .keypoints import LAYOUTS, check_layout, check_sigmas, layout_for_names

INPUT_IMAGES = "images"
INPUT_IMAGE_SIZES = "image_sizes"
INPUT_BOXES = "boxes"
INPUT_BOX_IMAGE_INDEX = "box_image_index"
OUTPUT_KEYPOINTS = "keypoints"
OUTPUT_SCORES = "scores"
OUTPUT_HEATMAPS = "heatmaps"  # optional (rmpe-export --heatmaps): the network's raw heatmaps, (N, K, h, w)


@dataclass
class ModelMetadata:
    """The contract values a runtime needs; see docs/onnx-contract.md."""

    keypoint_names: list[str]
    skeleton: list[list[int]]
    flip_pairs: list[list[int]]
    input_size: list[int]  # [height, width] of the SPPE crop
    normalisation: dict[str, Any]  # {"scale": 1/255, "mean": [r,g,b], "std": [r,g,b]}
    decode: str = "argmax+log_parabola"
    precision: str = "fp32"
    box_enlarge: float = 1.25
    flip_test: bool = False
    max_boxes: int = 64
    trained: bool = True
    rmpe_version: str = ""
    checkpoint_sha256: str = ""
    model_name: str = "rmpe"
    crop: dict[str, Any] = field(default_factory=dict)  # {"taps": T, "cast_first": bool}: how the graph samples crops
    pose_nms: dict[str, Any] = field(default_factory=dict)  # {"default": mode, "modes": {mode: constants}}
    extra: dict[str, Any] = field(default_factory=dict)
    layout: str = ""  # a runtime.keypoints.LAYOUTS key, or another name for a layout of the user's own
    oks_sigmas: list[float] | None = None  # per keypoint; None: no COCO keypoint AP (e.g. MPII, scored by PCKh)

    def __post_init__(self) -> None:
        """Fill what a model exported before layouts existed lacks: its layout, found from its
        keypoint names, and its OKS sigmas, taken from the layout."""
        if not self.layout and isinstance(self.keypoint_names, list):
            found = layout_for_names(self.keypoint_names)
            self.layout = found.name if found else ""
        known = LAYOUTS.get(self.layout) if isinstance(self.layout, str) else None
        if self.oks_sigmas is None and known and known.oks_sigmas is not None:
            self.oks_sigmas = list(known.oks_sigmas)

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_names)

    def to_props(self) -> dict[str, str]:
        """Flatten to string key/values for ONNX ``metadata_props``."""
        return {k: v if isinstance(v, str) else json.dumps(v) for k, v in asdict(self).items()}

    @classmethod
    def from_props(cls, props: dict[str, str]) -> "ModelMetadata":
        """Inverse of :meth:`to_props`; unknown keys are kept in ``extra``."""
        known = set(cls.__dataclass_fields__)
        values: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, raw in props.items():
            field_type = cls.__dataclass_fields__[key].type if key in known else None
            value = raw if field_type == "str" else _maybe_json(raw)
            (values if key in known else extra)[key] = value
        missing = [k for k in ("keypoint_names", "skeleton", "flip_pairs", "input_size", "normalisation") if k not in values]
        if missing:
            raise ValueError(f"model metadata lacks {', '.join(missing)}; was it exported by rmpe-export?")
        values.setdefault("extra", {}).update(extra)
        meta = cls(**values)
        meta.check()
        return meta

    def check(self) -> None:
        """Raise ``ValueError`` naming the first entry a runtime cannot use (the layout drawings and
        the pose NMS index with)."""
        try:
            check_layout(self.keypoint_names, self.skeleton, self.flip_pairs)
        except ValueError as exc:
            raise ValueError(f"metadata {exc}") from None
        if not isinstance(self.layout, str):
            raise ValueError(f"metadata layout must be a name, got {self.layout!r}")
        known = LAYOUTS.get(self.layout)
        if known and known.num_keypoints != self.num_keypoints:
            raise ValueError(f"metadata layout {self.layout} has {known.num_keypoints} keypoints, "
                             f"keypoint_names has {self.num_keypoints}")
        try:
            check_sigmas(self.oks_sigmas, self.num_keypoints)
        except ValueError as exc:
            raise ValueError(f"metadata {exc}") from None
        size = self.input_size
        if not isinstance(size, list) or len(size) != 2 or not all(type(v) is int and v > 0 for v in size):
            raise ValueError(f"metadata input_size must be [height, width], got {size!r}")

    def write_json(self, path: Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def read_json(cls, path: Path) -> "ModelMetadata":
        return cls(**json.loads(Path(path).read_text()))


def _maybe_json(raw: str) -> Any:
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, TypeError):
        return raw
