"""Bad input gets one clear line naming the file and the problem, never a traceback (issue 18, item 4)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rmpe.export.checkpoint import BUNDLED_DIR, BUNDLED_NAME, read_state_dict
from rmpe.export.cli import main as export_main
from rmpe.runtime.cli import main as run_main
from rmpe.runtime.estimator import Poses
from rmpe.runtime.writers import coco_entries
from test_runtime_models import make_pose_model, metadata, person_image


def one_error(capsys, prog: str) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: "), lines
    return lines[0]


def bundled_state() -> dict[str, torch.Tensor]:
    return read_state_dict(BUNDLED_DIR / f"{BUNDLED_NAME}.safetensors")


@pytest.mark.parametrize("case, expected", [
    ("empty checkpoint", "empty.pth: cannot read checkpoint"),
    ("out is a file", "is a file; --out names the folder"),
    ("opset 99", "--opset 99: choose 16 to 20"),
    ("max boxes -1", "--max-boxes -1: must be at least 1"),
    ("config is a list", "list.json: bad model config (a model config is a JSON object"),
    ("no keypoint names", "names.json: bad model config (keypoint_names must be a non-empty list"),
    ("huge channels", "channels.json: bad model config (channels must be a whole number from 1 to 1024"),
    ("NaN weights", "nan.pth: 1 weight tensor(s) hold NaN or infinite values"),
    ("int weights", "weight tensor(s) are not floating point"),
])
def test_export_refuses_with_one_line(tmp_path, capsys, case, expected):
    (tmp_path / "empty.pth").write_bytes(b"")
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "names.json").write_text('{"keypoint_names": []}')
    (tmp_path / "channels.json").write_text('{"channels": 100000}')
    config = BUNDLED_DIR / f"{BUNDLED_NAME}.json"
    if case in ("NaN weights", "int weights"):
        state = bundled_state()
        if case == "NaN weights":
            state["loc.body.0.weight"] = state["loc.body.0.weight"].clone()
            state["loc.body.0.weight"][0, 0, 0, 0] = float("nan")
        else:
            state = {k: v.to(torch.int32) if v.is_floating_point() else v for k, v in state.items()}
        torch.save(state, tmp_path / ("nan.pth" if case == "NaN weights" else "int.pth"))
    out = ["--out", str(tmp_path / "o")]
    argv = {"empty checkpoint": ["--checkpoint", str(tmp_path / "empty.pth"), *out],
            "out is a file": ["--out", str(tmp_path / "a_file")],
            "opset 99": ["--opset", "99", *out], "max boxes -1": ["--max-boxes", "-1", *out],
            "config is a list": ["--config", str(tmp_path / "list.json"), *out],
            "no keypoint names": ["--config", str(tmp_path / "names.json"), *out],
            "huge channels": ["--config", str(tmp_path / "channels.json"), *out],
            "NaN weights": ["--checkpoint", str(tmp_path / "nan.pth"), "--config", str(config), *out],
            "int weights": ["--checkpoint", str(tmp_path / "int.pth"), "--config", str(config), *out]}[case]
    assert export_main(argv) == 2
    assert expected in one_error(capsys, "rmpe-export")


@pytest.mark.parametrize("size", ["0x0", "100000x100000"])
def test_export_input_size_bounds(size, capsys):
    with pytest.raises(SystemExit) as stop:
        export_main(["--input-size", size])
    assert stop.value.code == 2 and "each side must be 8 to 2048 pixels" in capsys.readouterr().err


@pytest.fixture
def scene(tmp_path):
    model = make_pose_model(tmp_path / "model.onnx")
    (tmp_path / "images").mkdir()
    Image.fromarray(person_image(80, 60, [[5, 5, 50, 75]], [200])).save(tmp_path / "images" / "1.png")
    return model, tmp_path


def dets(tmp_path: Path, entries) -> Path:
    path = tmp_path / "dets.json"
    path.write_text(entries if isinstance(entries, str) else json.dumps(entries))
    return path


@pytest.mark.parametrize("case, expected", [
    ("string category", "entry 0 has category_id '1'; COCO categories are integers"),
    ("deep nesting", "nested too deeply"),
    ("huge integer", "not usable JSON"),
    ("box-thr nan", "--box-thr nan: must be a number"),
    ("max-people -1", "--max-people -1: must be a number of at least 0"),
    ("bad skeleton", "metadata skeleton must be pairs of keypoint numbers 1 to 17"),
])
def test_run_refuses_with_one_line(scene, capsys, case, expected):
    model, tmp_path = scene
    box = {"image_id": 1, "bbox": [5, 5, 45, 70], "score": 0.9}
    argv = [str(model), str(tmp_path / "images"), "--out", str(tmp_path / "r.json"), "--quiet"]
    files = {"string category": [dict(box, category_id="1")], "deep nesting": "[" * 100000 + "]" * 100000,
             "huge integer": '[{"image_id": ' + "9" * 5000 + "}]"}
    extra = {"box-thr nan": ["--box-thr", "nan"], "max-people -1": ["--max-people", "-1"]}.get(case, [])
    if case in files:
        extra = ["--boxes", str(dets(tmp_path, files[case]))]
    if case == "bad skeleton":
        model = make_pose_model(tmp_path / "bad.onnx", metadata(skeleton=[[1, 99]]))
        argv[0] = str(model)
        extra = ["--save-img", str(tmp_path / "vis")]
    assert run_main(argv + extra) == 2
    assert expected in one_error(capsys, "rmpe-run")


def test_detections_for_no_image_and_beyond_float_range_are_reported(scene, capsys):
    model, tmp_path = scene
    path = dets(tmp_path, [{"image_id": 7, "category_id": 1, "bbox": [5, 5, 45, 70], "score": 0.9},
                           {"image_id": 7, "category_id": 1, "bbox": [1e308, 5, 1e308, 70], "score": 0.9}])
    assert run_main([str(model), str(tmp_path / "images"), "--boxes", str(path), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert f"{path} has boxes for 0 of the 1 images" in err
    assert f"{path}: 1 box(es) beyond float range are dropped" in err


def test_results_never_hold_nan_or_infinity():
    keypoints = np.array([[[10.0, 20.0], [np.nan, 5.0]], [[1.0, 2.0], [3.0, 4.0]]], np.float32)
    scores = np.array([[0.9, 0.8], [0.5, np.inf]], np.float32)
    poses = Poses(keypoints, scores, np.zeros((2, 4), np.float32), np.array([0.7, np.nan], np.float32), np.ones(2, np.float32))
    entries = coco_entries(3, poses)
    assert len(entries) == 1 and entries[0]["keypoints"] == [10.0, 20.0, 0.9, 0.0, 0.0, 0.0]
    json.loads(json.dumps(entries), parse_constant=lambda c: pytest.fail(f"{c} written"))


def test_images_over_the_bomb_limit_are_named(tmp_path, monkeypatch):
    from PIL import Image as PILImage

    from rmpe.runtime.images import load_image

    path = tmp_path / "big.png"
    PILImage.fromarray(np.zeros((20, 30, 3), np.uint8)).save(path)
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 500)
    with pytest.warns(RuntimeWarning, match=r"big\.png: 30x20 pixels is over Pillow's decompression bomb limit of 500"):
        assert load_image(path).shape == (20, 30, 3)
