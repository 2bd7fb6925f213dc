"""Interrupted runs lose nothing: SIGINT, SIGTERM and SIGKILL part-way, then --resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rmpe.runtime.cli import main as run_main
from test_runtime_models import person_image

IMAGES = 24


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> tuple[Path, Path]:
    """24 numbered images of two people each, and their detections."""
    root = tmp_path_factory.mktemp("resume")
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    dets = []
    for i in range(1, IMAGES + 1):
        x = float(rng.integers(0, 60))
        boxes = [[x + 10, 10, x + 70, 150], [x + 100, 20, x + 170, 155]]
        Image.fromarray(person_image(170, 260, boxes, [220, 160])).save(images / f"{i}.png")
        dets += [{"image_id": i, "category_id": 1, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "score": 0.9} for b in boxes]
    (root / "dets.json").write_text(json.dumps(dets))
    return images, root / "dets.json"


def argv(model: Path, folder: tuple[Path, Path], out: Path) -> list[str]:
    return [str(model), str(folder[0]), "--boxes", str(folder[1]), "--out", str(out), "--batch", "2", "--quiet"]


def by_person(results: list[dict]) -> list[tuple]:
    return sorted((r["image_id"], r["idx"], tuple(r["keypoints"])) for r in results)


def interrupt(args: list[str], journal: Path, signum: int) -> int:
    """Run rmpe-run in a subprocess and send ``signum`` once a few images are journalled."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "rmpe.runtime.cli", *args, "--threads", "1"], env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.is_file() and len(journal.read_text().splitlines()) >= 3:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    proc.send_signal(signum)
    return proc.wait(timeout=120)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_interrupted_run_keeps_its_results_and_resumes(default_onnx, folder, tmp_path, signum):
    from pycocotools.coco import COCO

    whole = tmp_path / "whole.json"
    assert run_main(argv(default_onnx, folder, whole)) == 0
    assert not (tmp_path / "whole.json.partial").exists()
    out = tmp_path / "out.json"
    journal = tmp_path / "out.json.partial"
    status = interrupt(argv(default_onnx, folder, out), journal, signum)
    done = [json.loads(line)["name"] for line in journal.read_text().splitlines()]
    assert 3 <= len(done) < IMAGES and journal.is_file()
    if signum == signal.SIGKILL:
        assert status == -signal.SIGKILL and not out.exists()
    else:
        assert status == 128 + signum
        partial = json.loads(out.read_text())
        assert {r["image_id"] for r in partial} == {int(Path(n).stem) for n in done}
        gt = COCO()
        gt.dataset = {"images": [{"id": i} for i in range(1, IMAGES + 1)], "annotations": [],
                      "categories": [{"id": 1, "name": "person"}]}
        gt.createIndex()
        assert len(gt.loadRes(partial).anns) == len(partial)
    assert run_main(argv(default_onnx, folder, out) + ["--resume"]) == 0
    assert by_person(json.loads(out.read_text())) == by_person(json.loads(whole.read_text()))
    assert not journal.exists()


def test_resume_needs_out(default_onnx, folder, capsys):
    assert run_main([str(default_onnx), str(folder[0]), "--resume"]) == 2
    assert "--resume needs --out" in capsys.readouterr().err
