"""Tiny ONNX graphs for the runtime tests: a contract-conforming pose model and YOLO-form detectors.

The pose model clips each box to its image (``image_sizes``), puts a fixed stick figure (``TEMPLATE``,
fractions of the box) into it, and
scores every keypoint with ``SCORE_SCALE[k] * red(centre pixel) / 255`` read from the box's own image,
so a wrong image index or bad padding shows up as a wrong score.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from rmpe.runtime.keypoints import COCO_FLIP_PAIRS, COCO_KEYPOINTS, COCO_SKELETON
from rmpe.runtime.metadata import ModelMetadata

K = len(COCO_KEYPOINTS)
# x, y as fractions of the box: head at the top, ankles at the bottom.
TEMPLATE = np.array([
    [0.50, 0.08], [0.45, 0.06], [0.55, 0.06], [0.40, 0.08], [0.60, 0.08],
    [0.30, 0.22], [0.70, 0.22], [0.22, 0.40], [0.78, 0.40], [0.18, 0.55], [0.82, 0.55],
    [0.38, 0.55], [0.62, 0.55], [0.38, 0.75], [0.62, 0.75], [0.38, 0.95], [0.62, 0.95],
], np.float32)
SCORE_SCALE = np.linspace(1.0, 0.6, K).astype(np.float32)


def metadata(**overrides) -> ModelMetadata:
    """COCO metadata for the fake model."""
    values = dict(keypoint_names=COCO_KEYPOINTS, skeleton=COCO_SKELETON, flip_pairs=COCO_FLIP_PAIRS,
                  input_size=[256, 192], normalisation={"scale": 1 / 255, "mean": [0.485, 0.456, 0.406],
                                                         "std": [0.229, 0.224, 0.225]},
                  trained=False, model_name="fake-stick-figure")
    values.update(overrides)
    return ModelMetadata(**values)


def expected_keypoints(boxes: np.ndarray) -> np.ndarray:
    """What the fake model returns for xyxy ``boxes``: (N, K, 2)."""
    boxes = np.asarray(boxes, np.float32)
    return boxes[:, None, :2] + TEMPLATE[None] * (boxes[:, None, 2:] - boxes[:, None, :2])


def _save(graph: onnx.GraphProto, path: Path, props: dict[str, str] | None = None) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="rmpe-tests")
    model.ir_version = 9
    for key, value in (props or {}).items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def make_pose_model(path: Path, meta: ModelMetadata | None = None, template: np.ndarray = TEMPLATE) -> Path:
    """Write the stick-figure pose model (the contract's inputs, outputs and metadata) to ``path``;
    another (K, 2) ``template`` makes a K-keypoint model (scores ``linspace(1, 0.6, K)`` × red)."""
    k = len(template)
    score_scale = SCORE_SCALE if k == K else np.linspace(1.0, 0.6, k).astype(np.float32)
    c = lambda name, value: numpy_helper.from_array(np.asarray(value), name)  # noqa: E731
    inits = [c("template", np.asarray(template, np.float32)[None]), c("score_scale", score_scale[None]),
             c("half", np.float32(0.5)),
             c("inv255", np.float32(1 / 255)), c("s0", np.array([0], np.int64)), c("s2", np.array([2], np.int64)),
             c("s4", np.array([4], np.int64)), c("ax1", np.array([1], np.int64)), c("yx", np.array([1, 0], np.int64)),
             c("ch0", np.array([0], np.int64)), c("ch1", np.array([1], np.int64)),
             c("whwh", np.array([1, 0, 1, 0], np.int64)), c("zero", np.float32(0))]
    n = helper.make_node
    nodes = [
        n("Cast", ["box_image_index"], ["bi64"], to=TensorProto.INT64),
        n("Cast", ["image_sizes"], ["sizes_f"], to=TensorProto.FLOAT),
        n("Gather", ["sizes_f", "bi64"], ["box_hw"], axis=0),
        n("Gather", ["box_hw", "whwh"], ["limit"], axis=1),
        n("Max", ["boxes", "zero"], ["boxes_0"]),
        n("Min", ["boxes_0", "limit"], ["clipped"]),
        n("Slice", ["clipped", "s0", "s2", "ax1"], ["xy1"]),
        n("Slice", ["clipped", "s2", "s4", "ax1"], ["xy2"]),
        n("Sub", ["xy2", "xy1"], ["wh"]),
        n("Unsqueeze", ["xy1", "ax1"], ["xy1_u"]),
        n("Unsqueeze", ["wh", "ax1"], ["wh_u"]),
        n("Mul", ["wh_u", "template"], ["scaled"]),
        n("Add", ["scaled", "xy1_u"], ["keypoints"]),
        n("Add", ["xy1", "xy2"], ["sum"]),
        n("Mul", ["sum", "half"], ["centre"]),
        n("Floor", ["centre"], ["centre_f"]),
        n("Cast", ["centre_f"], ["centre_i"], to=TensorProto.INT64),
        n("Gather", ["centre_i", "yx"], ["centre_yx"], axis=1),
        n("Unsqueeze", ["bi64", "ax1"], ["bi_u"]),
        n("Concat", ["bi_u", "centre_yx"], ["pix_idx"], axis=1),
        n("GatherND", ["images", "pix_idx"], ["pixel"]),
        n("Slice", ["pixel", "ch0", "ch1", "ax1"], ["red_u8"]),
        n("Cast", ["red_u8"], ["red"], to=TensorProto.FLOAT),
        n("Mul", ["red", "inv255"], ["red01"]),
        n("Mul", ["red01", "score_scale"], ["scores"]),
    ]
    graph = helper.make_graph(
        nodes, "stick_figure",
        [helper.make_tensor_value_info("images", TensorProto.UINT8, ["B", "H", "W", 3]),
         helper.make_tensor_value_info("image_sizes", TensorProto.INT32, ["B", 2]),
         helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["N", 4]),
         helper.make_tensor_value_info("box_image_index", TensorProto.INT32, ["N"])],
        [helper.make_tensor_value_info("keypoints", TensorProto.FLOAT, ["N", k, 2]),
         helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", k])],
        initializer=inits)
    return _save(graph, path, (meta or metadata()).to_props())


def make_constant_detector(path: Path, output: np.ndarray, size: int = 64, input_name: str = "images") -> Path:
    """A detector graph with input [1, 3, size, size] float32 that always returns ``output``."""
    nodes = [helper.make_node("ReduceSum", [input_name], ["total"], keepdims=0),
             helper.make_node("Mul", ["total", "zero"], ["nothing"]),
             helper.make_node("Add", ["const", "nothing"], ["output0"])]
    graph = helper.make_graph(
        nodes, "constant_detector",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(output.shape))],
        initializer=[numpy_helper.from_array(np.asarray(output, np.float32), "const"),
                     numpy_helper.from_array(np.float32(0), "zero")])
    return _save(graph, path)


def person_image(height: int, width: int, boxes: list[list[float]], reds: list[int]) -> np.ndarray:
    """A dark RGB image with each person box filled with its red value (so the fake model scores it)."""
    image = np.full((height, width, 3), 30, np.uint8)
    for (x1, y1, x2, y2), red in zip(boxes, reds):
        image[int(y1):int(np.ceil(y2)), int(x1):int(np.ceil(x2))] = (red, 90, 60)
    return image


def test_fake_pose_model_follows_the_contract(tmp_path):
    import onnxruntime as ort

    path = make_pose_model(tmp_path / "model.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = ModelMetadata.from_props(sess.get_modelmeta().custom_metadata_map)
    assert meta.num_keypoints == K and meta.input_size == [256, 192]
    images = np.stack([person_image(40, 50, [[0, 0, 20, 40]], [255]), person_image(40, 50, [[10, 0, 50, 40]], [51])])
    boxes = np.array([[0, 0, 20, 40], [10, 0, 50, 40]], np.float32)
    sizes = np.array([[40, 50], [40, 50]], np.int32)
    kp, sc = sess.run(None, {"images": images, "image_sizes": sizes, "boxes": boxes,
                             "box_image_index": np.array([0, 1], np.int32)})
    np.testing.assert_allclose(kp, expected_keypoints(boxes), atol=1e-5)
    np.testing.assert_allclose(sc, np.stack([SCORE_SCALE, SCORE_SCALE * 0.2]), atol=1e-6)
