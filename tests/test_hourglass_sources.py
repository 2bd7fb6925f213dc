"""princeton-vl and bearpaw hourglass checkpoints: detection, the key mapping both ways against the
sources' own key lists, strict loading, their decodes, and an export that runs as PyTorch does."""

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from rmpe.export.checkpoint import CheckpointError, load_weights, read_state_dict
from rmpe.export.config import ModelConfig
from rmpe.export.graph import PoseGraph, decode_bearpaw, decode_princeton, decode_quarter_offset
from rmpe.export.hourglass_sources import (BEARPAW, PRINCETON, detect_hourglass_source, hourglass_config,
                                           hourglass_state_dict, key_names, our_network_keys)
from rmpe.export.onnx_export import export_onnx, metadata_for
from rmpe.export.parity import INPUT_NAMES, realistic_inputs
from rmpe.runtime.keypoints import COCO_KEYPOINTS, MPII_FLIP_PAIRS, MPII_KEYPOINTS

KEYS = Path(__file__).parent / "data" / "checkpoint_keys"
KEY_LISTS = {PRINCETON: KEYS / "princeton_hg2.txt", BEARPAW: KEYS / "bearpaw_hg2.txt"}  # made by the sources' own models
WRAPPERS = {PRINCETON: "model.module.", BEARPAW: "module."}  # Trainer(DataParallel(PoseNet)); DataParallel(HourglassNet)


def source_keys(source: str) -> dict[str, tuple[tuple[int, ...], str]]:
    """A source's 2-stack MPII state dict as its own code builds it: key → (shape, dtype)."""
    entries = {}
    for line in KEY_LISTS[source].read_text().splitlines():
        if line.startswith(("#", "out ")):
            continue
        key, rest = line.split(" ", 1)
        shape, dtype = rest.rsplit(" ", 1)
        entries[key] = (tuple(int(d) for d in shape.strip("()").split(",") if d.strip()), dtype)
    return entries


def unused_skip_keys(names: dict[str, str], ours: dict[str, torch.Size]) -> dict[str, tuple[int, ...]]:
    """The ``skip_layer`` tensors princeton's Residual holds where ours has no skip (same widths)."""
    extra = {}
    for key, theirs in names.items():
        if key.endswith(".conv1.weight") and key.replace(".conv1.", ".skip.") not in ours:
            residual = theirs.removesuffix(".conv1.conv.weight")
            cout, cin = ours[key.replace(".conv1.", ".conv3.")][0], ours[key][1]
            extra.update({f"{residual}.skip_layer.conv.weight": (cout, cin, 1, 1), f"{residual}.skip_layer.conv.bias": (cout,)})
    return extra


def source_layout(source: str, config) -> dict[str, tuple[tuple[int, ...], str]]:
    """The source's key layout made from OUR definition and the mapping reversed."""
    ours = our_network_keys(config)
    names = key_names(source, ours)
    layout = {names[k]: (tuple(v), "int64" if k.endswith("num_batches_tracked") else "float32") for k, v in ours.items()}
    if source == PRINCETON:
        layout.update({k: (v, "float32") for k, v in unused_skip_keys(names, ours).items()})
    return layout


