"""The upscale benchmark pairs people by image and box and measures keypoint moves in scale-1 pixels."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from rmpe.benchmarks.upscale import keypoint_shift, main
from test_runtime_models import make_pose_model, person_image


def result(image_id: int, box: list[float], keypoints: np.ndarray) -> dict:
    flat = np.concatenate([keypoints, np.ones((len(keypoints), 1))], axis=1).ravel().tolist()
    return {"image_id": image_id, "box": box, "keypoints": flat}


def test_shift_pairs_by_box_in_scale_one_pixels():
    kps = np.array([[10.0, 20.0], [30.0, 40.0]])
    base = [result(1, [0, 0, 50, 60], kps), result(2, [5, 5, 10, 10], kps)]
    moved = kps * 4 + [[4.0, 0.0], [0.0, 12.0]]  # 1 and 3 px in scale-1 pixels
    scaled = [result(1, [0, 0, 200, 240], moved), result(3, [0, 0, 200, 240], moved)]  # image 3: no partner
    shift = keypoint_shift(base, scaled, 4)
    assert shift == {"p50": 2.0, "p90": 2.8, "max": 3.0, "people": 1.0}
    assert keypoint_shift(base, [], 4) is None


def test_cli_on_the_stick_figure_model(tmp_path, capsys):
    model = make_pose_model(tmp_path / "model.onnx")
    images = tmp_path / "images"
    images.mkdir()
    boxes = [[20, 15, 90, 150], [110, 20, 180, 155]]
    Image.fromarray(person_image(170, 200, boxes, [220, 160])).save(images / "1.png")
    dets = [{"image_id": 1, "category_id": 1, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": 0.9} for x1, y1, x2, y2 in boxes]
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    assert main([str(model), "--images", str(images), "--boxes", str(tmp_path / "dets.json"), "--factor", "2"]) == 0
    row = capsys.readouterr().out.splitlines()[-1]
    assert row.startswith(f"| {model} | 2 | 0.00 / 0.00 / 0.0")
    assert main([str(tmp_path / "missing.onnx"), "--images", str(images), "--boxes", str(tmp_path / "dets.json")]) == 2
    assert "missing.onnx: not found" in capsys.readouterr().err
