"""Keypoint layouts end to end: MPII 16 and Halpe 26 models through rmpe-run (results, drawings,
tracking with the model's OKS sigmas), and rmpe-bench ap scoring an MPII model by PCKh@0.5."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rmpe.runtime import frames
from rmpe.runtime.cli import main as run_main
from rmpe.runtime.draw import palette
from rmpe.runtime.keypoints import LAYOUTS, Layout
from rmpe.runtime.tracking import oks_sigmas
from test_runtime_models import TEMPLATE, make_pose_model, metadata, person_image

# Stick figures as fractions of the box, one point per keypoint of each layout.
TEMPLATES = {
    "mpii16": np.array([
        [0.38, 0.95], [0.38, 0.75], [0.40, 0.55], [0.60, 0.55], [0.62, 0.75], [0.62, 0.95],  # right ankle … left ankle
        [0.50, 0.55], [0.50, 0.25], [0.50, 0.18], [0.50, 0.04],  # pelvis, thorax, upper neck, head top
        [0.18, 0.55], [0.22, 0.40], [0.30, 0.22], [0.70, 0.22], [0.78, 0.40], [0.82, 0.55],  # right wrist … left wrist
    ], np.float32),
    "halpe26": np.concatenate([[[0.50, 0.10], [0.40, 0.05], [0.60, 0.05], [0.28, 0.10], [0.72, 0.10]],  # face, spread
                               TEMPLATE[5:], np.array([
        [0.50, 0.01], [0.50, 0.16], [0.50, 0.62], [0.26, 0.99], [0.74, 0.99],  # head, neck, hip, big toes
        [0.22, 0.90], [0.78, 0.90], [0.44, 0.88], [0.56, 0.88],  # small toes, heels
    ])]).astype(np.float32),
}
BOXES = {1: [[20.0, 40.0, 120.0, 230.0], [150.0, 30.0, 260.0, 240.0]], 2: [[60.0, 20.0, 200.0, 220.0]]}


def layout_model(path: Path, layout: Layout) -> Path:
    """The stick-figure model with ``layout``'s keypoints, skeleton, flip pairs and OKS sigmas in its metadata."""
    meta = metadata(keypoint_names=list(layout.keypoint_names), skeleton=[list(p) for p in layout.skeleton],
                    flip_pairs=[list(p) for p in layout.flip_pairs], layout=layout.name,
                    oks_sigmas=None if layout.oks_sigmas is None else list(layout.oks_sigmas))
    return make_pose_model(path, meta, TEMPLATES[layout.name])