def random_source_state(layout: dict[str, tuple[tuple[int, ...], str]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Tensors of the layout's shapes with random weights and batch-norm statistics."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, (shape, dtype) in layout.items():
        if dtype == "int64":
            state[key] = torch.tensor(5)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=gen) + 0.5
        elif len(shape) == 1:
            state[key] = torch.randn(shape, generator=gen) * 0.1 + (1.0 if key.endswith("weight") and "bn" in key else 0.0)
        else:
            state[key] = torch.randn(shape, generator=gen) / (np.prod(shape[1:]) ** 0.5)
    return state


def save_as_source(source: str, state: dict[str, torch.Tensor], path: Path) -> Path:
    """Write ``state`` as the source's training script saves a checkpoint (prefix, wrapper dict, optimiser state)."""
    wrapped = {WRAPPERS[source] + k: v for k, v in state.items()}
    optimiser = {"state": {}, "param_groups": [{"lr": 2.5e-4, "params": list(range(3))}]}
    extra = {"optimizer": optimiser, "epoch": 3} if source == PRINCETON else {"epoch": 3, "arch": "hg", "best_acc": 0.5, "optimizer": optimiser}
    torch.save({"state_dict": wrapped, **extra}, path)
    return path


@pytest.fixture(scope="module")
def full_size() -> dict[str, dict[str, torch.Tensor]]:
    """Each source's 2-stack, 256-channel MPII state dict with random weights, in its own key layout."""
    return {source: random_source_state({k: v for k, v in source_keys(source).items()}) for source in KEY_LISTS}


@pytest.mark.parametrize("source", [PRINCETON, BEARPAW])
def test_reversed_mapping_of_our_network_is_the_source_key_list(source: str, full_size) -> None:
    config = hourglass_config(source, full_size[source])
    expected, made = source_keys(source), source_layout(source, config)
    assert len(expected) == {PRINCETON: 742, BEARPAW: 684}[source]
    assert sorted(made.keys() - expected.keys()) == []  # nothing ours names that the source lacks
    assert sorted(expected.keys() - made.keys()) == []  # nothing of the source left unmapped
    assert {k: v for k, v in made.items() if v != expected[k]} == {}


@pytest.mark.parametrize("source", [PRINCETON, BEARPAW])
def test_config_reads_shape_layout_and_conventions(source: str, full_size) -> None:
    config = hourglass_config(source, full_size[source])
    assert (config.arch, config.stacks, config.channels, config.depth) == ("hourglass", 2, 256, 4)
    assert config.stem == ("residual" if source == PRINCETON else "bearpaw")
    assert config.keypoint_names == MPII_KEYPOINTS and config.flip_pairs == MPII_FLIP_PAIRS
    assert config.input_size == (256, 256) and config.std == (1.0, 1.0, 1.0) and config.pixel_scale == 1 / 255
    assert config.mean == ((0.0, 0.0, 0.0) if source == PRINCETON else (0.4404428, 0.4440267, 0.4326828))
    assert (config.pixel_centres, config.flip_shift, config.crop_taps, config.stn, config.trained) == ("half", 0, 0, False, True)
    assert config.decode == ("princeton" if source == PRINCETON else "bearpaw")
    assert ModelConfig.from_dict(config.to_dict()) == config  # the JSON beside an exported model reads back


@pytest.mark.parametrize("source", [PRINCETON, BEARPAW])
def test_saved_checkpoint_loads_strictly_tensor_for_tensor(source: str, full_size, tmp_path: Path) -> None:
    state = full_size[source]
    path = save_as_source(source, state, tmp_path / "checkpoint.pth.tar")
    read = read_state_dict(path)
    assert set(read) == set(state)  # the wrappers' prefixes gone, princeton's model.module. too
    assert detect_hourglass_source(read) == source
    config = hourglass_config(source, read)
    ours = hourglass_state_dict(source, read)
    assert list(ours) == list(our_network_keys(config))
    names = key_names(source, ours)
    assert all(torch.equal(ours[k], state[names[k]]) for k in ours)  # and back: each tensor is the source's own
    ignored = set(state) - set(names.values())
    assert len(ignored) == (58 if source == PRINCETON else 0)  # princeton's same-width skip_layer tensors
    assert all(".skip_layer.conv." in k for k in ignored)
    graph = PoseGraph(config)
    load_weights(graph, ours, str(path))


def test_detection_tells_the_sources_apart(full_size) -> None:
    assert detect_hourglass_source(WRAPPERS[PRINCETON] + k for k in full_size[PRINCETON]) == PRINCETON
    assert detect_hourglass_source(full_size[BEARPAW]) == BEARPAW
    assert detect_hourglass_source(our_network_keys(hourglass_config(BEARPAW, full_size[BEARPAW]))) is None
    alphapose = [line.split(" ")[0] for line in (KEYS / "alphapose_coco_256x192_res50_lr1e-3_1x.txt").read_text().splitlines()]
    assert detect_hourglass_source(alphapose) is None
    assert detect_hourglass_source([]) is None


def test_an_unknown_tensor_is_refused_even_one_named_like_an_unused_skip(full_size) -> None:
    for extra in ("hgs.0.0.extra.weight", "hgs.0.0.nowhere.skip_layer.conv.weight", "pre.3.skip_layer.conv.running_mean"):
        state = dict(full_size[PRINCETON], **{extra: torch.zeros(1)})
        with pytest.raises(CheckpointError, match=rf"^hourglass-princeton: checkpoint does not fit a 2-stack hourglass; unexpected \(1\): {extra}$"):
            hourglass_state_dict(PRINCETON, state)


@pytest.mark.parametrize("source", [PRINCETON, BEARPAW])
def test_a_missing_tensor_is_named_in_the_source_terms(source: str, full_size) -> None:
    state = dict(full_size[source])
    gone = "hgs.1.0.low2.low3.conv2.conv.weight" if source == PRINCETON else "hg.1.hg.2.2.0.conv2.weight"
    del state[gone]
    with pytest.raises(CheckpointError) as error:
        hourglass_state_dict(source, state)
    assert str(error.value) == f"{source}: checkpoint does not fit a 2-stack hourglass; missing (1): {gone}"


def test_missing_batch_counters_are_tolerated_and_wrong_shapes_refused(full_size) -> None:
    state = {k: v for k, v in full_size[BEARPAW].items() if not k.endswith("num_batches_tracked")}
    ours = hourglass_state_dict(BEARPAW, state)
    assert int(ours["stem.0.1.num_batches_tracked"]) == 0
    state["score.1.bias"] = torch.zeros(17)
    with pytest.raises(CheckpointError, match=r"wrong shape \(1\): score.1.bias \(17,\) vs \(16,\)$"):
        hourglass_state_dict(BEARPAW, state)


def test_other_head_counts_and_block_counts(full_size) -> None:
    config = hourglass_config(BEARPAW, dict(full_size[BEARPAW], **{"score.0.weight": torch.zeros(17, 256, 1, 1)}))
    assert config.keypoint_names == COCO_KEYPOINTS and config.mean == (0.4566077, 0.4368823, 0.4061418)
    with pytest.raises(CheckpointError, match="predicts 5 heatmaps.*--layout"):
        hourglass_config(PRINCETON, dict(full_size[PRINCETON], **{"outs.0.conv.weight": torch.zeros(5, 256, 1, 1)}))
    with pytest.raises(CheckpointError, match="2 residual blocks per branch"):
        hourglass_config(BEARPAW, dict(full_size[BEARPAW], **{"hg.0.hg.0.0.1.bn1.weight": torch.zeros(256)}))


def one_peak(values: dict[tuple[int, int], float], size: tuple[int, int] = (6, 8), background: float = 0.0) -> torch.Tensor:
    maps = torch.full((1, 1, *size), background)
    for (y, x), v in values.items():
        maps[0, 0, y, x] = v
    return maps


def test_quarter_offset_reads_both_neighbours_around_the_argmax_cell() -> None:
    # x steps left; the y step must still compare the rows above and below the argmax cell, not a column to its left
    maps = one_peak({(2, 3): 5.0, (2, 2): 1.0, (1, 3): 2.0, (1, 2): -9.0, (3, 2): 4.0})
    cells, _ = decode_quarter_offset(maps, (1, 1))
    assert cells[0, 0].tolist() == [2.75, 1.75]


def test_bearpaw_decode_quarter_steps_half_cell_and_non_positive_peaks() -> None:
    cells, score = decode_bearpaw(one_peak({(2, 3): 5.0, (2, 4): 1.0, (1, 3): 2.0}), (1, 1))
    assert cells[0, 0].tolist() == [3.75, 2.25] and score.item() == 5.0
    cells, _ = decode_bearpaw(one_peak({(0, 3): 5.0, (0, 4): 1.0}), (1, 1))  # on the top row: not moved
    assert cells[0, 0].tolist() == [3.5, 0.5]
    cells, score = decode_bearpaw(one_peak({(2, 3): -0.5}, background=-1.0), (1, 1))  # bearpaw's 1-based 0, + 0.5
    assert cells[0, 0].tolist() == [-0.5, -0.5] and score.item() == -0.5


def test_princeton_decode_caps_suppresses_and_steps_away_on_ties() -> None:
    cells, score = decode_princeton(one_peak({(2, 3): 5.0, (2, 4): 3.0}))
    assert cells[0, 0].tolist() == [3.75, 2.25] and score.item() == 1.0  # capped at 1: the first of two 1s; rows tie: up
    cells, _ = decode_princeton(one_peak({(2, 3): 5.0, (2, 2): 0.5, (2, 4): 0.5, (3, 3): 0.5}))
    assert cells[0, 0].tolist() == [3.25, 2.75]
    cells, _ = decode_princeton(one_peak({(5, 7): 0.5}))  # bottom-right corner: the edge reads itself, so outward
    assert cells[0, 0].tolist() == [7.75, 5.75]
    cells, score = decode_princeton(one_peak({(2, 3): -0.5}, background=-1.0))  # below 0: the first suppressed cell, 0
    assert cells[0, 0].tolist() == [2.0, 1.0] and score.item() == 0.0


def small_source_checkpoint(source: str, tmp_path: Path) -> Path:
    """A small 2-stack MPII checkpoint (64 channels, 2 levels) in the source's own layout and format."""
    config = hourglass_config(source, {**{k: torch.zeros(v[0]) for k, v in source_keys(source).items()}})
    config.channels, config.depth = 64, 2
    state = random_source_state(source_layout(source, config), seed=1)
    if source == PRINCETON:  # peaks well over 1, so its cap makes plateaus whose first cell both must pick
        state["outs.1.conv.weight"] *= 20
    return save_as_source(source, state, tmp_path / f"{source}.pth")


@pytest.mark.parametrize("source", [PRINCETON, BEARPAW])
def test_export_runs_in_onnx_runtime_as_in_pytorch(source: str, tmp_path: Path) -> None:
    state = read_state_dict(small_source_checkpoint(source, tmp_path))
    config = hourglass_config(source, state)
    config.input_size = (64, 64)
    graph = PoseGraph(config, flip_test=True).eval()
    load_weights(graph, hourglass_state_dict(source, state), source)
    path = tmp_path / "model.onnx"
    export_onnx(graph, path, metadata_for(graph, "fp32", "", 16, config.name))
    inputs = realistic_inputs(0)
    with torch.no_grad():
        k_ref, s_ref = (t.numpy() for t in graph(*(torch.from_numpy(inputs[n]) for n in INPUT_NAMES)))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    k_onnx, s_onnx = session.run(["keypoints", "scores"], inputs)
    assert session.get_modelmeta().custom_metadata_map["decode"] == f"argmax+quarter_offset({config.decode})"
    assert k_onnx.shape == (len(inputs["boxes"]), 16, 2)
    assert np.abs(k_onnx - k_ref).max() <= 0.05
    assert np.abs(s_onnx - s_ref).max() <= 1e-4 * np.abs(s_ref).max()
    assert (s_ref == 1).mean() > 0.2 if source == PRINCETON else (s_ref > 0).any()
