"""Checkpoints of other projects: AlphaPose (FastPose, FastPose-DUC, SimplePose, HRNet), the standalone
HRNet and SimpleBaseline repositories, and the princeton-vl / bearpaw stacked hourglasses.

For a state dict this module says which architecture it is (from its key names), the options its
shapes give, the keypoint layout its head's channel count gives, and the pre- and post-processing
conventions of the project that trained it; it returns the ModelConfig and the tensors under our
networks' names, checked strictly (one line naming what is missing, unexpected or wrongly shaped).
Our networks' module names are AlphaPose's (export/networks), so only microsoft's SimpleBaseline
needs renaming (its backbone sits at the top level, not under ``preact.``); the hourglasses are
mapped by export/hourglass_sources.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from rmpe.export.alphapose_config import read_alphapose_config
from rmpe.export.checkpoint import CheckpointError
from rmpe.export.config import ModelConfig
from rmpe.export.hourglass_sources import SOURCES as HOURGLASS_SOURCES
from rmpe.export.hourglass_sources import detect_hourglass_source, hourglass_config, hourglass_state_dict
from rmpe.export.networks import build_network
from rmpe.export.networks.resnet import DEPTHS, uses_deformable_conv
from rmpe.runtime.keypoints import LAYOUTS, Layout

HEATMAP_ARCHS = ("fastpose", "fastpose-duc", "simplebaseline", "hrnet")
ARCHS = HEATMAP_ARCHS + HOURGLASS_SOURCES  # what --arch names (besides auto)
LAYOUT_BY_HEADS = {17: "coco17", 26: "halpe26", 16: "mpii16"}
HEAD_KEYS = {"fastpose": "conv_out.weight", "fastpose-duc": "conv_out.weight",
             "simplebaseline": "final_layer.weight", "hrnet": "final_layer.weight"}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
BACKBONE_PREFIX = "preact."


@dataclass(frozen=True)
class Conventions:
    """A source project's pre-processing, as ModelConfig fields (docs/onnx-contract.md, "Conventions")."""

    description: str
    channel_order: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


# All three crop the box grown to the crop's aspect then ×1.25 with an affine warp whose pixel i is
# centred on i (no half-pixel correction), decode argmax + a quarter cell toward the larger neighbour
# only for 1 < x < W-1 and 1 < y < H-1, and shift the flipped heatmaps one column right.
CONVENTIONS = {
    "alphapose": Conventions("AlphaPose: RGB / 255 minus (0.406, 0.457, 0.480), no std division",
                             "rgb", (0.406, 0.457, 0.480), (1.0, 1.0, 1.0)),
    "hrnet": Conventions("leoxiaobin/deep-high-resolution-net.pytorch: RGB (COLOR_RGB), ImageNet mean and std",
                         "rgb", IMAGENET_MEAN, IMAGENET_STD),
    "simplebaseline": Conventions("microsoft/human-pose-estimation.pytorch: BGR as OpenCV reads it, ImageNet "
                                  "mean and std applied in that channel order", "bgr", IMAGENET_MEAN, IMAGENET_STD),
}


@dataclass(frozen=True)
class Imported:
    """A source checkpoint made ready for the deploy graph."""

    arch: str  # one of ARCHS
    config: ModelConfig
    state: dict[str, torch.Tensor]  # under our network's key names (no ``sppe.`` prefix)
    conventions: str  # a CONVENTIONS name, or the hourglass source's own

    def summary(self) -> str:
        """One line for rmpe-export to print: what was read and which conventions the graph follows."""
        cfg = self.config
        options = ", ".join(f"{k} {v}" for k, v in cfg.network_options.items())
        h, w = cfg.input_size
        layout = next((name for name, lay in LAYOUTS.items() if list(lay.keypoint_names) == cfg.keypoint_names), "custom")
        return (f"imported {self.arch} ({options}), {cfg.num_keypoints} keypoints ({layout}), crop {h}x{w}, "
                f"conventions: {CONVENTIONS[self.conventions].description if self.conventions in CONVENTIONS else self.conventions}")


def detect_arch(keys) -> str | None:
    """The source architecture whose state dict has these (prefix-stripped) keys, or None."""
    names = set(keys)
    if source := detect_hourglass_source(names):
        return source
    if "final_layer.weight" in names and any(k.startswith("stage4.") for k in names):
        return "hrnet"
    if "final_layer.weight" in names and "deconv_layers.0.weight" in names:
        return "simplebaseline"
    if "conv_out.weight" in names and f"{BACKBONE_PREFIX}conv1.weight" in names:
        return "fastpose-duc" if any(k.startswith("duc3.") for k in names) else "fastpose"
    return None


def _count(names: set[str], pattern: str) -> int:
    """One more than the largest number ``pattern``'s group matches (0 when none match)."""
    found = [int(m.group(1)) for k in names if (m := re.fullmatch(pattern, k))]
    return max(found) + 1 if found else 0


