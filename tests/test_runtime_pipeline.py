"""End-to-end runtime tests on a tiny stick-figure ONNX model: API, CLI, box sources, failures, outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rmpe.runtime import PoseEstimator, Poses
from rmpe.runtime.cli import main
from test_runtime_models import SCORE_SCALE, expected_keypoints, make_pose_model, metadata, person_image

# Three images of different sizes, two people each (well apart so pose NMS keeps both).
SCENES = {
    "000000000001.png": (120, 160, [[10, 10, 50, 110], [90, 20, 150, 115]], [250, 200]),
    "000000000002.png": (90, 200, [[5, 5, 45, 85], [120, 10, 180, 88]], [150, 100]),
    "000000000003.png": (140, 120, [[10, 20, 50, 130], [60, 10, 110, 120]], [220, 180]),
}


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return make_pose_model(tmp_path_factory.mktemp("model") / "model.onnx")


@pytest.fixture
def folder(tmp_path) -> Path:
    images = tmp_path / "images"
    images.mkdir()
    for name, (h, w, boxes, reds) in SCENES.items():
        Image.fromarray(person_image(h, w, boxes, reds)).save(images / name)
    return images


def _coco_dets(path: Path, by_name: bool) -> Path:
    dets = []
    for name, (_, _, boxes, _) in SCENES.items():
        for (x1, y1, x2, y2), score in zip(boxes, (0.95, 0.9)):
            image_id = name if by_name else int(Path(name).stem)
            dets.append({"image_id": image_id, "category_id": 1, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score})
        dets.append({"image_id": image_id, "category_id": 3, "bbox": [0, 0, 10, 10], "score": 0.99})  # a car
    path.write_text(json.dumps(dets))
    return path


def _by_image(results: list[dict]) -> dict:
    grouped: dict = {}
    for r in results:
        grouped.setdefault(r["image_id"], []).append(r)
    return grouped


def _check_results(results: list[dict], ids: dict[str, object]) -> None:
    grouped = _by_image(results)
    for name, (_, _, boxes, reds) in SCENES.items():
        people = sorted(grouped[ids[name]], key=lambda r: r["box"][0])
        assert len(people) == 2
        for person, box, red in zip(people, boxes, reds):
            kps = np.array(person["keypoints"]).reshape(-1, 3)
            np.testing.assert_allclose(kps[:, :2], expected_keypoints(np.array([box]))[0], atol=2e-3)
            np.testing.assert_allclose(kps[:, 2], SCORE_SCALE * red / 255, atol=2e-3)
            np.testing.assert_allclose(person["box"], [box[0], box[1], box[2] - box[0], box[3] - box[1]], atol=1e-2)
            assert person["category_id"] == 1 and isinstance(person["idx"], int)


def test_estimator_api_with_boxes(model):
    h, w, boxes, reds = SCENES["000000000001.png"]
    with PoseEstimator(model, nms="none") as est:
        assert est.keypoint_names[0] == "nose" and est.input_size == (256, 192) and len(est.skeleton) == 19
        poses = est(person_image(h, w, boxes, reds), boxes=boxes)
    assert isinstance(poses, Poses) and len(poses) == 2
    np.testing.assert_allclose(poses.keypoints, expected_keypoints(np.array(boxes)), atol=1e-4)
    first = poses[0]
    assert first.keypoints.shape == (17, 2) and first.keypoint_scores.shape == (17,) and first.box.shape == (4,)
    assert isinstance(first.score, float)
    np.testing.assert_allclose(poses.scores, np.median(poses.keypoint_scores, axis=1), rtol=1e-6)  # ranked as rmpe ranks


def test_estimator_single_person_and_pose_nms(model):
    image = person_image(100, 60, [[0, 0, 60, 100]], [255])
    with PoseEstimator(model) as est:
        whole = est(image)
        np.testing.assert_allclose(whole.keypoints[0], expected_keypoints(np.array([[0, 0, 60, 100]]))[0], atol=1e-4)
        # three near-identical boxes of one person: pose NMS merges them into one
        merged = est(image, boxes=[[0, 0, 60, 100], [0.5, 0, 60, 100], [0, 0.5, 60, 100]], box_scores=[0.9, 0.8, 0.7])
        assert len(merged) == 1
        assert len(est(image, boxes=np.zeros((0, 4)))) == 0


def test_cli_boxes_batched_and_pycocotools(model, folder, tmp_path):
    out = tmp_path / "results.json"
    dets = _coco_dets(tmp_path / "dets.json", by_name=False)
    # batch 3 → a call holds boxes of two images (padded to a common size) or one image split in two
    assert main([str(model), str(folder), "--boxes", str(dets), "--out", str(out), "--batch", "3", "--quiet"]) == 0
    results = json.loads(out.read_text())
    _check_results(results, {name: int(Path(name).stem) for name in SCENES})

    from pycocotools.coco import COCO

    gt = COCO()
    gt.dataset = {"images": [{"id": int(Path(n).stem), "file_name": n, "height": s[0], "width": s[1]}
                             for n, s in SCENES.items()],
                  "annotations": [], "categories": [{"id": 1, "name": "person"}]}
    gt.createIndex()
    loaded = gt.loadRes(str(out))
    assert len(loaded.getAnnIds()) == 6


def test_cli_alphapose_detfile_with_names(model, folder, tmp_path, capsys):
    out = tmp_path / "results.json"
    dets = _coco_dets(tmp_path / "dets.json", by_name=True)
    (folder / "frame_a.png").write_bytes((folder / "000000000001.png").read_bytes())  # non-numeric name
    assert main([str(model), str(folder), "--detfile", str(dets), "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    _check_results(results, {name: int(Path(name).stem) for name in SCENES})  # frame_a.png changes no id
    assert "frame_a.png" not in _by_image(results)  # no detections for it: no people
    summary = capsys.readouterr().err.strip().splitlines()[-1]
    assert "4 images, 6 people, 0 failures" in summary and "graph" in summary and "nms" in summary


def test_cli_annotations_map_ids(model, folder, tmp_path):
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({"images": [{"id": 100 + i, "file_name": n} for i, n in enumerate(SCENES)],
                               "annotations": [], "categories": []}))
    dets = [{"image_id": 100 + i, "category_id": 1, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "score": 0.9}
            for i, (n, (_, _, boxes, _)) in enumerate(SCENES.items()) for b in boxes]
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    out = tmp_path / "r.json"
    assert main([str(model), str(folder), "--boxes", str(tmp_path / "dets.json"), "--annotations", str(ann),
                 "--out", str(out), "--quiet"]) == 0
    _check_results(json.loads(out.read_text()), {n: 100 + i for i, n in enumerate(SCENES)})


def test_cli_single_person_glob_and_drawing(model, folder, tmp_path):
    out, vis = tmp_path / "r.json", tmp_path / "vis"
    assert main([str(model), str(folder / "*.png"), "--out", str(out), "--save-img", str(vis), "--nms", "none",
                 "--quiet"]) == 0
    results = json.loads(out.read_text())
    assert len(results) == 3 and {r["idx"] for r in results} == {0}
    for r in results:
        h, w = SCENES[f"{r['image_id']:012d}.png"][:2]
        assert r["box"] == [0, 0, w, h]
    drawn = sorted(p.name for p in vis.iterdir())
    assert drawn == sorted(SCENES)
    before = person_image(*SCENES["000000000001.png"][:2], *SCENES["000000000001.png"][2:])
    assert (np.asarray(Image.open(vis / "000000000001.png").convert("RGB")) != before).any()


def test_cli_bad_files_are_reported_and_skipped(model, folder, tmp_path, capsys):
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" * 10)
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image\n")
    (folder / "fake.webp").write_text("plain text with an image suffix\n")
    out = tmp_path / "r.json"
    assert main([str(model), str(folder), "--out", str(out), "--nms", "none"]) == 0
    err = capsys.readouterr().err
    for name in ("corrupt.jpg", "empty.png", "fake.webp"):
        lines = [line for line in err.splitlines() if name in line]
        assert len(lines) == 1 and "skipped" in lines[0], err
    assert "empty file" in err and "notes.txt" in err and "Traceback" not in err
    assert "3 images, 3 people, 3 failures" in err
    assert len(json.loads(out.read_text())) == 3
    assert main([str(model), str(folder / "corrupt.jpg")]) == 1  # nothing readable: status 1


def test_cli_empty_folder_and_bad_inputs_exit_2(model, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main([str(model), str(tmp_path / "empty")]) == 2
    assert "no images found" in capsys.readouterr().err
    image = tmp_path / "one.png"
    Image.fromarray(person_image(20, 20, [], [])).save(image)
    not_model = tmp_path / "not_a_model.onnx"
    not_model.write_bytes(b"garbage")
    assert main([str(not_model), str(image)]) == 2
    assert "not_a_model.onnx" in capsys.readouterr().err
    bad_boxes = tmp_path / "dets.json"
    bad_boxes.write_text("{broken")
    assert main([str(model), str(image), "--boxes", str(bad_boxes)]) == 2
    err = capsys.readouterr().err
    assert "dets.json" in err and "Traceback" not in err
    assert main([str(model.with_suffix(".plan")), str(image)]) == 2


def test_engine_file_needs_tensorrt(model, tmp_path, capsys):
    engine = tmp_path / "model.plan"
    engine.write_bytes(b"not an engine")
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        image = tmp_path / "one.png"
        Image.fromarray(person_image(20, 20, [], [])).save(image)
        assert main([str(engine), str(image)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "tensorrt" in err[0].lower()
    else:
        pytest.skip("tensorrt is installed; the missing-package message is not reachable")


def test_runtime_runs_with_torch_blocked(model, folder):
    code = f"""
