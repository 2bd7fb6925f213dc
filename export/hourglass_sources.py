"""Stacked-hourglass checkpoints of princeton-vl/pytorch_stacked_hourglass and bearpaw/pytorch-pose.

Both are Newell et al.'s network with other module names (HOURGLASS_CHECKPOINTS.md): princeton's
is our ``residual`` stem, bearpaw's our ``bearpaw`` stem. Their checkpoints are read here: which
source a state dict comes from, the ModelConfig its shapes and its source's conventions give, and
its tensors under our network's names (without the graph's ``sppe.`` prefix), checked strictly.
"""

from __future__ import annotations

import re

import torch

from rmpe.export.checkpoint import CheckpointError, strip_prefixes
from rmpe.export.config import ModelConfig
from rmpe.runtime.keypoints import LAYOUTS, Layout

PRINCETON, BEARPAW = "hourglass-princeton", "hourglass-bearpaw"
SOURCES = (PRINCETON, BEARPAW)
LAYOUT_BY_HEADS = {16: "mpii16", 17: "coco17"}  # the data sets the sources train on, by heatmap count
# bearpaw's data/{mpii,coco}/mean.pth.tar: the RGB means of its training sets (color_normalize subtracts them only)
BEARPAW_MEANS = {"mpii16": (0.4404428, 0.4440267, 0.4326828), "coco17": (0.4566077, 0.4368823, 0.4061418)}

# Our residual's tensors under each source's names: (ours, princeton's, bearpaw's).
RESIDUAL_PARTS = [("bn1", "bn1", "bn1"), ("conv1", "conv1.conv", "conv1"), ("bn2", "bn2", "bn2"),
                  ("conv2", "conv2.conv", "conv2"), ("bn3", "bn3", "bn3"), ("conv3", "conv3.conv", "conv3"),
                  ("skip", "skip_layer.conv", "downsample.0")]


def detect_hourglass_source(keys) -> str | None:
    """``hourglass-princeton`` or ``hourglass-bearpaw`` when ``keys`` are that source's state dict, else None."""
    names = {strip_prefixes(k) for k in keys}
    if {"pre.0.conv.weight", "outs.0.conv.weight"} <= names and any(k.startswith("hgs.0.0.") for k in names):
        return PRINCETON
    if {"conv1.weight", "layer1.0.conv1.weight", "score.0.weight"} <= names and any(k.startswith("hg.0.hg.") for k in names):
        return BEARPAW
    return None


def _tensors(state) -> dict[str, torch.Tensor]:
    return {strip_prefixes(k): v for k, v in state.items()}


def _shape_of(state: dict[str, torch.Tensor], key: str, source: str) -> tuple[int, ...]:
    if key not in state:
        raise CheckpointError(f"{source}: checkpoint does not fit the model; missing (1): {key}")
    return tuple(state[key].shape)


def _count(state: dict[str, torch.Tensor], pattern: str) -> int:
    """One more than the largest number ``pattern``'s group matches in a key (0 when none match)."""
    found = [int(m.group(1)) for k in state if (m := re.fullmatch(pattern, k))]
    return max(found) + 1 if found else 0


def hourglass_shape(source: str, state) -> dict[str, int]:
    """stacks, channels, depth and num_keypoints of a source's state dict, read from its key names and shapes."""
    state = _tensors(state)
    if source == PRINCETON:
        k, channels = _shape_of(state, "outs.0.conv.weight", source)[:2]
        stacks = _count(state, r"outs\.(\d+)\.conv\.weight")
        depth = max((k_.count("low2.") for k_ in state if k_.startswith("hgs.0.0.")), default=0)
    elif source == BEARPAW:
        k, channels = _shape_of(state, "score.0.weight", source)[:2]
        stacks = _count(state, r"score\.(\d+)\.weight")
        depth = _count(state, r"hg\.0\.hg\.(\d+)\..*")
        blocks = _count(state, r"hg\.0\.hg\.0\.0\.(\d+)\..*")
        if blocks != 1:
            raise CheckpointError(f"{source}: a hourglass with {blocks} residual blocks per branch (--blocks {blocks}) "
                                  "is not supported; only bearpaw's default --blocks 1")
    else:
        raise ValueError(f"unknown hourglass source {source!r}; choose from {', '.join(SOURCES)}")
    if not 1 <= depth <= 6 or not 1 <= stacks <= 16:
        raise CheckpointError(f"{source}: checkpoint has {stacks} stacks and hourglasses {depth} levels deep; "
                              "1 to 16 stacks of 1 to 6 levels can be exported")
    return {"stacks": stacks, "channels": channels, "depth": depth, "num_keypoints": k}


