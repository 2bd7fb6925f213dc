"""`rmpe-bench latency` on tiny inputs: the table's rows, the JSON and PNG files, the skip lines, bad input."""

from __future__ import annotations

import json

import pytest

from rmpe.benchmarks.cli import main as bench_main

pytest.importorskip("torch")
pytest.importorskip("matplotlib")


def test_latency_rows_json_and_plot(tmp_path, capsys):
    out_json, out_png = tmp_path / "latency.json", tmp_path / "latency.png"
    status = bench_main(["latency", "--variants", "fp32", "--export-dir", str(tmp_path / "models"), "--batch", "1,2",
                         "--image-size", "320x480", "--block", "1", "--max-rounds", "2",
                         "--out-json", str(out_json), "--out-png", str(out_png)])
    output = capsys.readouterr().out
    assert status == 0
    rows = [line for line in output.splitlines() if line.startswith("| ") and not line.startswith("| backend")]
    assert [(r.split("|")[1].strip(), r.split("|")[3].strip()) for r in rows] == [
        ("pytorch eager", "1"), ("pytorch eager", "2"), ("onnxruntime fp32", "1"), ("onnxruntime fp32", "2")]
    assert "OMP_WAIT_POLICY" in output and "fp32 matmul" in output and "skipped" in output
    payload = json.loads(out_json.read_text())
    assert len(payload["rows"]) == 4 and payload["matmul_gflop_per_s"] > 0
    first = payload["rows"][0]
    assert first["vs_pytorch"] == 1.0 and first["gflop"] > 0.5 and first["peak_mb"] > 100
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_latency_refuses_missing_model(tmp_path, capsys):
    status = bench_main(["latency", str(tmp_path / "none.onnx"), "--variants", "none", "--no-memory"])
    assert status == 2
    assert "no such model" in capsys.readouterr().err
