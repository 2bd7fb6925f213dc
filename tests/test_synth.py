"""Synthetic people: determinism, COCO validity, visibility flags, left/right, detections."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from rmpe.training.synth import SynthConfig, render_sample, write_dataset

SMALL = SynthConfig(min_size=(200, 160), max_size=(256, 200), min_person_height=40)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small data set written once for the tests that read files."""
    out = tmp_path_factory.mktemp("synth") / "a"
    write_dataset(str(out), 6, seed=11, config=SMALL, progress=False)
    return out


def _files(root: Path) -> dict[str, bytes]:
    """Every file under root by relative path."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_any_worker_count(dataset: Path, tmp_path: Path) -> None:
    write_dataset(str(tmp_path / "b"), 6, seed=11, config=SMALL, workers=2, progress=False)
    a, b = _files(dataset), _files(tmp_path / "b")
    assert len(a) == 8 and a == b
    write_dataset(str(tmp_path / "c"), 6, seed=12, config=SMALL, progress=False)
    assert _files(tmp_path / "c")["person_keypoints.json"] != a["person_keypoints.json"]


def test_ground_truth_scores_ap_1_against_itself(dataset: Path) -> None:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(dataset / "person_keypoints.json"))
        results = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
                   for a in gt.dataset["annotations"] if a["num_keypoints"] > 0]
        ev = COCOeval(gt, gt.loadRes(results), "keypoints")
        ev.evaluate(), ev.accumulate(), ev.summarize()
    assert len(gt.getImgIds()) == 6 and len(results) > 6
    assert ev.stats[0] == pytest.approx(1.0)
    assert gt.loadCats(1)[0]["keypoints"][5] == "left_shoulder"


def test_detections_load_and_overlap_people(dataset: Path) -> None:
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(dataset / "person_keypoints.json"))
        dets = gt.loadRes(str(dataset / "detections.json"))
    anns = dets.dataset["annotations"]
    assert len(anns) >= len(gt.dataset["annotations"])
    assert all(a["category_id"] == 1 and 0 <= a["score"] <= 1 for a in anns)
    assert {a["image_id"] for a in anns} <= set(gt.getImgIds())


def test_visibility_flags_follow_draw_order_and_keypoints_lie_on_the_person() -> None:
    seen = {1: 0, 2: 0}
    for index in range(12):
        s = render_sample(5, index, SMALL)
        label = np.zeros(s.image.shape[:2], int)
        for i, m in enumerate(s.masks):
            label[m] = i + 1
        for i, (ann, m) in enumerate(zip(s.annotations, s.masks)):
            ys, xs = np.nonzero(m)
            assert ann["bbox"] == [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()]
            assert ann["area"] == (label == i + 1).sum()
            kp = np.array(ann["keypoints"]).reshape(17, 3)
            assert ann["num_keypoints"] == int((kp[:, 2] > 0).sum())
            for x, y, v in kp[kp[:, 2] > 0]:
                px, py = int(x), int(y)
                assert m[py, px], "keypoint not on its person's drawn pixels"
                assert v == (1 if label[py, px] > i + 1 else 2)
                seen[int(v)] += 1
    assert seen[1] > 0 and seen[2] > 2 * seen[1]


def test_left_and_right_are_not_mirrored() -> None:
    front = back = 0
    for index in range(40):
        for ann in render_sample(7, index, SMALL).annotations:
            kp = np.array(ann["keypoints"]).reshape(17, 3)
            if not kp[[5, 6, 11, 12], 2].all():
                continue
            sho, hip = kp[[5, 6], :2], kp[[11, 12], :2]
            across, torso = sho[0] - sho[1], np.linalg.norm(sho.mean(0) - hip.mean(0))
            upright = sho.mean(0)[1] < hip.mean(0)[1] and abs(across[0]) > 0.5 * torso > 3 * abs(across[1])
            if upright and kp[[0, 1, 2], 2].all():
                assert across[0] > 0, "facing the camera: left shoulder must be on image right"
                front += 1
            elif upright and not kp[[0, 1, 2], 2].any() and kp[[3, 4], 2].all():
                assert across[0] < 0, "seen from behind: left shoulder must be on image left"
                back += 1
    assert front > 5 and back > 2


def test_in_memory_sample_is_deterministic_and_sized() -> None:
    a, b = render_sample(3, 4, SMALL), render_sample(3, 4, SMALL)
    assert np.array_equal(a.image, b.image) and a.annotations == b.annotations and a.detections == b.detections
    h, w = a.image.shape[:2]
    assert 200 <= w <= 256 and 160 <= h <= 200 and a.image.dtype == np.uint8
    assert json.dumps(a.annotations) and all(d["image_id"] == 5 for d in a.detections)
