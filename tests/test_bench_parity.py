"""`rmpe-bench parity` on a tiny synthetic set: rows per backend, gates, and a model perturbed on purpose failing its gate."""

from __future__ import annotations

import json

import pytest
import torch

from rmpe.benchmarks.cli import main as bench_main

pytest.importorskip("pycocotools")
pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from rmpe.training.data_cli import main as data_main

    out = tmp_path_factory.mktemp("synth")
    assert data_main(["synth", "--out", str(out), "--images", "3", "--seed", "5"]) == 0
    return out


@pytest.fixture(scope="module")
def perturbed(tmp_path_factory):
    """The bundled model with noise on every convolution weight of its pose network, exported in fp32."""
    from rmpe.export.checkpoint import load_graph
    from rmpe.export.onnx_export import export_onnx, metadata_for

    graph, sha = load_graph(None)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, weight in graph.sppe.named_parameters():
            if name.endswith("weight") and weight.ndim == 4:
                weight.add_(0.3 * weight.std() * torch.randn(weight.shape, generator=generator))
    path = tmp_path_factory.mktemp("perturbed") / "model.onnx"
    export_onnx(graph, path, metadata_for(graph, "fp32", sha, 64, "perturbed"))
    return path


def test_parity_rows_and_files(data, tmp_path, capsys):
    out_json, out_png = tmp_path / "parity.json", tmp_path / "parity.png"
    status = bench_main(["parity", "--data", str(data), "--variants", "fp32", "--out-json", str(out_json),
                         "--out-png", str(out_png)])
    output = capsys.readouterr().out
    assert status == 0
    rows = [line.split("|")[1].strip() for line in output.splitlines() if line.startswith("| ") and "backend" not in line]
    assert rows == ["pytorch fp32", "onnxruntime fp32"]
    payload = json.loads(out_json.read_text())
    fp32 = payload["rows"][1]
    assert fp32["passed"] and abs(fp32["delta_ap"]) <= 0.001 and fp32["px"]["median"] < 0.01
    assert set(fp32["oks"]) == {"median", "p99", "max"} and payload["gates"]["int8"] == 0.01
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_perturbed_model_fails_its_gate(data, perturbed, capsys):
    status = bench_main(["parity", str(perturbed), "--data", str(data), "--variants", "none"])
    err = capsys.readouterr().err
    assert status == 1
    assert f"gate failed: onnxruntime {perturbed} (fp32): |ΔAP|" in err and "> 0.001" in err


def test_gate_is_configurable(data, perturbed, capsys):
    assert bench_main(["parity", str(perturbed), "--data", str(data), "--variants", "none", "--gate", "fp32=1"]) == 0


def test_parity_refuses_incomplete_coco(capsys):
    assert bench_main(["parity", "--coco-ann", "x.json"]) == 2
    assert "needs all three of --coco-ann, --coco-images and --detfile" in capsys.readouterr().err


def test_parity_refuses_unknown_gate(capsys):
    with pytest.raises(SystemExit):
        bench_main(["parity", "--gate", "bf16=0.1"])
    assert "precision one of fp32, fp16, int8" in capsys.readouterr().err


def test_an_imported_checkpoint_is_the_reference(data, tmp_path, capsys):
    """An AlphaPose SimplePose state dict (its exact keys, random weights) as --checkpoint: parity
    exports it as rmpe-export does and compares it with its own PyTorch graph."""
    from source_models import random_state

    state = random_state("alphapose_coco_256x192_res50_lr1e-3_1x-simple.txt")
    checkpoint = tmp_path / "simple.pth"
    torch.save(state, checkpoint)
    out_json = tmp_path / "parity.json"
    status = bench_main(["parity", "--checkpoint", str(checkpoint), "--data", str(data), "--variants", "fp32",
                         "--out-json", str(out_json)])
    assert status == 0, capsys.readouterr().err
    rows = json.loads(out_json.read_text())["rows"]
    assert [r["backend"] for r in rows] == ["pytorch fp32", "onnxruntime fp32"] and rows[1]["px"]["median"] < 0.01
