"""PGPG: pose normalisation, atom clustering, offset mixtures, sampling bias, CLI errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rmpe.training.data_cli import main
from rmpe.training.pgpg import PGPG, fit_files, normalize_pose

# Upright person (y down) and the same person lying on its side; 17 COCO keypoints (x, y).
UPRIGHT = np.array([[0, -60], [3, -63], [-3, -63], [6, -61], [-6, -61], [12, -45], [-12, -45],
                    [16, -25], [-16, -25], [18, -5], [-18, -5], [8, 0], [-8, 0], [9, 25], [-9, 25],
                    [9, 50], [-9, 50]], float)
LYING = UPRIGHT[:, ::-1] * [1, -1]
# Known per-atom mixtures of (dx1/w, dy1/h, dx2/w, dy2/h): upright boxes pushed left, lying ones right.
TRUE = {"upright": ([0.5, 0.5], [[-0.15, 0.0, -0.10, 0.0], [-0.05, 0.10, -0.20, -0.10]]),
        "lying": ([1.0], [[0.12, 0.02, 0.15, 0.0]])}
TOL = 0.02


def _dataset(rng: np.random.Generator, n: int = 300) -> tuple[dict, list[dict]]:
    """COCO keypoints + detections whose offsets come from TRUE, per pose type."""
    images, anns, dets = [], [], []
    for i in range(n):
        kind = "upright" if i % 2 else "lying"
        scale, shift = rng.uniform(0.5, 2.0), rng.uniform(100, 300, 2)
        xy = (UPRIGHT if kind == "upright" else LYING) * scale + shift + rng.normal(0, 1.0, (17, 2))
        kp = np.concatenate([xy, np.full((17, 1), 2.0)], axis=1)
        if i % 7 == 0:
            kp[[0, 1, 2, 15], :] = 0  # some missing keypoints
        lo, hi = xy.min(0) - 5, xy.max(0) + 5
        gt = np.concatenate([lo, hi])
        images.append({"id": i + 1, "file_name": f"{i}.jpg", "width": 640, "height": 480})
        anns.append({"id": i + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0, "num_keypoints": 17,
                     "keypoints": kp.ravel().tolist(), "bbox": [*lo, *(hi - lo)], "area": 1.0})
        weights, means = TRUE[kind]
        for _ in range(3):
            c = rng.choice(len(weights), p=weights)
            off = np.array(means[c]) + rng.normal(0, 0.01, 4)
            box = gt + off * np.tile(hi - lo, 2)
            dets.append({"image_id": i + 1, "category_id": 1, "score": 0.9,
                         "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]})
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}, dets


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Keypoints and detections files drawn from the known mixtures."""
    root = tmp_path_factory.mktemp("pgpg")
    coco, dets = _dataset(np.random.default_rng(0))
    (root / "kp.json").write_text(json.dumps(coco))
    (root / "det.json").write_text(json.dumps(dets))
    return root / "kp.json", root / "det.json"


def test_normalised_pose_ignores_position_and_scale() -> None:
    a, mask = normalize_pose(np.concatenate([UPRIGHT, np.full((17, 1), 2)], 1))
    b, _ = normalize_pose(np.concatenate([UPRIGHT * 3 + 50, np.full((17, 1), 2)], 1))
    assert mask.all() and np.allclose(a, b)
    assert np.allclose(a[[11, 12]].mean(0), 0) and np.isclose(np.linalg.norm(a[[5, 6]].mean(0)), 1)


def test_recovers_per_atom_mixture_means(files: tuple[Path, Path], tmp_path: Path) -> None:
    model = fit_files(str(files[0]), str(files[1]), atoms=2, components=2)
    model.save(str(tmp_path / "m.npz"))
    model = PGPG.load(str(tmp_path / "m.npz"))
    for kind, pose in (("upright", UPRIGHT), ("lying", LYING)):
        atom = model.atom_of(np.concatenate([pose * 1.3 + 7, np.full((17, 1), 2)], 1))
        used = model.weights[atom] > 0.05
        fitted, w = model.means[atom][used], model.weights[atom][used]
        weights, means = TRUE[kind]
        for m in means:  # every true component has a fitted one within TOL (max abs coordinate)
            assert np.abs(fitted - m).max(axis=1).min() < TOL
        assert np.allclose(w @ fitted / w.sum(), np.average(means, axis=0, weights=weights), atol=TOL)
    assert model.atom_of(np.concatenate([UPRIGHT, np.full((17, 1), 2)], 1)) != model.atom_of(
        np.concatenate([LYING, np.full((17, 1), 2)], 1))


def test_samples_show_the_pose_dependent_bias(files: tuple[Path, Path]) -> None:
    model = fit_files(str(files[0]), str(files[1]), atoms=2, components=2)
    gt = np.array([100.0, 100.0, 200.0, 300.0])
    rng = np.random.default_rng(1)
    centre_shift = {}
    for kind, pose in (("upright", UPRIGHT), ("lying", LYING)):
        boxes = model.sample(np.concatenate([pose + 100, np.full((17, 1), 2)], 1), gt, 2000, rng)
        assert boxes.shape == (2000, 4) and (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        centre_shift[kind] = float(((boxes[:, 0] + boxes[:, 2]) / 2).mean() - 150.0)
    assert centre_shift["upright"] < -10 and centre_shift["lying"] > 10  # -12.5 and +13.5 expected


def test_cli_fits_and_reports_bad_input(files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "p.npz"
    assert main(["pgpg", "--keypoints", str(files[0]), "--detections", str(files[1]), "--out", str(out),
                 "--atoms", "2", "--components", "1"]) == 0
    assert PGPG.load(str(out)).centres.shape == (2, 34)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    for kp in (str(tmp_path / "missing.json"), str(bad)):
        assert main(["pgpg", "--keypoints", kp, "--detections", str(files[1]), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert kp in err and "\n" not in err and "Traceback" not in err
