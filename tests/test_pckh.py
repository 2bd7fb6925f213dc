"""PCKh@0.5: exact figures for predictions moved by known amounts, and MPII's .mat converted."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rmpe.benchmarks.pckh import AnnotationError, convert_mpii, evaluate_pckh, write_data_set
from rmpe.runtime.keypoints import MPII_KEYPOINTS

K = 16
HEAD = [0.0, 0.0, 30.0, 40.0]  # diagonal 50 px: head size 0.6 × 50 = 30 px, threshold 15 px
rng = np.random.default_rng(0)


def person(x0: float, y0: float, missing: tuple[int, ...] = ()) -> np.ndarray:
    """(16, 3) annotated joints on a grid from (x0, y0); ``missing`` joints not annotated."""
    kps = np.zeros((K, 3))
    kps[:, 0], kps[:, 1], kps[:, 2] = x0 + 10 * (np.arange(K) % 4), y0 + 25 * (np.arange(K) // 4), 2
    kps[list(missing)] = 0
    return kps


def ground_truth(people: dict[int, list[np.ndarray]]) -> dict:
    anns = [{"id": n, "image_id": i, "category_id": 1, "keypoints": p.ravel().tolist(), "head_box": HEAD}
            for n, (i, p) in enumerate((i, p) for i, ps in people.items() for p in ps)]
    return {"images": [{"id": i, "file_name": f"{i}.jpg"} for i in people], "annotations": anns,
            "categories": [{"id": 1, "name": "person", "keypoints": list(MPII_KEYPOINTS)}]}


def moved(kps: np.ndarray, distances: np.ndarray) -> dict:
    """A result whose joint j lies ``distances[j]`` px from the annotation, in a random direction."""
    angle = rng.uniform(0, 2 * np.pi, K)
    out = kps.copy()
    out[:, 0] += distances * np.cos(angle)
    out[:, 1] += distances * np.sin(angle)
    out[:, 2] = 0.9
    return out


def result(image_id: int, kps: np.ndarray) -> dict:
    return {"image_id": image_id, "category_id": 1, "keypoints": kps.ravel().tolist(), "score": 1.0}


def test_exact_pckh_from_known_moves():
    a, b = person(0, 0), person(500, 0, missing=(0, 6))  # b: right ankle and pelvis not annotated
    c = person(0, 300)  # image 2, no prediction: all its joints wrong
    gt = ground_truth({1: [a, b], 2: [c]})
    # a: joints 0-7 at 14.9 px (inside 15), 8-15 at 15.1 px (outside); b: every joint at 3 px but
    # joint 15 at 40 px; predictions listed in the wrong order, plus a far-away extra person.
    da = np.r_[np.full(8, 14.9), np.full(8, 15.1)]
    db = np.r_[np.full(15, 3.0), 40.0]
    results = [result(1, moved(person(2000, 2000), np.zeros(K))), result(1, moved(b, db)), result(1, moved(a, da))]
    stats = evaluate_pckh(results, gt)
    per_joint = np.array([stats[f"PCKh_{n}"] for n in MPII_KEYPOINTS])
    expected = np.zeros(K)
    expected[0] = 1 / 2  # right ankle: a right (14.9 px), b not annotated, c wrong
    expected[1:8] = 2 / 3  # a and b right, c wrong
    expected[6] = 1 / 2  # pelvis: a right, b not annotated, c wrong
    expected[8:15] = 1 / 3  # only b right (a at 15.1 px)
    expected[15] = 0 / 3  # a at 15.1 px, b at 40 px, c wrong
    np.testing.assert_allclose(per_joint, expected)
    mean14 = np.delete(expected, [6, 7]).mean()
    assert stats["PCKh"] == pytest.approx(mean14)
    assert stats["Head"] == pytest.approx(expected[9])
    assert stats["Wrist"] == pytest.approx((expected[10] + expected[15]) / 2)
    assert stats["Hip"] == pytest.approx((expected[2] + expected[3]) / 2)
    assert (stats["people"], stats["matched"]) == (3, 2)


def test_perfect_missing_and_restricted():
    a = person(0, 0)
    gt = ground_truth({1: [a], 2: [person(100, 100)]})
    perfect = [result(1, a), result(2, person(100, 100))]
    assert evaluate_pckh(perfect, gt)["PCKh"] == 1.0
    gone = a.copy()
    gone[[3, 4]] = 0  # written as 0, 0, 0: missing, so wrong
    gone[5, :2] = np.nan
    stats = evaluate_pckh([result(1, gone)], gt, image_ids=[1])
    assert stats["people"] == 1 and stats["PCKh_left_hip"] == 0 and stats["PCKh_left_ankle"] == 0
    assert stats["PCKh"] == pytest.approx(11 / 14)  # joints 3, 4, 5 wrong; pelvis and thorax not in the mean
    assert evaluate_pckh([], gt)["PCKh"] == 0.0


@pytest.mark.parametrize("change, message", [
    (lambda gt: gt["categories"][0].update(keypoints=["a"] * 17), "needs the 16 MPII keypoints, the file has 17"),
    (lambda gt: gt["annotations"][0].pop("head_box"), "annotation 0 lacks 48 keypoint values, a head_box"),
    (lambda gt: gt["annotations"][0].update(head_box=[5, 5, 5, 5]), "annotation 0 has an empty head_box"),
])
def test_bad_annotations(change, message):
    gt = ground_truth({1: [person(0, 0)]})
    change(gt)
    with pytest.raises(AnnotationError, match=message):
        evaluate_pckh([], gt, source="gt.json")


def _struct_array(rows: list[dict], fields: list[str]) -> np.ndarray:
    """A 1 × n MATLAB struct array for scipy.io.savemat (absent fields empty, as MATLAB stores them)."""
    arr = np.zeros((1, len(rows)), dtype=[(f, object) for f in fields])
    for i, row in enumerate(rows):
        for f in fields:
            arr[0, i][f] = row.get(f, np.zeros((0, 0)))
    return arr


def write_mpii_mat(path) -> None:
    """A tiny .mat laid out like mpii_human_pose_v1_u12_1.mat: 3 images (one a test image), 4 people."""
    from scipy.io import savemat

    def points(ids, xy, visible):
        return _struct_array([{"id": j, "x": x, "y": y, "is_visible": v} for j, (x, y), v in zip(ids, xy, visible)],
                             ["id", "x", "y", "is_visible"])

    def rect(head, scale, objpos, pts):
        return {"x1": head[0], "y1": head[1], "x2": head[2], "y2": head[3], "scale": scale,
                "objpos": {"x": objpos[0], "y": objpos[1]}, "annopoints": {"point": pts}}

    rect_fields = ["x1", "y1", "x2", "y2", "scale", "objpos", "annopoints"]
    person1 = rect([10, 20, 40, 60], 1.5, [100, 200], points([0, 9, 13], [(1, 2), (3, 4), (5, 6)], [1, 0, "1"]))
    person2 = rect([0, 0, 8, 6], 0.5, [50, 60], points([15], [(7, 8)], [np.zeros((0, 0))]))
    no_joints = {"x1": 1, "y1": 1, "x2": 2, "y2": 2, "scale": 1.0, "objpos": {"x": 1, "y": 1}}
    test_person = {"scale": 2.0, "objpos": {"x": 5, "y": 5}}
    annolist = _struct_array([
        {"image": {"name": "a.jpg"}, "annorect": _struct_array([person1, no_joints], rect_fields)},
        {"image": {"name": "test.jpg"}, "annorect": _struct_array([test_person], rect_fields)},
        {"image": {"name": "b.jpg"}, "annorect": _struct_array([person2], rect_fields)},
    ], ["image", "annorect"])
    savemat(str(path), {"RELEASE": {"annolist": annolist, "img_train": np.array([[1, 0, 1]])}})


def test_convert_mpii_mat(tmp_path):
    mat = tmp_path / "mpii.mat"
    write_mpii_mat(mat)
    gt, detections, skipped = convert_mpii(mat)
    assert [(i["id"], i["file_name"]) for i in gt["images"]] == [(1, "a.jpg"), (3, "b.jpg")]
    assert skipped == 1
    first, second = gt["annotations"]
    kps = np.asarray(first["keypoints"]).reshape(16, 3)
    assert kps[0].tolist() == [1, 2, 2] and kps[9].tolist() == [3, 4, 1] and kps[13].tolist() == [5, 6, 2]
    assert first["num_keypoints"] == 3 and first["head_box"] == [10, 20, 40, 60]
    assert first["bbox"] == pytest.approx([100 - 150, 200 + 22.5 - 150, 300, 300])
    assert np.asarray(second["keypoints"]).reshape(16, 3)[15].tolist() == [7, 8, 2]
    assert [d["bbox"] for d in detections] == [first["bbox"], second["bbox"]]
    assert gt["categories"][0]["keypoints"] == list(MPII_KEYPOINTS)
    only_b, _, _ = convert_mpii(mat, {"b.jpg"})
    assert [i["file_name"] for i in only_b["images"]] == ["b.jpg"]
    perfect = [{"image_id": a["image_id"], "keypoints": a["keypoints"], "score": 1} for a in gt["annotations"]]
    assert evaluate_pckh(perfect, gt)["PCKh"] == 1.0


def test_write_data_set_and_bad_files(tmp_path):
    from PIL import Image

    mat = tmp_path / "mpii.mat"
    write_mpii_mat(mat)
    images = tmp_path / "imgs"
    images.mkdir()
    Image.new("RGB", (64, 48)).save(images / "a.jpg")
    summary = write_data_set(mat, tmp_path / "set", images, None)
    assert summary == "2 images, 2 people (1 skipped: no joints, head box or scale); 1 images not found in " + str(images)
    gt = json.loads((tmp_path / "set" / "person_keypoints.json").read_text())
    assert (gt["images"][0]["width"], gt["images"][0]["height"]) == (64, 48)
    assert (tmp_path / "set" / "images" / "a.jpg").is_file()
    assert len(json.loads((tmp_path / "set" / "detections.json").read_text())) == 2
    (tmp_path / "bad.mat").write_bytes(b"not a mat file")
    with pytest.raises(AnnotationError, match="bad.mat: not MPII's annotation .mat"):
        convert_mpii(tmp_path / "bad.mat")
