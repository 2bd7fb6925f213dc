"""`python -m rmpe.benchmarks.nms_tuning --model M --data DIR...`: NMS constants scored on a model's candidates."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rmpe.benchmarks import nms_tuning
from test_runtime_models import make_pose_model

pytest.importorskip("pycocotools")


@pytest.fixture(scope="module")
def data_sets(tmp_path_factory):
    from rmpe.training.data_cli import main as data_main

    folders = []
    for seed in (3, 4):
        out = tmp_path_factory.mktemp(f"synth{seed}")
        assert data_main(["synth", "--out", str(out), "--images", "3", "--seed", str(seed)]) == 0
        folders.append(out)
    return folders


def test_candidates_are_one_pose_per_cleaned_detection(data_sets, tmp_path):
    model = make_pose_model(tmp_path / "fake.onnx")
    cands, gt = nms_tuning.model_candidates(model, data_sets[0])
    assert sorted(cands) == sorted(img["id"] for img in gt["images"])
    detections = json.loads((data_sets[0] / "detections.json").read_text())
    for image_id, (boxes, box_scores, poses, scores) in cands.items():
        listed = [d for d in detections if d["image_id"] == image_id and d["score"] >= 0.05]
        assert len(boxes) == len(box_scores) == len(poses) == len(scores) == len(listed)
        assert poses.shape[1:] == (17, 2) and scores.shape[1:] == (17,)


def test_table_gives_each_setting_per_set_and_mean(data_sets, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(nms_tuning, "DATA_GRID", {"match_radius": [0.05, 0.1], "merge_radius": [0.15],
                                                   "match_thresh": [8]})
    model = make_pose_model(tmp_path / "fake.onnx")
    assert nms_tuning.main(["--model", str(model), "--data", *map(str, data_sets)]) == 0
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("| ")]
    assert lines[0] == f"| setting | AP {data_sets[0].name} | AP {data_sets[1].name} | mean |"
    rows = [[c.strip() for c in x.strip("|").split("|")] for x in lines[1:]]
    assert [r[0] for r in rows] == ["alphapose defaults", "rmpe defaults",
                                    "rmpe {'match_radius': 0.05, 'merge_radius': 0.15, 'match_thresh': 8}",
                                    "rmpe {'match_radius': 0.1, 'merge_radius': 0.15, 'match_thresh': 8}"]
    for row in rows:
        aps = [float(c) for c in row[1:]]
        assert all(0.0 <= a <= 1.0 for a in aps)
        assert aps[2] == pytest.approx(np.mean(aps[:2]), abs=1e-4)


def test_model_without_data_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        nms_tuning.main(["--model", str(tmp_path / "m.onnx")])
    assert exit_info.value.code == 2
    assert "--model and --data go together" in capsys.readouterr().err


def test_missing_data_set_is_one_line(tmp_path, capsys):
    model = make_pose_model(tmp_path / "fake.onnx")
    assert nms_tuning.main(["--model", str(model), "--data", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nms_tuning: error: ") and "nowhere" in err[0]
