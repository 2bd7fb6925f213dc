"""The model's configuration: architecture, keypoint layout and preprocessing, saved as JSON.

A checkpoint in rmpe's own format is ``NAME.safetensors`` plus ``NAME.json`` holding this.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rmpe.runtime.keypoints import COCO_FLIP_PAIRS, COCO_KEYPOINTS, COCO_SKELETON, check_layout


MIN_INPUT, MAX_INPUT = 8, 2048  # crop sides the exporter accepts, in pixels
CHANNEL_ORDERS = ("rgb", "bgr")
PIXEL_CENTRES = ("half", "integer")
DECODES = ("log_parabola", "quarter_offset", "bearpaw", "princeton")  # the last two: those hourglass sources' quarter-offset rules
CROP_TAPS = 3  # samples per crop pixel per axis (graph.footprint_taps); 0: one exact bilinear sample


@dataclass
class ModelConfig:
    """Everything needed to rebuild the network and describe it in exported metadata."""

    name: str = "rmpe-hg2-c160"
    arch: str = "hourglass"  # a network of export/networks; stacks … stem below are the hourglass's options
    arch_options: dict[str, Any] = field(default_factory=dict)  # the options of any other architecture
    stacks: int = 2
    channels: int = 160
    depth: int = 3
    stem: str = "conv"  # "residual": the paper's stem (configs written before this key existed)
    heatmap: str = "gaussian"  # unit-peak Gaussians (MSE); "softmax": logits under a spatial softmax (see graph.py)
    decode_blur: float = 1.0  # σ (heatmap cells) of the blur before a Gaussian model's sub-cell step; 0: none
    input_size: tuple[int, int] = (128, 96)  # (height, width) of the SPPE crop
    stn: bool = True
    stn_channels: int = 16
    stn_input_scale: float = 0.5  # the localisation network sees the crop at this scale
    keypoint_names: list[str] = field(default_factory=lambda: list(COCO_KEYPOINTS))
    skeleton: list[list[int]] = field(default_factory=lambda: [list(p) for p in COCO_SKELETON])
    flip_pairs: list[list[int]] = field(default_factory=lambda: [list(p) for p in COCO_FLIP_PAIRS])
    pixel_scale: float = 1 / 255
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    box_enlarge: float = 1.25
    # Conventions of the checkpoint's source, reproduced inside the graph (docs/onnx-contract.md, "Conventions"):
    channel_order: str = "rgb"  # the network's input channel order; mean and std are given in this order
    pixel_centres: str = "half"  # "half": pixel i covers [i, i+1) (rmpe); "integer": pixel i is centred on i (OpenCV's warpAffine)
    decode: str = "log_parabola"  # or "quarter_offset": argmax, then 0.25 cell toward the larger neighbour; "bearpaw", "princeton": graph.py
    quarter_margin: tuple[int, int] = (2, 1)  # quarter_offset: cells the peak keeps from the (top/left, bottom/right) edges to be moved
    flip_shift: int = 0  # flip test: columns the mirrored crop's heatmaps move right before the average
    crop_taps: int = CROP_TAPS  # the crop's samples per pixel per axis unless rmpe-export says otherwise
    trained: bool = False
    train_steps: int = 0  # optimiser steps of the run that made these weights (0: unknown)
    train_minutes: float = 0.0  # that run's training time
    notes: str = ""

    @property
    def train_step_seconds(self) -> float:
        """Seconds per optimiser step of the recorded training run (0 when unknown)."""
        return self.train_minutes * 60 / self.train_steps if self.train_steps else 0.0

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_names)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        if not isinstance(data, dict):
            raise ValueError(f"a model config is a JSON object, got a {type(data).__name__}")
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(unknown)}")
        data = dict(data)
        data.setdefault("stem", "residual")
        data.setdefault("heatmap", "gaussian")
        data.setdefault("decode_blur", 0.0)  # configs written before the blur keep their decode
        try:
            for key in ("input_size", "mean", "std", "quarter_margin"):
                if key in data:
                    data[key] = tuple(data[key])
            config = cls(**data)
        except TypeError as exc:
            raise ValueError(str(exc)) from None
        config.check()
        return config

    def check(self) -> None:
        """Raise ``ValueError`` naming the first value a model cannot be built from."""
        limits = {"stacks": (1, 16), "channels": (1, 1024), "depth": (1, 6), "stn_channels": (1, 512),
                  "flip_shift": (0, 4), "crop_taps": (0, 8)}
        for name, (lo, hi) in limits.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
                raise ValueError(f"{name} must be a whole number from {lo} to {hi}, got {value!r}")
        if (len(self.input_size) != 2 or not all(isinstance(v, int) and MIN_INPUT <= v <= MAX_INPUT for v in self.input_size)):
            raise ValueError(f"input_size must be [height, width], each {MIN_INPUT} to {MAX_INPUT}, got {list(self.input_size)}")
        for name, choices in (("channel_order", CHANNEL_ORDERS), ("pixel_centres", PIXEL_CENTRES), ("decode", DECODES)):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}, got {getattr(self, name)!r}")
        if len(self.quarter_margin) != 2 or not all(type(v) is int and 0 <= v <= 4 for v in self.quarter_margin):
            raise ValueError(f"quarter_margin must be two whole numbers from 0 to 4, got {list(self.quarter_margin)}")
        if self.stn and self.arch != "hourglass":
            raise ValueError(f"the STN is trained with rmpe's own hourglass; a {self.arch} model runs without one (stn: false)")
        check_layout(self.keypoint_names, self.skeleton, self.flip_pairs)

    @property
    def network_options(self) -> dict[str, Any]:
        """The options :func:`rmpe.export.networks.build_network` gets for this config's architecture."""
        if self.arch == "hourglass":
            return {"stacks": self.stacks, "channels": self.channels, "depth": self.depth, "stem": self.stem}
        return dict(self.arch_options)

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> "ModelConfig":
        """The config in ``path``; a file that is not one raises ``ValueError`` naming it."""
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, ValueError) as exc:
            raise ValueError(f"{path}: bad model config ({str(exc).splitlines()[0][:200]})") from None