def layout_for_heads(source: str, num_keypoints: int) -> Layout:
    """The keypoint layout of a source checkpoint with ``num_keypoints`` heatmaps (MPII 16, COCO 17)."""
    if num_keypoints not in LAYOUT_BY_HEADS:
        raise CheckpointError(f"{source}: checkpoint predicts {num_keypoints} heatmaps; known layouts are "
                              + ", ".join(f"{LAYOUT_BY_HEADS[n]} ({n})" for n in LAYOUT_BY_HEADS) + " (choose one with --layout)")
    return LAYOUTS[LAYOUT_BY_HEADS[num_keypoints]]


def hourglass_config(source: str, state) -> ModelConfig:
    """The ModelConfig of a princeton-vl or bearpaw hourglass checkpoint: its shape from the tensors,
    its layout from the head's channels and its source's pre- and post-processing.

    Both crop 256×256 (64×64 heatmaps) from RGB / 255 without dividing by a standard deviation:
    princeton subtracts nothing, bearpaw its data set's mean. Both place heatmap cell i's centre at
    i + 0.5 (cell i covers input pixels 4i to 4i + 4: ``pixel_centres`` half) and decode by argmax
    plus a quarter cell toward the larger neighbour, each by its own rule (graph.decode_bearpaw,
    graph.decode_princeton); their flip tests mirror and swap pairs without a shift.
    """
    shape = hourglass_shape(source, state)
    layout = layout_for_heads(source, shape["num_keypoints"])
    mean = BEARPAW_MEANS[layout.name] if source == BEARPAW else (0.0, 0.0, 0.0)
    return ModelConfig(
        name=f"{source}-s{shape['stacks']}-{layout.name}", arch="hourglass",
        stacks=shape["stacks"], channels=shape["channels"], depth=shape["depth"],
        stem="bearpaw" if source == BEARPAW else "residual", heatmap="gaussian", decode_blur=0.0,
        input_size=(256, 256), stn=False,
        keypoint_names=list(layout.keypoint_names), skeleton=[list(p) for p in layout.skeleton],
        flip_pairs=[list(p) for p in layout.flip_pairs],
        pixel_scale=1 / 255, mean=mean, std=(1.0, 1.0, 1.0), box_enlarge=1.25,
        channel_order="rgb", pixel_centres="half", decode="bearpaw" if source == BEARPAW else "princeton",
        quarter_margin=(1, 1), flip_shift=0, crop_taps=0, trained=True,
        notes=f"imported from a {source} checkpoint",
    )


def module_names(source: str, stacks: int, depth: int) -> dict[str, str]:
    """Our hourglass's modules (a key's part before ``.weight``, ``.bias``, ...) → the source's, for
    ``stacks`` stacks of ``depth`` levels; every residual with its skip (which only some have)."""
    princeton = source == PRINCETON
    column = 1 if princeton else 2
    names: dict[str, str] = {}

    def residual(ours: str, theirs: str) -> None:
        names.update({f"{ours}.{parts[0]}": f"{theirs}.{parts[column]}" for parts in RESIDUAL_PARTS})

    if princeton:
        names.update({"stem.0.0": "pre.0.conv", "stem.0.1": "pre.0.bn"})
        residual("stem.1", "pre.1"), residual("stem.3", "pre.3"), residual("stem.4", "pre.4")
    else:
        names.update({"stem.0.0": "conv1", "stem.0.1": "bn1"})
        residual("stem.1", "layer1.0"), residual("stem.3", "layer2.0"), residual("stem.4", "layer3.0")
    for s in range(stacks):
        for level in range(depth):  # outermost first; princeton nests by name, bearpaw numbers levels inward
            ours = f"hourglasses.{s}" + ".inner" * level
            if princeton:
                theirs, branches = f"hgs.{s}.0" + ".low2" * level, {"skip": "up1", "down": "low1", "up": "low3", "inner": "low2"}
            else:
                theirs, branches = f"hg.{s}.hg.{depth - 1 - level}", {"skip": "0.0", "down": "1.0", "up": "2.0", "inner": "3.0"}
            for branch, their_branch in branches.items():
                if branch != "inner" or level == depth - 1:
                    residual(f"{ours}.{branch}", f"{theirs}.{their_branch}")
        residual(f"features.{s}.0", f"features.{s}.0" if princeton else f"res.{s}.0")
        if princeton:
            names.update({f"features.{s}.1.0": f"features.{s}.1.conv", f"features.{s}.1.1": f"features.{s}.1.bn",
                          f"heads.{s}": f"outs.{s}.conv"})
        else:
            names.update({f"features.{s}.1.0": f"fc.{s}.0", f"features.{s}.1.1": f"fc.{s}.1", f"heads.{s}": f"score.{s}"})
        if s < stacks - 1:
            names.update({f"remap_features.{s}": f"merge_features.{s}.conv.conv" if princeton else f"fc_.{s}",
                          f"remap_heatmaps.{s}": f"merge_preds.{s}.conv.conv" if princeton else f"score_.{s}"})
    return names