def resnet_depth(names: set[str], where: str) -> int:
    """The ResNet depth of a backbone under ``preact.``, from its blocks per stage (conv3: bottlenecks)."""
    blocks = tuple(_count(names, rf"preact\.layer{s}\.(\d+)\.conv1\.weight") for s in (1, 2, 3, 4))
    bottleneck = f"{BACKBONE_PREFIX}layer1.0.conv3.weight" in names
    for depth, counts in DEPTHS.items():
        if counts == blocks and (depth >= 50) == bottleneck:
            return depth
    raise CheckpointError(f"{where}: backbone with {'/'.join(map(str, blocks))} blocks per stage is not a "
                          f"ResNet-{'/'.join(map(str, DEPTHS))}")


def arch_options(arch: str, state: dict[str, torch.Tensor], where: str) -> dict[str, object]:
    """The options of ``arch`` that this state dict's key names and shapes give."""
    names = set(state)
    if arch == "hrnet":
        if "transition1.0.0.weight" not in names:
            raise CheckpointError(f"{where}: checkpoint does not fit HRNet; missing (1): transition1.0.0.weight")
        return {"width": int(state["transition1.0.0.weight"].shape[0])}
    options: dict[str, object] = {"depth": resnet_depth(names, where)}
    if arch == "fastpose" and "conv_out.weight" in names:
        options["conv_dim"] = int(state["conv_out.weight"].shape[1])
    if arch == "fastpose-duc":
        shuffle = f"{BACKBONE_PREFIX}layer2.0.conv2.1.weight" in names
        se = any(k.endswith(".se.fc.0.weight") for k in names)
        options["backbone"] = "shuffle" if shuffle else "se-resnet" if se else "resnet"
        options["duc_convs"] = [sum(1 for k in names if re.fullmatch(rf"duc{s}\.\d+\.weight", k) and state[k].dim() == 4)
                                for s in (1, 2, 3)]
    return options


def layout_of(num_keypoints: int, requested: str | None, where: str) -> Layout:
    """The layout ``--layout`` names (its size must match the head), else the one the head's channel count gives."""
    if requested:
        layout = LAYOUTS[requested]
        if len(layout.keypoint_names) != num_keypoints:
            raise CheckpointError(f"{where}: --layout {requested} has {len(layout.keypoint_names)} keypoints but the "
                                  f"checkpoint's head predicts {num_keypoints}")
        return layout
    if num_keypoints not in LAYOUT_BY_HEADS:
        raise CheckpointError(f"{where}: the head predicts {num_keypoints} heatmaps; known layouts are "
                              + ", ".join(f"{name} ({n})" for n, name in LAYOUT_BY_HEADS.items())
                              + " (a model with names, skeleton and flip pairs of its own: write a config JSON)")
    return LAYOUTS[LAYOUT_BY_HEADS[num_keypoints]]


def default_conventions(arch: str, names: set[str], from_alphapose_yaml: bool) -> str:
    """AlphaPose's for its configs and ``preact.`` backbones; else the standalone project's."""
    if from_alphapose_yaml or f"{BACKBONE_PREFIX}conv1.weight" in names:
        return "alphapose"
    return "hrnet" if arch == "hrnet" else "simplebaseline"


def our_keys(arch: str, num_keypoints: int, options: dict[str, object], where: str) -> dict[str, torch.Size]:
    """Our network's state-dict keys and shapes (built on the meta device: no memory, no time)."""
    try:
        with torch.device("meta"):
            network = build_network(arch, num_keypoints, options)
    except ValueError as exc:
        raise CheckpointError(f"{where}: {exc}") from None
    return {k: v.shape for k, v in network.state_dict().items()}


def renamed(arch: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """microsoft's SimpleBaseline keys (backbone at the top level) under our ``preact.`` prefix; others as they are."""
    if arch != "simplebaseline" or f"{BACKBONE_PREFIX}conv1.weight" in state:
        return state
    head = ("deconv_layers.", "final_layer.")
    return {(k if k.startswith(head) else BACKBONE_PREFIX + k): v for k, v in state.items()}


def strict_tensors(state: dict[str, torch.Tensor], expected: dict[str, torch.Size], what: str) -> dict[str, torch.Tensor]:
    """``state`` if it has exactly ``expected``'s keys and shapes (a missing ``num_batches_tracked``,
    absent before PyTorch 0.4.1, becomes 0), else one line naming the first mismatches."""
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v)}" for k, v in expected.items() if k in state and state[k].shape != v]
    if missing or unexpected or wrong:
        parts = [f"{name} ({len(keys)}): {', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''}"
                 for name, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys]
        raise CheckpointError(f"{what}; " + "; ".join(parts))
    zeros = {k: torch.zeros((), dtype=torch.long) for k in expected if k not in state}
    return {**state, **zeros}


