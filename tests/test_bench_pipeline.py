"""`rmpe-bench pipeline`: rows per batch, stage seconds in the JSON, and the overhead limit failing the command."""

from __future__ import annotations

import json

import pytest

from rmpe.benchmarks.cli import main as bench_main


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from rmpe.training.data_cli import main as data_main

    out = tmp_path_factory.mktemp("synth")
    assert data_main(["synth", "--out", str(out), "--images", "3", "--seed", "4"]) == 0
    return out


def test_pipeline_rows_and_json(default_onnx, data, tmp_path, capsys):
    out_json = tmp_path / "pipeline.json"
    status = bench_main(["pipeline", str(default_onnx), "--data", str(data), "--images", "6", "--batch", "1,8",
                         "--max-share", "1", "--out-json", str(out_json)])
    output = capsys.readouterr().out
    assert status == 0
    assert [line.split("|")[1].strip() for line in output.splitlines() if line.startswith("| ") and "batch" not in line] == ["1", "8"]
    rows = json.loads(out_json.read_text())["rows"]
    assert [r["images"] for r in rows] == [6, 6] and all(r["seconds"]["graph"] > 0 for r in rows)
    assert all(0 < r["outside_graph"] < 1 for r in rows)


def test_pipeline_fails_above_the_limit(default_onnx, data, capsys):
    assert bench_main(["pipeline", str(default_onnx), "--data", str(data), "--images", "3", "--batch", "4",
                       "--max-share", "0"]) == 1
    assert "outside the graph (limit 0 %)" in capsys.readouterr().err