def key_names(source: str, our_keys) -> dict[str, str]:
    """Each of our hourglass's state-dict keys → the source's key for the same tensor."""
    our_keys = list(our_keys)
    stacks = _count(dict.fromkeys(our_keys), r"heads\.(\d+)\.weight")
    depth = max(k.count(".inner") for k in our_keys if k.startswith("hourglasses.0."))  # the innermost residual: depth times
    modules = module_names(source, stacks, depth)
    result = {}
    for key in our_keys:
        module, _, leaf = key.rpartition(".")
        result[key] = f"{modules[module]}.{leaf}"
    return result


def unused_princeton_key(key: str, mapped: set[str]) -> bool:
    """Whether ``key`` is the 1×1 ``skip_layer`` princeton's Residual makes but does not use where
    its input and output widths are equal: a residual we map whose skip we do not (ours has none)."""
    module, _, leaf = key.rpartition(".")
    residual = module.removesuffix(".skip_layer.conv")
    return residual != module and leaf in ("weight", "bias") and f"{residual}.bn1.weight" in mapped and key not in mapped


def our_network_keys(config: ModelConfig) -> dict[str, torch.Size]:
    """The state-dict keys and shapes of our hourglass for ``config`` (built on the meta device: no memory)."""
    from rmpe.export.networks import build_network

    with torch.device("meta"):
        network = build_network("hourglass", config.num_keypoints, config.network_options)
    return {k: v.shape for k, v in network.state_dict().items()}


def hourglass_state_dict(source: str, state) -> dict[str, torch.Tensor]:
    """The source's tensors under our hourglass's key names, strictly: a missing, unexpected or
    wrongly shaped tensor raises :class:`CheckpointError` (one line). Princeton's unused same-width
    ``skip_layer`` tensors are left out by name; a missing ``num_batches_tracked`` (PyTorch before
    0.4.1 saved none) becomes 0."""
    config = hourglass_config(source, state)
    tensors = _tensors(state)
    ours = our_network_keys(config)
    names = key_names(source, ours)
    result, missing, wrong = {}, [], []
    for key, shape in ours.items():
        theirs = names[key]
        if theirs not in tensors:
            if key.endswith("num_batches_tracked"):
                result[key] = torch.zeros((), dtype=torch.long)
            else:
                missing.append(theirs)
        elif tuple(tensors[theirs].shape) != tuple(shape):
            wrong.append(f"{theirs} {tuple(tensors[theirs].shape)} vs {tuple(shape)}")
        else:
            result[key] = tensors[theirs]
    mapped = set(names.values())
    unexpected = [k for k in tensors if k not in mapped and not (source == PRINCETON and unused_princeton_key(k, mapped))]
    if missing or unexpected or wrong:
        parts = [f"{name} ({len(keys)}): {', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''}"
                 for name, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys]
        raise CheckpointError(f"{source}: checkpoint does not fit a {config.stacks}-stack hourglass; " + "; ".join(parts))
    return result