def import_state(state: dict[str, torch.Tensor], where: str, arch: str = "auto", layout: str | None = None,
                 conventions: str | None = None, alphapose_yaml: Path | None = None,
                 input_size: tuple[int, int] | None = None) -> Imported:
    """The ModelConfig and our-named tensors of a source checkpoint's (prefix-stripped) ``state``.

    ``arch`` "auto" detects the architecture from the key names; an AlphaPose YAML config names it
    and its options and sizes instead (and must agree with the keys). ``input_size`` overrides the
    crop size: 256x192 for COCO and Halpe models, 256x256 for MPII ones (the sources' defaults).
    """
    if uses_deformable_conv(state):
        raise CheckpointError(f"{where}: DCN (deformable convolution) checkpoints are not supported yet: AlphaPose's "
                              "DCNv1 is a custom CUDA op that this exporter does not rebuild from standard ops")
    detected = detect_arch(state)
    yaml_config = read_alphapose_config(alphapose_yaml) if alphapose_yaml else None
    chosen = yaml_config.arch if yaml_config else detected if arch == "auto" else arch
    if chosen is None:
        raise CheckpointError(f"{where}: not a checkpoint of a known source (keys such as {', '.join(sorted(state)[:3])}); "
                              f"choose --arch from {', '.join(ARCHS)}, or give rmpe's config JSON with --config")
    if detected and detected != chosen:
        named = f"{alphapose_yaml} names" if yaml_config else "--arch says"
        raise CheckpointError(f"{where}: {named} {chosen}, but the checkpoint's keys are a {detected}'s")
    if chosen in HOURGLASS_SOURCES:
        return import_hourglass(chosen, state, where, layout, conventions, input_size)
    if chosen not in HEATMAP_ARCHS:
        raise CheckpointError(f"{where}: unknown --arch {chosen!r}; choose from auto, {', '.join(ARCHS)}")
    conv = conventions or default_conventions(chosen, set(state), yaml_config is not None)
    state = renamed(chosen, state)
    head = HEAD_KEYS[chosen]
    if head not in state:
        raise CheckpointError(f"{where}: checkpoint does not fit {chosen}; missing (1): {head}")
    options = yaml_config.options if yaml_config else arch_options(chosen, state, where)
    num_keypoints = yaml_config.num_keypoints if yaml_config else int(state[head].shape[0])
    chosen_layout = layout_of(num_keypoints, layout, where)
    expected = our_keys(chosen, num_keypoints, options, where)
    tensors = strict_tensors(state, expected, f"{where}: checkpoint does not fit a {chosen} "
                             f"({', '.join(f'{k} {v}' for k, v in options.items())})")
    size = input_size or (yaml_config.input_size if yaml_config else (256, 256) if chosen_layout.name == "mpii16" else (256, 192))
    config = heatmap_config(chosen, options, chosen_layout, CONVENTIONS[conv], size, where)
    return Imported(chosen, config, tensors, conv)


def heatmap_config(arch: str, options: dict[str, object], layout: Layout, conv: Conventions,
                   input_size: tuple[int, int], where: str) -> ModelConfig:
    """The ModelConfig of an imported heatmap model: no STN, the quarter-offset decode, the flip shift."""
    return ModelConfig(
        name=f"{arch}-{layout.name}", arch=arch, arch_options=dict(options), stn=False,
        heatmap="gaussian", decode_blur=0.0, input_size=tuple(input_size),
        keypoint_names=list(layout.keypoint_names), skeleton=[list(p) for p in layout.skeleton],
        flip_pairs=[list(p) for p in layout.flip_pairs],
        pixel_scale=1 / 255, mean=conv.mean, std=conv.std, channel_order=conv.channel_order, box_enlarge=1.25,
        pixel_centres="integer", decode="quarter_offset", quarter_margin=(2, 1), flip_shift=1,
        trained=True, notes=f"imported from {Path(where).name}; {conv.description}",
    )


def import_hourglass(source: str, state: dict[str, torch.Tensor], where: str, layout: str | None,
                     conventions: str | None, input_size: tuple[int, int] | None) -> Imported:
    """A princeton-vl or bearpaw hourglass: export/hourglass_sources.py reads it; its own conventions only."""
    if conventions:
        raise CheckpointError(f"{where}: --conventions applies to AlphaPose, HRNet and SimpleBaseline checkpoints; "
                              f"a {source} checkpoint has its source's own")
    config = hourglass_config(source, state)
    layout_of(config.num_keypoints, layout, where)
    tensors = hourglass_state_dict(source, state)
    config = replace(config, input_size=tuple(input_size) if input_size else config.input_size,
                     notes=f"imported from {Path(where).name} ({source})")
    return Imported(source, config, tensors, f"{source}: its own (export/hourglass_sources.py)")