import sys
sys.modules['torch'] = None  # any 'import torch' now raises ImportError
import numpy as np
from rmpe.runtime import PoseEstimator
from rmpe.runtime.cli import main
est = PoseEstimator({str(model)!r}, nms='none')
assert len(est(np.zeros((50, 40, 3), np.uint8))) == 1
assert main([{str(model)!r}, {str(folder)!r}, '--quiet', '--nms', 'none']) == 0
import rmpe.runtime.backends, rmpe.runtime.detector, rmpe.runtime.draw, rmpe.runtime.pipeline, rmpe.runtime.writers
print('ok')
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_cuda_request_on_cpu_build_warns(model, folder, capsys):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA; the fallback warning is not reachable")
    assert main([str(model), str(folder), "--device", "cuda", "--nms", "none", "--quiet", "--threads", "1"]) == 0
    warning = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warning) == 1 and "CUDAExecutionProvider" in warning[0] and "CPU" in warning[0]


@pytest.mark.trt
def test_tensorrt_engine_backend(model, tmp_path):
    trt = pytest.importorskip("tensorrt")

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(model.read_bytes()):
        pytest.skip("TensorRT's parser does not take the test graph")
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("images", (1, 8, 8, 3), (2, 160, 200, 3), (4, 400, 400, 3))
    profile.set_shape("boxes", (1, 4), (8, 4), (64, 4))
    profile.set_shape("box_image_index", (1,), (8,), (64,))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        pytest.skip("TensorRT could not build the test graph here")
    engine = tmp_path / "model.plan"
    engine.write_bytes(bytes(serialized))
    metadata().write_json(engine.with_suffix(".json"))
    h, w, boxes, reds = SCENES["000000000001.png"]
    with PoseEstimator(engine, nms="none") as est:
        poses = est(person_image(h, w, boxes, reds), boxes=boxes)
    np.testing.assert_allclose(poses.keypoints, expected_keypoints(np.array(boxes)), atol=1e-3)


