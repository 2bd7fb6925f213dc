"""Reads an AlphaPose YAML config (``configs/<dataset>/<backbone>/*.yaml``) into our architecture terms.

AlphaPose names its network in ``MODEL.TYPE`` with the options below it, and the crop and heatmap
sizes in ``DATA_PRESET``. Only heatmap models in the COCO 17 and Halpe 26 layouts map onto our
networks today; the others are refused with one line saying why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

KEYPOINT_LAYOUTS = {17: "COCO 17", 26: "Halpe 26"}
ARCHITECTURES = {"FastPose": "fastpose", "FastPose_DUC": "fastpose-duc", "SimplePose": "simplebaseline",
                 "PoseHighResolutionNet": "hrnet"}
DCN_TYPES = ("FastPose", "FastPose_DUC")  # the models whose backbones read MODEL.DCN
HRNET_STAGES = ((1, 2), (4, 3), (3, 4))  # stages 2..4 of the public W32/W48: (NUM_MODULES, NUM_BRANCHES)


@dataclass(frozen=True)
class AlphaPoseConfig:
    """What an AlphaPose config says about its pose network, in the terms of ``build_network``."""

    arch: str  # a name in rmpe.export.networks.ARCHITECTURES
    options: dict[str, Any] = field(hash=False)  # that architecture's options
    num_keypoints: int
    input_size: tuple[int, int]  # crop (h, w)
    heatmap_size: tuple[int, int]  # heatmaps (h, w)


def lookup(config: dict[str, Any], dotted: str, where: Path, default: Any = ...) -> Any:
    """The value at ``A.B.C`` of the parsed config; a missing key is an error unless a default is given."""
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            if default is not ...:
                return default
            raise ValueError(f"{where}: AlphaPose config has no {dotted}")
        node = node[part]
    return node


def size_pair(config: dict[str, Any], dotted: str, where: Path) -> tuple[int, int]:
    """A ``[h, w]`` size of two positive integers."""
    value = lookup(config, dotted, where)
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        raise ValueError(f"{where}: {dotted} must be two positive integers [h, w], not {value!r}")
    return value[0], value[1]


def refuse_unsupported(config: dict[str, Any], model_type: str, where: Path) -> None:
    """Refuses heads, layers and layouts that the deploy graph cannot hold yet, saying why."""
    if not isinstance(model_type, str) or model_type not in ARCHITECTURES:
        raise ValueError(f"{where}: MODEL.TYPE {model_type!r} is not supported yet "
                         f"(supported: {', '.join(ARCHITECTURES)})")
    preset = lookup(config, "DATA_PRESET.TYPE", where)
    if preset != "simple":
        raise ValueError(f"{where}: DATA_PRESET.TYPE {preset!r} is not supported yet (only 'simple': 2-D heatmaps)")
    losses = {str(lookup(config, key, where, "MSELoss")) for key in ("DATA_PRESET.LOSS_TYPE", "LOSS.TYPE")}
    losses.discard("MSELoss")
    if losses:
        raise ValueError(f"{where}: loss {', '.join(sorted(losses))}: regression (integral) heads are not supported "
                         "yet (their keypoints are expectations of normalised heatmap marginals, not heatmap peaks)")
    if model_type in DCN_TYPES and "DCN" in lookup(config, "MODEL", where):
        stages = lookup(config, "MODEL.STAGE_WITH_DCN", where, [])
        if not isinstance(stages, list) or any(stages):
            raise ValueError(f"{where}: DCN (deformable convolution) models are not supported yet (AlphaPose's "
                             "DCNv1 is a custom CUDA op that this exporter does not rebuild from standard ops)")
    joints = lookup(config, "DATA_PRESET.NUM_JOINTS", where)
    if not isinstance(joints, int) or isinstance(joints, bool) or joints not in KEYPOINT_LAYOUTS:
        raise ValueError(f"{where}: {joints!r} keypoints are not supported yet (only the "
                         f"{' and '.join(KEYPOINT_LAYOUTS.values())} layouts have names, flip pairs and sigmas)")


def hrnet_width(config: dict[str, Any], where: Path) -> int:
    """The branch width of a PoseHighResolutionNet config whose structure is the public W32/W48 one."""
    channels = lookup(config, "MODEL.STAGE2.NUM_CHANNELS", where, None)
    width = channels[0] if isinstance(channels, list) and channels else None
    for stage, (modules, branches) in enumerate(HRNET_STAGES, start=2):
        cfg = lookup(config, f"MODEL.STAGE{stage}", where)
        expected = {"NUM_MODULES": modules, "NUM_BRANCHES": branches, "NUM_BLOCKS": [4] * branches,
                    "NUM_CHANNELS": [width * 2**b for b in range(branches)] if isinstance(width, int) else None,
                    "BLOCK": "BASIC", "FUSE_METHOD": "SUM"}
        if not isinstance(cfg, dict) or any(cfg.get(k) != v for k, v in expected.items()):
            raise ValueError(f"{where}: MODEL.STAGE{stage} is not the standard HRNet-W32/W48 structure; "
                             "other HRNet structures are not supported yet")
    if lookup(config, "MODEL.FINAL_CONV_KERNEL", where, 1) != 1:
        raise ValueError(f"{where}: HRNet with a 3x3 final layer (FINAL_CONV_KERNEL 3) is not supported yet")
    return width


def architecture_options(config: dict[str, Any], model_type: str, where: Path) -> dict[str, Any]:
    """The options of our architecture for this MODEL section (validated by the network itself)."""
    model = lookup(config, "MODEL", where)
    if model_type == "PoseHighResolutionNet":
        return {"width": hrnet_width(config, where)}
    depth = lookup(config, "MODEL.NUM_LAYERS", where)
    if model_type == "FastPose":
        return {"depth": depth, "conv_dim": model.get("CONV_DIM", 128)}
    if model_type == "FastPose_DUC":
        convs = [lookup(config, f"MODEL.STAGE{s}.NUM_CONV", where) for s in (1, 2, 3)]
        return {"depth": depth, "backbone": lookup(config, "MODEL.BACKBONE", where), "duc_convs": convs}
    filters = model.get("NUM_DECONV_FILTERS", [256, 256, 256])
    if filters != [256, 256, 256]:
        raise ValueError(f"{where}: SimplePose with NUM_DECONV_FILTERS {filters!r} is not supported yet "
                         "(the published models use [256, 256, 256])")
    return {"depth": depth}


def read_alphapose_config(path: str | Path) -> AlphaPoseConfig:
    """Parses an AlphaPose YAML config; unreadable, malformed or unsupported configs raise ``ValueError``."""
    where = Path(path)
    try:
        config = yaml.safe_load(where.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{where}: cannot read the config ({exc.strerror or exc})") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ValueError(f"{where}: not a YAML file ({str(exc).splitlines()[0]})") from None
    if not isinstance(config, dict) or not isinstance(config.get("MODEL"), dict):
        raise ValueError(f"{where}: not an AlphaPose config (no MODEL section)")
    model_type = lookup(config, "MODEL.TYPE", where)
    refuse_unsupported(config, model_type, where)
    input_size = size_pair(config, "DATA_PRESET.IMAGE_SIZE", where)
    heatmap_size = size_pair(config, "DATA_PRESET.HEATMAP_SIZE", where)
    if heatmap_size != (input_size[0] // 4, input_size[1] // 4) or input_size[0] % 4 or input_size[1] % 4:
        raise ValueError(f"{where}: HEATMAP_SIZE {list(heatmap_size)} is not a quarter of IMAGE_SIZE "
                         f"{list(input_size)}, which every supported network gives")
    return AlphaPoseConfig(arch=ARCHITECTURES[model_type], options=architecture_options(config, model_type, where),
                           num_keypoints=lookup(config, "DATA_PRESET.NUM_JOINTS", where),
                           input_size=input_size, heatmap_size=heatmap_size)
