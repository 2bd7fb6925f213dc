"""`rmpe-bench latency` on tiny inputs: the table's rows, the JSON and PNG files, the skip lines, bad input."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

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


def test_an_engine_without_tensorrt_is_one_line(tmp_path, capsys):
    pytest.importorskip("torch")
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here")
    engine = tmp_path / "model.plan"
    engine.write_bytes(b"not an engine")
    assert bench_main(["latency", str(engine), "--variants", "none", "--batch", "1", "--no-memory"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "model.plan" in err and "tensorrt" in err


def test_gpu_check_says_so_without_a_gpu(tmp_path):
    script = Path(__file__).parents[1] / "benchmarks" / "gpu_check.sh"
    env = {**os.environ, "PATH": f"{tmp_path}:/usr/bin:/bin"}  # no nvidia-smi on this PATH
    if shutil.which("nvidia-smi", path=env["PATH"]):
        pytest.skip("nvidia-smi is in /usr/bin here")
    done = subprocess.run(["bash", str(script), str(tmp_path / "out")], env=env, capture_output=True, text=True)
    assert done.returncode == 0 and "no NVIDIA GPU" in done.stdout and not (tmp_path / "out").exists()