def test_pose_boxes_fit_keypoints_and_ignore_nan():
    from rmpe.runtime.boxes import pose_boxes

    kps = np.array([[[10, 20], [30, 5], [np.nan, np.nan]],      # extent of the finite keypoints
                    [[-5, 40], [50, 90], [20, 60]],             # past the image: the graph clips it
                    [[np.nan, np.nan]] * 3], np.float32)        # no keypoints: no box
    boxes = pose_boxes(kps, np.array([0.5, 0.9, 0.7]))
    np.testing.assert_allclose(boxes.xyxy, [[-5, 40, 50, 90], [10, 5, 30, 20]])  # best box score first
    np.testing.assert_allclose(boxes.scores, [0.9, 0.5])


def test_refine_runs_a_second_pass_at_fitted_boxes(model):
    from rmpe.runtime.boxes import Boxes, join_boxes
    from rmpe.runtime.estimator import select_poses

    h, w, boxes, reds = SCENES["000000000001.png"]
    image = person_image(h, w, boxes, reds)
    with PoseEstimator(model, refine=True) as est:
        calls = []
        infer = est.infer
        est.infer = lambda images, b: calls.append(np.concatenate(b)) or infer(images, b)
        refined = est(image, boxes=boxes, box_scores=[0.95, 0.9])
    first_boxes = Boxes(np.array(boxes, np.float32), np.array([0.95, 0.9], np.float32))
    scores = SCORE_SCALE[None] * np.array(reds, np.float32)[:, None] / 255  # each crop's centre is inside its person
    first = select_poses(expected_keypoints(first_boxes.xyxy), scores, first_boxes, "rmpe")
    fitted = np.concatenate([first.keypoints.min(axis=1), first.keypoints.max(axis=1)], axis=1)
    assert len(calls) == 2
    np.testing.assert_allclose(calls[0], boxes)
    np.testing.assert_allclose(np.sort(calls[1], axis=0), np.sort(fitted, axis=0), atol=1e-3)
    # the second NMS sees both passes: the same people, each a merge of its two crops
    second = Boxes(calls[1], np.array([0.95, 0.9], np.float32))
    order = np.argsort(second.xyxy[:, 0])  # left person first, as in ``boxes``
    second = Boxes(second.xyxy[order], second.scores)
    both = join_boxes(first_boxes, second)
    expected = select_poses(expected_keypoints(both.xyxy), np.concatenate([scores, scores]), both, "rmpe")
    assert len(refined) == len(expected) == 2  # the stick figures of both crops overlap enough to merge
    for got, want in zip(sorted(refined, key=lambda q: q.box[0]), sorted(expected, key=lambda q: q.box[0])):
        np.testing.assert_allclose(got.keypoints, want.keypoints, atol=1e-3)
        np.testing.assert_allclose(got.keypoint_scores, want.keypoint_scores, atol=1e-4)
    moved = np.abs(np.sort(refined.keypoints[..., 1].ravel()) - np.sort(first.keypoints[..., 1].ravel()))
    assert moved.max() > 0.5  # the second crop's pose was merged in


