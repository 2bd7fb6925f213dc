"""Fuzzing the runtime's input parsers: nothing but the project's own error types escapes (issue 18, item 5)."""

from __future__ import annotations

import io
import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from rmpe.runtime.boxes import BoxFileError, Boxes, DetectionFile, clean_boxes
from rmpe.runtime.images import ImageError, load_image
from rmpe.runtime.metadata import ModelMetadata
from rmpe.runtime.pose_nms import pose_nms

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=20)
DETECTION = st.fixed_dictionaries({}, optional={
    "image_id": st.integers() | st.text(max_size=6) | st.floats() | st.none(),
    "category_id": st.integers(-1, 2) | st.text(max_size=2) | st.none(),
    "bbox": st.lists(st.floats() | st.integers() | st.text(max_size=2), max_size=5),
    "score": st.floats() | st.text(max_size=3)})


@FUZZ
@given(data=st.lists(DETECTION, max_size=6) | JSON)
def test_detection_files(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("dets") / "d.json"
    path.write_text(json.dumps(data))
    try:
        boxes = DetectionFile(path).lookup("1.jpg", 1)
    except BoxFileError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
        return
    assert boxes.xyxy.shape == (len(boxes), 4)


FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=32)


@FUZZ
@given(rows=st.lists(st.tuples(*[FLOATS] * 5), max_size=8), thr=st.floats(0, 1), top=st.integers(0, 4))
def test_box_clean_up(rows, thr, top):
    values = np.asarray(rows, np.float32).reshape(-1, 5)
    kept = clean_boxes(Boxes(values[:, :4], values[:, 4]), thr=thr, max_people=top)
    assert np.isfinite(kept.xyxy).all() and np.isfinite(kept.scores).all() and (kept.scores >= thr).all()
    assert top == 0 or len(kept) <= top
    assert (np.diff(kept.scores) <= 0).all()


@FUZZ
@given(n=st.integers(0, 5), k=st.integers(1, 6), values=st.lists(FLOATS, min_size=300, max_size=300),
       mode=st.sampled_from(["rmpe", "alphapose"]))
def test_pose_nms_inputs(n, k, values, mode):
    flat = np.asarray(values, np.float64)
    poses = flat[: n * k * 2].reshape(n, k, 2)
    scores = flat[100: 100 + n * k].reshape(n, k)
    boxes = flat[200: 200 + n * 4].reshape(n, 4)
    with np.errstate(all="ignore"):
        result = pose_nms(boxes, flat[250: 250 + n], poses, scores, mode=mode)
    assert len(result.pick) <= n and result.keypoints.shape == (len(result.pick), k, 2)


@FUZZ
@given(props=st.dictionaries(st.sampled_from(["keypoint_names", "skeleton", "flip_pairs", "input_size", "normalisation",
                                              "decode", "max_boxes", "pose_nms", "crop", "other"]),
                             JSON.map(json.dumps) | st.text(max_size=10), max_size=10))
def test_model_metadata(props):
    try:
        meta = ModelMetadata.from_props(props)
    except ValueError as exc:
        assert "\n" not in str(exc)
        return
    assert meta.num_keypoints >= 1


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (12, 16, 3), np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


PNG = png_bytes()


@FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, len(PNG) - 1), st.integers(0, 255)), min_size=1, max_size=8),
       cut=st.integers(8, len(PNG)))
def test_mutated_images(tmp_path_factory, edits, cut):
    data = bytearray(PNG)
    for at, value in edits:
        data[at] = value
    path = tmp_path_factory.mktemp("img") / "x.png"
    path.write_bytes(bytes(data[:cut]))
    try:
        image = load_image(path)
    except ImageError as exc:
        assert "\n" not in str(exc)
        return
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
