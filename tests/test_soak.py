"""`rmpe-bench soak` runs the pipeline over many images and reports resident memory."""

from __future__ import annotations

from rmpe.benchmarks.cli import main as bench_main
from rmpe.training.data_cli import main as data_main
from test_runtime_models import make_pose_model


def test_soak_table(tmp_path, capsys):
    assert data_main(["synth", "--out", str(tmp_path / "data"), "--images", "3", "--seed", "5"]) == 0
    model = make_pose_model(tmp_path / "model.onnx")
    capsys.readouterr()
    assert bench_main(["soak", str(model), "--data", str(tmp_path / "data"), "--images", "40"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("40 images (3 distinct")
    row = out.strip().splitlines()[-1].strip("|").split("|")
    assert len(row) == 5 and all(float(cell) > 0 for cell in row)
    assert bench_main(["soak", str(tmp_path / "missing.onnx"), "--data", str(tmp_path / "data")]) == 2
    assert "missing.onnx" in capsys.readouterr().err