def write_images(folder: Path) -> Path:
    """Two PNGs named by their image ids, each person box filled with full red, and their detections."""
    folder.mkdir()
    detections = []
    for image_id, boxes in BOXES.items():
        Image.fromarray(person_image(260, 300, boxes, [255] * len(boxes))).save(folder / f"{image_id}.png")
        detections += [{"image_id": image_id, "category_id": 1, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": 0.9}
                       for x1, y1, x2, y2 in boxes]
    (folder.parent / "detections.json").write_text(json.dumps(detections))
    return folder.parent / "detections.json"


@pytest.mark.parametrize("name", ["mpii16", "halpe26"])
def test_run_writes_results_drawings_and_tracks_in_the_model_layout(name: str, tmp_path: Path, monkeypatch) -> None:
    layout = LAYOUTS[name]
    model = layout_model(tmp_path / "model.onnx", layout)
    detections = write_images(tmp_path / "images")
    trackers = []

    class Recording(frames.PoseTracker):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            trackers.append(self)

    monkeypatch.setattr(frames, "PoseTracker", Recording)
    out, vis = tmp_path / "results.json", tmp_path / "vis"
    assert run_main([str(model), str(tmp_path / "images"), "--boxes", str(detections), "--out", str(out),
                     "--save-img", str(vis), "--track", "--quiet"]) == 0
    results = json.loads(out.read_text())
    assert sorted(r["image_id"] for r in results) == [1, 1, 2]
    k = layout.num_keypoints
    for r in results:
        keypoints = np.asarray(r["keypoints"]).reshape(-1, 3)
        assert keypoints.shape == (k, 3) and r["idx"] >= 1
        x, y, w, h = r["box"]
        assert np.abs(keypoints[:, :2] - ([x, y] + TEMPLATES[name] * [w, h])).max() < 0.01
    expected_sigmas = layout.oks_sigmas or oks_sigmas(layout.keypoint_names)  # MPII has none: from the names
    assert trackers and np.allclose(trackers[0].sigmas, expected_sigmas) and len(trackers[0].sigmas) == k
    for image_id in BOXES:
        drawn = np.asarray(Image.open(vis / f"{image_id}.png").convert("RGB"))
        colours = set(map(tuple, drawn.reshape(-1, 3).tolist()))
        missing = [limb for limb, c in zip(layout.skeleton, palette(len(layout.skeleton))) if c not in colours]
        assert missing == []  # every limb of the layout's skeleton is drawn
        assert set(palette(k)) <= colours  # and every keypoint


def write_mpii_set(tmp_path: Path) -> Path:
    """A two-image MPII annotation .mat whose joints are where the MPII stick figure puts them in each
    person's box (200 × scale, 15 × scale below objpos), except one person's left wrist, 2 head sizes off."""
    from scipy.io import savemat

    people = {1: [((110.0, 120.0), 1.0), ((330.0, 150.0), 0.6)], 2: [((200.0, 130.0), 0.8)]}

    def struct(rows: list[dict], fields: list[str]) -> np.ndarray:
        arr = np.zeros((1, len(rows)), dtype=[(f, object) for f in fields])
        for i, row in enumerate(rows):
            for f in fields:
                arr[0, i][f] = row[f]
        return arr

    annolist, detections_boxes = [], {}
    for image_id, persons in people.items():
        rects, boxes = [], []
        for n, ((ox, oy), scale) in enumerate(persons):
            side, cx, cy = 200 * scale, ox, oy + 15 * scale
            box = [cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2]
            joints = np.asarray(box[:2]) + TEMPLATES["mpii16"] * side
            if image_id == 1 and n == 0:
                joints[15] += [0, 2 * 0.6 * np.hypot(20, 20)]
            points = struct([{"id": j, "x": float(x), "y": float(y), "is_visible": 1} for j, (x, y) in enumerate(joints)],
                            ["id", "x", "y", "is_visible"])
            head = [joints[9][0] - 10, joints[9][1] - 5, joints[9][0] + 10, joints[9][1] + 15]  # 20 × 20: head size 17 px
            rects.append({"x1": head[0], "y1": head[1], "x2": head[2], "y2": head[3], "scale": scale,
                          "objpos": {"x": ox, "y": oy}, "annopoints": {"point": points}})
            boxes.append(box)
        annolist.append({"image": {"name": f"{image_id}.png"},
                         "annorect": struct(rects, ["x1", "y1", "x2", "y2", "scale", "objpos", "annopoints"])})
        detections_boxes[image_id] = boxes
    savemat(str(tmp_path / "mpii.mat"), {"RELEASE": {"annolist": struct(annolist, ["image", "annorect"]),
                                                      "img_train": np.array([[1, 1]])}})
    images = tmp_path / "mpii_images"
    images.mkdir()
    for image_id, boxes in detections_boxes.items():
        Image.fromarray(person_image(320, 440, boxes, [255] * len(boxes))).save(images / f"{image_id}.png")
    return images


def test_bench_ap_scores_an_mpii_model_by_pckh(tmp_path: Path, capsys) -> None:
    from rmpe.benchmarks.cli import main as bench_main

    images = write_mpii_set(tmp_path)
    assert bench_main(["mpii", str(tmp_path / "mpii.mat"), "--out", str(tmp_path / "set"), "--images", str(images)]) == 0
    model = layout_model(tmp_path / "mpii.onnx", LAYOUTS["mpii16"])
    out = tmp_path / "ap.json"
    assert bench_main(["ap", str(model), "--data", str(tmp_path / "set"), "--out-json", str(out)]) == 0
    printed = capsys.readouterr().out
    header = next(line for line in printed.splitlines() if line.startswith("| model"))
    assert "PCKh" in header and "AP50" not in header
    row = json.loads(out.read_text())["rows"][0]
    assert row["metric"] == "PCKh"
    assert row["stats"]["people"] == 3 and row["stats"]["matched"] == 3
    assert row["stats"]["PCKh"] == pytest.approx((3 * 14 - 1) / (3 * 14))  # one wrist of 42 joints in the mean missed
    assert row["stats"]["PCKh_left_wrist"] == pytest.approx(2 / 3)
    assert row["stats"]["PCKh_head_top"] == 1.0


def test_bench_ap_refuses_pckh_without_head_boxes(tmp_path: Path, capsys) -> None:
    from rmpe.benchmarks.cli import main as bench_main

    images = write_mpii_set(tmp_path)
    assert bench_main(["mpii", str(tmp_path / "mpii.mat"), "--out", str(tmp_path / "set"), "--images", str(images)]) == 0
    gt_path = tmp_path / "set" / "person_keypoints.json"
    gt = json.loads(gt_path.read_text())
    for ann in gt["annotations"]:
        del ann["head_box"]
    gt_path.write_text(json.dumps(gt))
    model = layout_model(tmp_path / "mpii.onnx", LAYOUTS["mpii16"])
    assert bench_main(["ap", str(model), "--data", str(tmp_path / "set")]) == 2
    assert "scored by PCKh@0.5, which needs a head_box" in capsys.readouterr().err
