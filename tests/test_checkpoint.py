"""Checkpoints: rmpe's safetensors + JSON round-trips, torch .pth loads safely, mismatches explain themselves."""

from pathlib import Path

import pytest
import torch

from rmpe.export.checkpoint import CheckpointError, load_graph, read_state_dict, save_checkpoint
from rmpe.export.config import ModelConfig
from rmpe.export.graph import PoseGraph

SMALL = ModelConfig(name="small", stacks=1, channels=16, stn_channels=8, trained=True)


def test_safetensors_round_trip_with_config(tmp_path: Path) -> None:
    torch.manual_seed(3)
    graph = PoseGraph(SMALL)
    save_checkpoint(graph, tmp_path / "small.safetensors")
    loaded, sha = load_graph(tmp_path / "small.safetensors")
    assert loaded.config == SMALL and len(sha) == 64
    for key, value in graph.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_pth_wrapped_and_prefixed_loads_with_weights_only(tmp_path: Path) -> None:
    graph = PoseGraph(SMALL)
    state = {"module." + k: v for k, v in graph.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "m.pth")
    SMALL.save(tmp_path / "m.json")
    loaded, _ = load_graph(tmp_path / "m.pth")
    assert torch.equal(loaded.sppe.heads[0].weight, graph.sppe.heads[0].weight)


def test_hourglass_only_state_dict_loads_into_the_sppe(tmp_path: Path) -> None:
    graph = PoseGraph(SMALL)
    torch.save(graph.sppe.state_dict(), tmp_path / "hg.pth")
    loaded, _ = load_graph(tmp_path / "hg.pth", SMALL)
    assert torch.equal(loaded.sppe.stem[0][0].weight, graph.sppe.stem[0][0].weight)


def test_mismatch_lists_first_keys_in_one_line(tmp_path: Path) -> None:
    state = PoseGraph(SMALL).state_dict()
    state.pop("sppe.heads.0.weight")
    state["sppe.extra.weight"] = torch.zeros(1)
    state["sppe.heads.0.bias"] = torch.zeros(5)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as info:
        load_graph(tmp_path / "bad.pth", SMALL)
    message = str(info.value)
    assert "\n" not in message and "bad.pth" in message
    assert "missing (1): sppe.heads.0.weight" in message
    assert "unexpected (1): sppe.extra.weight" in message
    assert "wrong shape (1): sppe.heads.0.bias (5,) vs (17,)" in message


def test_unreadable_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pth: cannot read checkpoint"):
        read_state_dict(tmp_path / "junk.pth")


def test_pickled_code_is_refused(tmp_path: Path) -> None:
    torch.save({"state_dict": {"w": torch.zeros(1)}, "fn": print}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="evil.pth"):
        read_state_dict(tmp_path / "evil.pth")


def test_configs_written_before_the_stem_key_mean_the_paper_stem() -> None:
    old = ModelConfig().to_dict()
    del old["stem"]
    assert ModelConfig.from_dict(old).stem == "residual"
    assert ModelConfig.from_dict(ModelConfig().to_dict()).stem == "conv"


def test_configs_written_before_the_heatmap_key_mean_gaussian_heatmaps() -> None:
    old = ModelConfig(heatmap="softmax").to_dict()
    del old["heatmap"]
    assert ModelConfig.from_dict(old).heatmap == "gaussian"
