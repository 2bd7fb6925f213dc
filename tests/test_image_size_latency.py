"""The image-size latency benchmark runs every model on every case and reports ratios."""

from __future__ import annotations

import pytest

from rmpe.benchmarks.image_size_latency import main
from test_runtime_models import make_pose_model


def test_table_has_every_model_size_and_batch(tmp_path, capsys):
    model = make_pose_model(tmp_path / "model.onnx")
    assert main([str(model), str(model), "--image-size", "640x480,800x600", "--batch", "1,2", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("CPU: ")
    rows = [line for line in out.splitlines() if line.startswith(f"| {model}")]
    assert len(rows) == 2 * 2 * 2
    assert all(row.split("|")[-3].strip() == "1.00" for row in rows[:4])  # the first model against itself


def test_bad_arguments(tmp_path, capsys):
    assert main([str(tmp_path / "missing.onnx")]) == 2
    assert "missing.onnx" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(tmp_path / "m.onnx"), "--image-size", "100x100"])
