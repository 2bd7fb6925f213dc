"""YOLOv8- and YOLOX-form detector decoding with tiny constant ONNX graphs, letterbox and box NMS."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from rmpe.runtime.cli import main
from rmpe.runtime.detector import DetectorError, YoloDetector, guess_format, letterbox, nms_boxes, yolox_grid
from test_runtime_models import expected_keypoints, make_constant_detector, make_pose_model, person_image

SIZE = 64
H, W = 96, 128  # image; the detector input is 64×64, so the scale is 0.5
PEOPLE = np.array([[20, 10, 60, 90], [80, 16, 120, 80]], np.float32)  # xyxy in image pixels


def _cxcywh(xyxy: np.ndarray) -> np.ndarray:
    return np.concatenate([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], axis=1)


def _yolov8_output() -> np.ndarray:
    # centred letterbox: 128×96 → 64×48 at top = round(8 - 0.1) = 8
    boxes = PEOPLE * 0.5 + np.array([0, 8, 0, 8], np.float32)
    rows = [  # cx, cy, w, h, person, bicycle
        [*_cxcywh(boxes[:1])[0], 0.90, 0.01],
        [*_cxcywh(boxes[:1] + 1)[0], 0.80, 0.00],  # duplicate: removed by box NMS
        [*_cxcywh(boxes[1:])[0], 0.70, 0.10],
        [30, 30, 10, 10, 0.02, 0.95],  # a bicycle
        [10, 50, 8, 8, 0.01, 0.00],  # below the threshold
    ] + [[32, 32, 4, 4, 0.0, 0.0]] * 15  # empty candidates: real outputs have far more rows than classes
    return np.array(rows, np.float32).T[None]  # [1, 4 + 2, 20]


def _yolox_output(raw: bool) -> np.ndarray:
    # top-left placement: image pixels × 0.5; rows = one per grid cell of strides 8, 16, 32
    grid, stride = yolox_grid(SIZE, SIZE)
    out = np.zeros((len(grid), 5 + 2), np.float32)
    out[:, 0:2], out[:, 2:4] = 0.5, 0.0  # every cell: a small box with objectness 0
    targets = _cxcywh(PEOPLE * 0.5)
    for box, score in zip(targets, (0.9, 0.6)):
        cell = int(np.flatnonzero((stride[:, 0] == 16) & (grid[:, 0] == box[0] // 16) & (grid[:, 1] == box[1] // 16))[0])
        out[cell, :4] = box
        out[cell, 4:] = [score, 1.0, 0.2]  # objectness, person, bicycle
    if raw:
        out[:, :2] = out[:, :2] / stride - grid
        out[:, 2:4] = np.log(np.maximum(out[:, 2:4], 1e-3) / stride)
    return out[None]


def test_guess_format():
    assert guess_format((1, 84, 8400)) == "yolov8" and guess_format((1, 5, None)) == "yolov8"
    assert guess_format((1, 8400, 85)) == "yolox" and guess_format((1, None, 6)) == "yolox"
    with pytest.raises(DetectorError, match="detector-format"):
        guess_format((1, 100))


def test_letterbox_placement():
    image = np.full((H, W, 3), 200, np.uint8)
    centred, lb = letterbox(image, SIZE, SIZE, centre=True)
    assert (lb.scale, lb.left, lb.top) == (0.5, 0, 8)
    assert (centred[:8] == 114).all() and (centred[8:56] == 200).all() and (centred[56:] == 114).all()
    corner, lb = letterbox(image, SIZE, SIZE, centre=False)
    assert (lb.left, lb.top) == (0, 0) and (corner[:48] == 200).all() and (corner[48:] == 114).all()


def test_nms_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], np.float32)
    assert nms_boxes(boxes, np.array([0.5, 0.9, 0.4], np.float32), 0.5).tolist() == [1, 2]


def test_yolov8_decoding(tmp_path):
    det = YoloDetector(make_constant_detector(tmp_path / "v8.onnx", _yolov8_output()))
    assert det.format == "yolov8"
    found = det(np.zeros((H, W, 3), np.uint8))
    np.testing.assert_allclose(found.xyxy, PEOPLE, atol=1e-4)
    np.testing.assert_allclose(found.scores, [0.9, 0.7], atol=1e-6)


@pytest.mark.parametrize("raw", [True, False])
def test_yolox_decoding(tmp_path, raw):
    det = YoloDetector(make_constant_detector(tmp_path / "yolox.onnx", _yolox_output(raw)))
    assert det.format == "yolox"
    found = det(np.zeros((H, W, 3), np.uint8))
    np.testing.assert_allclose(found.xyxy, PEOPLE, atol=1e-3)
    np.testing.assert_allclose(found.scores, [0.9, 0.6], atol=1e-6)


def test_cli_with_detector(tmp_path):
    model = make_pose_model(tmp_path / "model.onnx")
    det = make_constant_detector(tmp_path / "det.onnx", _yolov8_output())
    Image.fromarray(person_image(H, W, PEOPLE.tolist(), [240, 200])).save(tmp_path / "7.jpg", quality=98)
    out = tmp_path / "r.json"
    assert main([str(model), str(tmp_path / "7.jpg"), "--detector", str(det), "--out", str(out), "--quiet"]) == 0
    results = sorted(json.loads(out.read_text()), key=lambda r: r["box"][0])
    assert [r["image_id"] for r in results] == [7, 7]
    for r, box in zip(results, PEOPLE):
        kps = np.array(r["keypoints"]).reshape(-1, 3)[:, :2]
        np.testing.assert_allclose(kps, expected_keypoints(box[None])[0], atol=1e-2)
    assert main([str(model), str(tmp_path / "7.jpg"), "--detector", str(det), "--max-people", "1",
                 "--out", str(out), "--quiet"]) == 0
    assert len(json.loads(out.read_text())) == 1
