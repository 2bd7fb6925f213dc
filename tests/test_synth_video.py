"""Synthetic clips: determinism, per-frame ground truth with track ids, crossing, entering and leaving."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av")

from rmpe.training.data_cli import main as data_main  # noqa: E402
from rmpe.training.synth_video import ClipConfig, render_clip  # noqa: E402

SMALL = ClipConfig(frames=30, fps=10, size=(192, 144))


def test_same_seed_same_clip(tmp_path: Path) -> None:
    from rmpe.runtime.video import VideoReader

    for name in ("a", "b"):
        assert data_main(["synth-video", "--out", str(tmp_path / name), "--clips", "1", "--seed", "4",
                          "--frames", "6", "--size", "160x120"]) == 0
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == ["clip_000.detections.json", "clip_000.json", "clip_000.mp4"]
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files[:2])
    frames = []
    for name in ("a", "b"):
        with VideoReader(tmp_path / name / "clip_000.mp4") as reader:
            frames.append(np.stack([image for _, image in reader.frames()]).astype(int))
    assert frames[0].shape == (6, 120, 160, 3) and np.abs(frames[0] - frames[1]).mean() < 3  # x264: not bit-exact


def test_ground_truth_loads_as_coco_with_tracks(tmp_path: Path) -> None:
    from pycocotools.coco import COCO

    assert data_main(["synth-video", "--out", str(tmp_path), "--clips", "1", "--seed", "5", "--frames", "8",
                      "--size", "160x120"]) == 0
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(tmp_path / "clip_000.json"))
    assert sorted(gt.getImgIds()) == list(range(8))
    assert all(a["track_id"] >= 1 and len(a["keypoints"]) == 51 for a in gt.dataset["annotations"])
    dets = json.loads((tmp_path / "clip_000.detections.json").read_text())
    assert {d["image_id"] for d in dets} <= set(range(8)) and dets


def test_walkers_cross_enter_and_leave() -> None:
    frames = list(render_clip(7, 0, SMALL))
    tracks = {a["track_id"] for f in frames for a in f.annotations}
    assert len(tracks) >= 2
    centres = {t: [] for t in tracks}
    for i, f in enumerate(frames):
        for a in f.annotations:
            x, y, w, h = a["bbox"]
            centres[a["track_id"]].append((i, x + w / 2))
    moves = [c[-1][1] - c[0][1] for c in centres.values()]
    assert min(moves) < -20 and max(moves) > 20  # people walk both ways ...
    a, b = (dict(centres[t]) for t in sorted(tracks)[:2])
    order = [np.sign(a[i] - b[i]) for i in sorted(set(a) & set(b))]
    assert len(set(order)) == 2  # ... past each other
    visible = [sum(a["num_keypoints"] > 0 for a in f.annotations) for f in frames]
    assert len(set(visible)) > 1 or any(a["num_keypoints"] < 17 for f in frames for a in f.annotations)


def test_bad_arguments_are_one_line(tmp_path: Path, capsys) -> None:
    assert data_main(["synth-video", "--out", str(tmp_path), "--clips", "1", "--seed", "1", "--size", "161x120"]) == 2
    assert "even sizes" in capsys.readouterr().err