def test_cli_refine_matches_the_estimator_per_image(model, folder, tmp_path):
    out = tmp_path / "results.json"
    dets = _coco_dets(tmp_path / "dets.json", by_name=False)
    # batch 3: first and second passes each span several graph calls and split images
    assert main([str(model), str(folder), "--boxes", str(dets), "--out", str(out), "--batch", "3", "--refine",
                 "--quiet"]) == 0
    grouped = _by_image(json.loads(out.read_text()))
    with PoseEstimator(model, refine=True) as est:
        for name, (h, w, boxes, reds) in SCENES.items():
            poses = est(person_image(h, w, boxes, reds), boxes=boxes, box_scores=[0.95, 0.9])
            got = sorted(grouped[int(Path(name).stem)], key=lambda r: -r["score"])
            assert len(got) == len(poses)
            for r, i in zip(got, np.argsort(-poses.scores, kind="stable")):
                np.testing.assert_allclose(np.array(r["keypoints"]).reshape(-1, 3)[:, :2], poses.keypoints[i], atol=1e-3)


def test_refine_needs_a_pose_nms(model, folder, capsys):
    with pytest.raises(ValueError, match="refine needs a pose NMS"):
        PoseEstimator(model, nms="none", refine=True)
    assert main([str(model), str(folder), "--nms", "none", "--refine", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refine needs a pose NMS" in err[0]


def test_refine_keeps_the_first_pass_people():
    from rmpe.runtime.boxes import Boxes
    from rmpe.runtime.estimator import refine_poses

    box = np.array([[0, 0, 40, 100]], np.float32)
    pose = expected_keypoints(box)
    first = (pose, np.full((1, 17), 0.8, np.float32), Boxes(box, np.array([0.9], np.float32)))
    near = (pose + 1.0, np.full((1, 17), 0.9, np.float32), Boxes(box + 1, np.array([0.9], np.float32)))
    far = (pose + 500.0, np.full((1, 17), 0.9, np.float32), Boxes(box + 500, np.array([0.9], np.float32)))
    merged = refine_poses(first, near, "rmpe")
    assert len(merged) == 1
    assert 0.0 < (merged.keypoints - pose).mean() < 1.0  # both passes averaged, score-weighted
    kept = refine_poses(first, far, "rmpe")  # a second-pass pose matching nobody is not a new person
    assert len(kept) == 1
    np.testing.assert_allclose(kept.keypoints, pose, atol=1e-4)
    empty = (np.zeros((0, 17, 2), np.float32), np.zeros((0, 17), np.float32), Boxes.empty())
    assert len(refine_poses(empty, empty, "alphapose")) == 0


def test_pose_nms_mode_and_constants_come_from_the_metadata(tmp_path):
    """rmpe-run follows the model's pose_nms entry as any other host must (docs/onnx-contract.md)."""
    from rmpe.runtime.backends import BackendError

    h, w, boxes, reds = SCENES["000000000001.png"]
    image = person_image(h, w, boxes, reds)
    strict = {"default": "alphapose", "modes": {"alphapose": {"score_thresh": 0.99}}}
    with PoseEstimator(make_pose_model(tmp_path / "strict.onnx", metadata(pose_nms=strict))) as est:
        assert est.nms == "alphapose" and est.nms_constants == {"score_thresh": 0.99}
        assert len(est(image, boxes=boxes)) == 0  # no keypoint scores 0.99: every person dropped
        assert len(PoseEstimator(tmp_path / "strict.onnx", nms="none")(image, boxes=boxes)) == len(boxes)
    bad = {"default": "rmpe", "modes": {"rmpe": {"no_such_constant": 1}}}
    with pytest.raises(BackendError, match="no_such_constant"):
        PoseEstimator(make_pose_model(tmp_path / "bad.onnx", metadata(pose_nms=bad)))


def test_raw_graph_call_refuses_what_the_contract_leaves_to_the_caller(model):
    """A box_image_index outside [0, B) or image_sizes beyond the tensor: a clear error before the call."""
    image = person_image(60, 80, [[10, 10, 50, 55]], [200])[None]
    feeds = {"images": image, "image_sizes": np.array([[60, 80]], np.int32),
             "boxes": np.array([[10, 10, 50, 55], [0, 0, 20, 20]], np.float32),
             "box_image_index": np.array([0, 5], np.int32)}
    with PoseEstimator(model, nms="none") as est:
        with pytest.raises(ValueError, match=r"box_image_index 5 is outside \[0, 1\) \(1 of 2 boxes\)"):
            est.run_graph(feeds)
        with pytest.raises(ValueError, match="image_sizes must be"):
            est.run_graph(feeds | {"image_sizes": np.array([[61, 80]], np.int32), "box_image_index": np.zeros(2, np.int32)})
        keypoints, scores = est.run_graph(feeds | {"box_image_index": np.zeros(2, np.int32)})
    assert keypoints.shape == (2, 17, 2) and scores.shape == (2, 17)
