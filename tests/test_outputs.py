"""rmpe-run checks its outputs before the first image and refuses a second run on the same results."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from rmpe.runtime.cli import main
from test_runtime_models import make_pose_model, person_image


@pytest.fixture
def run(tmp_path):
    """A model, one image in ``images/`` and a function running rmpe-run on them with more arguments."""
    model = make_pose_model(tmp_path / "model.onnx")
    (tmp_path / "images").mkdir()
    Image.fromarray(person_image(80, 60, [[5, 5, 50, 75]], [200])).save(tmp_path / "images" / "1.png")
    return lambda *extra: main([str(model), str(tmp_path / "images"), "--quiet", *map(str, extra)])


def error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rmpe-run: error: ")
    return lines[0]


def test_drawings_into_an_input_folder_are_refused(run, tmp_path, capsys):
    assert run("--save-img", tmp_path / "images", "--out", tmp_path / "r.json") == 2
    assert "is an input folder" in error_line(capsys)
    assert not (tmp_path / "r.json").exists() and sorted(p.name for p in (tmp_path / "images").iterdir()) == ["1.png"]


@pytest.mark.parametrize("problem", ["out is a folder", "drawings under a file"])
def test_unusable_outputs_are_refused_before_any_image(run, tmp_path, capsys, problem):
    (tmp_path / "a_file").write_text("x")
    extra = {"out is a folder": ["--out", tmp_path / "images"],
             "drawings under a file": ["--save-img", tmp_path / "a_file" / "vis", "--out", tmp_path / "r.json"]}[problem]
    assert run(*extra) == 2
    assert ("is a folder" if problem == "out is a folder" else "is a file, not a folder") in error_line(capsys)
    assert not (tmp_path / "r.json").exists()


def test_a_live_run_holds_the_results_file(run, tmp_path, capsys):
    out = tmp_path / "r.json"
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        Path(f"{out}.lock").write_text(f"{live.pid}\n")
        assert run("--out", out) == 2
        assert f"another rmpe-run (pid {live.pid}) is writing it" in error_line(capsys)
        assert not out.exists()
    finally:
        live.kill()
        live.wait()
    assert run("--out", out) == 0  # its pid is gone now: a stale lock, taken over
    assert f"took over {out}.lock from rmpe-run pid {live.pid}" in capsys.readouterr().err
    assert json.loads(out.read_text()) and not Path(f"{out}.lock").exists()
