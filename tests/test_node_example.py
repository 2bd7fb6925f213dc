"""examples/node, a Node.js host of the exported graph, against the Python runtime.

- its pose NMS port (both modes, any K) against ``rmpe.runtime.pose_nms`` on simulated scenes;
- its image decoding (EXIF orientation, PNG colour types, JPEG) against ``runtime/images.load_image``;
- end to end: ``node main.js`` and ``rmpe-run`` on the same images and detections find the same people.

Skipped where ``node`` is missing; the example's packages are installed (``npm ci --ignore-scripts``)
when its node_modules folder is missing, and the tests skip only when npm is missing too.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rmpe.benchmarks.nms_scenes import candidates, make_scene
from rmpe.runtime.images import load_image
from rmpe.runtime.pose_nms import pose_nms

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "node"
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(NODE is None, reason="node (Node.js) is not installed")


@pytest.fixture(scope="module")
def node_example() -> Path:
    """The example folder with its npm packages installed."""
    if not (EXAMPLE / "node_modules" / "onnxruntime-node").is_dir():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("examples/node/node_modules is missing and npm is not installed to install it")
        done = subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=EXAMPLE,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"npm ci in {EXAMPLE} failed:\n{done.stdout}\n{done.stderr}"
    return EXAMPLE


def run_node(script: str, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([NODE, str(EXAMPLE / script), *args], input=stdin, capture_output=True, text=True,
                          timeout=600)
    if check:
        assert done.returncode == 0, f"node {script} exited {done.returncode}:\n{done.stderr}"
    return done


def as_array(rows, shape) -> np.ndarray:
    """JSON rows (null for NaN) as a float64 array of ``shape``."""
    return np.array(rows, dtype=float).reshape(shape)


# ------------------------------------------------------------------------------------ pose NMS


def nms_problem(seed: int, k: int, mode: str) -> tuple[dict, tuple]:
    """A simulated scene with duplicates, some missing keypoints and zero or negative scores."""
    rng = np.random.default_rng(seed)
    scene = make_scene(rng, int(rng.integers(3, 12)), k=k, jitter_px=float(rng.uniform(0, 3)),
                       jitter_rel=float(rng.uniform(0.005, 0.04)), size_range=(20.0, 600.0), image=1500.0)
    boxes, box_scores, poses, scores = (np.array(a, np.float64) for a in candidates(scene))
    n = len(poses)
    poses[rng.random((n, k)) < 0.05] = np.nan  # missing keypoints: NaN x and y
    scores[rng.random((n, k)) < 0.03] = np.nan  # ... or a NaN score
    scores[rng.random((n, k)) < 0.05] = 0.0  # exact zeros become 1e-5
    scores[rng.random((n, k)) < 0.02] = -0.1  # negative heatmap peaks too
    poses[0] = np.nan  # a candidate with no keypoint at all
    problem = {"mode": mode, "boxes": boxes.tolist(), "box_scores": box_scores.tolist(),
               "poses": np.where(np.isnan(poses), None, poses).tolist(),
               "pose_scores": np.where(np.isnan(scores), None, scores).tolist()}
    return problem, (boxes, box_scores, poses, scores)


@pytest.mark.parametrize("k", [17, 5, 26])
def test_nms_port_matches_pose_nms(node_example, k):
    cases = [(seed, mode) for seed in range(8) for mode in ("rmpe", "alphapose")]
    problems, inputs = zip(*(nms_problem(1000 * k + seed, k, mode) for seed, mode in cases))
    # constants from a model's metadata reach the port: a few non-default ones, checked like the rest
    overrides = {"rmpe": {"match_radius": 0.08, "merge_radius": 0.2, "match_thresh": 6},
                 "alphapose": {"alpha": 0.15, "match_cap": 9.0, "person_score": "median"}}
    extra, extra_inputs = nms_problem(77 + k, k, "rmpe")
    problems += ({**extra, "pose_nms": {"modes": {"rmpe": overrides["rmpe"]}}},
                 {**extra, "mode": "alphapose", "pose_nms": {"modes": {"alphapose": overrides["alphapose"]}}})
    inputs += (extra_inputs, extra_inputs)
    cases += [(77, "rmpe"), (77, "alphapose")]
    kwargs = [{}] * (len(cases) - 2) + [overrides["rmpe"], overrides["alphapose"]]

    out = json.loads(run_node("tools/nms-json.js", stdin=json.dumps(problems)).stdout)
    kept = 0
    worst_kp = worst_score = 0.0
    for (seed, mode), args, extra_kwargs, got in zip(cases, inputs, kwargs, out):
        ref = pose_nms(*args, mode=mode, **extra_kwargs)
        where = f"K={k} seed={seed} mode={mode}"
        assert got["pick"] == ref.pick.tolist(), where
        assert got["merged"] == [m.tolist() for m in ref.merged], where
        assert got["dropped"] == ref.dropped.tolist(), where
        m = len(ref.pick)
        kp = as_array(got["keypoints"], (m, k, 2))
        np.testing.assert_array_equal(np.isnan(kp), np.isnan(ref.keypoints), err_msg=where)
        np.testing.assert_allclose(kp, ref.keypoints, atol=1e-4, rtol=0, err_msg=where)
        np.testing.assert_allclose(as_array(got["keypoint_scores"], (m, k)), ref.keypoint_scores, atol=1e-5, rtol=0,
                                   err_msg=where)
        np.testing.assert_allclose(as_array(got["scores"], (m,)), ref.scores, atol=1e-5, rtol=0, err_msg=where)
        np.testing.assert_array_equal(as_array(got["boxes"], (m, 4)), ref.boxes, err_msg=where)
        np.testing.assert_array_equal(as_array(got["box_scores"], (m,)), ref.box_scores, err_msg=where)
        kept += m
        if m:
            worst_kp = max(worst_kp, float(np.nanmax(np.abs(kp - ref.keypoints), initial=0.0)))
            worst_score = max(worst_score, float(np.abs(as_array(got["scores"], (m,)) - ref.scores).max()))
    assert kept > 5 * len(cases)  # the scenes keep people, so the merge and scores were compared
    print(f"NMS parity K={k}: {len(cases)} scenes, {kept} people, max keypoint difference {worst_kp:.3g} px, "
          f"max person score difference {worst_score:.3g}")


def test_nms_port_rejects_unknown_constants(node_example):
    problem, _ = nms_problem(1, 17, "rmpe")
    problem["pose_nms"] = {"modes": {"rmpe": {"match_radius": 0.1, "radius_of_doom": 3}}}
    done = run_node("tools/nms-json.js", stdin=json.dumps([problem]), check=False)
    assert done.returncode == 2 and "radius_of_doom" in done.stderr and "\n    at " not in done.stderr


# -------------------------------------------------------------------------------------- images


def decode_with_node(path: Path, tmp_path: Path) -> tuple[dict, np.ndarray]:
    raw = tmp_path / f"{path.name}.rgb"
    info = json.loads(run_node("tools/decode.js", str(path), str(raw)).stdout)
    return info, np.frombuffer(raw.read_bytes(), np.uint8).reshape(info["height"], info["width"], 3)


def asymmetric_image(height: int = 9, width: int = 14) -> np.ndarray:
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (height, width, 3), np.uint8)
    image[0, 0] = (255, 0, 0)  # a marked corner shows every flip and turn
    return image


def orientation_exif(value: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = value
    return exif


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(node_example, tmp_path, orientation):
    image = Image.fromarray(asymmetric_image())
    for suffix, options in ((".png", {}), (".jpg", {"quality": 95})):
        path = tmp_path / f"o{orientation}{suffix}"
        image.save(path, exif=orientation_exif(orientation), **options)
        info, pixels = decode_with_node(path, tmp_path)
        assert info["orientation"] == orientation
        # the JPEG decoder is libjpeg-turbo (in WebAssembly), as in Pillow: the same pixels
        np.testing.assert_array_equal(pixels, load_image(path), err_msg=path.name)


def test_png_colour_types_match_pillow(node_example, tmp_path):
    base = asymmetric_image()
    rng = np.random.default_rng(2)
    images = {
        "grey": Image.fromarray(base).convert("L"), "grey_alpha": Image.fromarray(base).convert("LA"),
        "rgba": Image.fromarray(base).convert("RGBA"), "palette": Image.fromarray(base).convert("P"),
        "bilevel": Image.fromarray(base).convert("1"),
        "grey16": Image.fromarray(rng.integers(0, 65536, base.shape[:2]).astype(np.uint16)),
        "grey16_low": Image.fromarray(rng.integers(0, 250, base.shape[:2]).astype(np.uint16)),
    }
    for name, image in images.items():
        image.save(tmp_path / f"{name}.png")
    # an RGB image whose tRNS colour must not turn black, and a palette with transparency
    Image.fromarray(base).save(tmp_path / "rgb_trns.png", transparency=tuple(int(v) for v in base[0, 0]))
    Image.fromarray(base).convert("P").save(tmp_path / "palette_trns.png", transparency=3)
    Image.fromarray(base).convert("L").save(tmp_path / "grey.jpg")
    for path in sorted(tmp_path.glob("*.*")):
        if path.suffix in (".png", ".jpg"):
            _, pixels = decode_with_node(path, tmp_path)
            np.testing.assert_array_equal(pixels, load_image(path), err_msg=path.name)


# ---------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> tuple[Path, Path]:
    """Synthetic people as PNGs of two sizes, with their simulated detections plus awkward boxes."""
    from rmpe.training.data_cli import main as data_main

    root = tmp_path_factory.mktemp("node_scene")
    assert data_main(["synth", "--out", str(root / "synth"), "--images", "3", "--seed", "20261202",
                      "--size", "320x240", "--workers", "1"]) == 0
    images = root / "images"
    images.mkdir()
    for jpg in sorted((root / "synth" / "images").glob("*.jpg")):
        pixels = np.asarray(Image.open(jpg).convert("RGB"))
        if jpg.stem.endswith("2"):
            pixels = pixels[:200, :250]  # a smaller image: padded in the shared graph call
        Image.fromarray(pixels).save(images / f"{jpg.stem}.png")
    Image.open(images / "000000000001.png").save(images / "crowd.png")  # named by its file name
    dets = json.loads((root / "synth" / "detections.json").read_text())
    extra = [
        [-40.0, -30.0, 120.0, 200.0, 0.9],  # across the top-left corner
        [200.0, 60.0, 300.0, 250.0, 0.85],  # across the right edge
        [400.0, 10.0, 80.0, 90.0, 0.95],  # entirely right of the image
        [10.0, -300.0, 60.0, 100.0, 0.7],  # entirely above
        [319.6, 50.0, 20.0, 60.0, 0.6],  # 0.4 px wide once clipped: invalid
        [30.0, 40.0, 0.0, 80.0, 0.8],  # no width
        [30.0, 40.0, 60.0, 120.0, 0.01],  # under --box-thr
    ]
    for image_id in (1, 2, 3):
        dets += [{"image_id": image_id, "category_id": 1, "bbox": b[:4], "score": b[4]} for b in extra]
    dets.append({"image_id": 3, "category_id": 2, "bbox": [10, 10, 100, 100], "score": 0.99})  # not a person
    dets.append({"image_id": 3, "category_id": 1, "bbox": [float("nan"), 10, 100, 100], "score": 0.99})
    dets += [{"image_id": "crowd.png", "category_id": 1, "bbox": d["bbox"], "score": d["score"]}
             for d in dets if d["image_id"] == 1]
    (root / "dets.json").write_text(json.dumps(dets))  # Python's json writes the NaN as NaN
    return images, root / "dets.json"


def read_results(path: Path) -> list[dict]:
    return json.loads(path.read_text())


def compare_results(node: list[dict], python: list[dict]) -> tuple[float, float]:
    """Same people in the same order; returns the max keypoint (px) and person score differences."""
    assert [(r["image_id"], r["idx"]) for r in node] == [(r["image_id"], r["idx"]) for r in python]
    worst_kp = worst_score = 0.0
    for a, b in zip(node, python):
        ka, kb = np.array(a["keypoints"], float).reshape(-1, 3), np.array(b["keypoints"], float).reshape(-1, 3)
        np.testing.assert_array_equal(np.isnan(ka), np.isnan(kb))
        np.testing.assert_allclose(ka[:, :2], kb[:, :2], atol=0.01, rtol=0)
        np.testing.assert_allclose(ka[:, 2], kb[:, 2], atol=2e-3, rtol=0)  # written with 3 decimals
        np.testing.assert_allclose(a["score"], b["score"], atol=1e-4, rtol=0)
        assert a["box"] == b["box"] and a["category_id"] == b["category_id"] == 1
        worst_kp = max(worst_kp, float(np.nanmax(np.abs(ka[:, :2] - kb[:, :2]), initial=0.0)))
        worst_score = max(worst_score, abs(a["score"] - b["score"]))
    return worst_kp, worst_score


@pytest.mark.slow
@pytest.mark.parametrize("nms", ["default", "alphapose", "none"])
def test_node_example_matches_rmpe_run(node_example, default_onnx, scene, tmp_path, nms):
    from rmpe.runtime.cli import main as run_main

    images, dets = scene
    inputs = [str(p) for p in sorted(images.glob("*.png"))]
    flags = ["--boxes", str(dets), "--batch", "6"] + ([] if nms == "default" else ["--nms", nms])
    run_node("main.js", str(default_onnx), *inputs, *flags, "--out", str(tmp_path / "node.json"), "--quiet")
    assert run_main([str(default_onnx), *inputs, *flags, "--out", str(tmp_path / "python.json"), "--quiet"]) == 0
    node, python = read_results(tmp_path / "node.json"), read_results(tmp_path / "python.json")
    assert {r["image_id"] for r in python} == {1, 2, 3, "crowd.png"}
    assert len(python) >= 8
    worst_kp, worst_score = compare_results(node, python)
    if nms == "none":  # every valid box's pose: the boxes outside their image and the tiny ones give none
        for image_id in (1, 2, 3):
            boxes = [r["box"] for r in python if r["image_id"] == image_id]
            assert [400.0, 10.0, 80.0, 90.0] not in boxes and [10.0, -300.0, 60.0, 100.0] not in boxes
            assert not any(b[0] == 319.6 or b[2] == 0.0 for b in boxes)
            assert [-40.0, -30.0, 120.0, 200.0] in boxes  # across the edge: kept
    identical = (tmp_path / "node.json").read_bytes() == (tmp_path / "python.json").read_bytes()
    print(f"node vs rmpe-run (--nms {nms}): {len(node)} people, max keypoint difference {worst_kp:.4g} px, "
          f"max person score difference {worst_score:.3g}, files byte-identical: {identical}")


@pytest.mark.slow
def test_exif_rotated_jpeg_end_to_end(node_example, default_onnx, scene, tmp_path):
    """A JPEG stored sideways with EXIF orientation 6: both hosts turn it upright before the boxes apply."""
    from rmpe.runtime.cli import main as run_main

    images, _ = scene
    upright = np.asarray(Image.open(images / "000000000001.png"))
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # orientation 6 turns it back
    path = tmp_path / "000000000005.jpg"
    stored.save(path, exif=orientation_exif(6), quality=92)
    info, pixels = decode_with_node(path, tmp_path)
    assert (info["orientation"], info["height"], info["width"]) == (6, *upright.shape[:2])
    reference = load_image(path)
    assert pixels.shape == reference.shape == upright.shape
    assert np.abs(pixels.astype(int) - reference).max() <= 2  # libjpeg-turbo on both sides: in practice equal

    synth = json.loads((images.parent / "dets.json").read_text())
    dets = [{**d, "image_id": 5} for d in synth if d["image_id"] == 1]  # boxes of the upright image
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    flags = ["--boxes", str(tmp_path / "dets.json"), "--quiet"]
    run_node("main.js", str(default_onnx), str(path), *flags, "--out", str(tmp_path / "node.json"))
    assert run_main([str(default_onnx), str(path), *flags, "--out", str(tmp_path / "python.json")]) == 0
    node, python = read_results(tmp_path / "node.json"), read_results(tmp_path / "python.json")
    assert len(python) >= 2 and len(node) == len(python)
    for a, b in zip(node, python):  # a decoder a grey level apart could move a keypoint a little
        np.testing.assert_allclose(a["keypoints"], b["keypoints"], atol=1.0, rtol=0)
    # the people are found in the upright frame: near where the PNG of the same image puts them
    png = tmp_path / "000000000005.png"
    Image.fromarray(upright).save(png)
    run_node("main.js", str(default_onnx), str(png), *flags, "--out", str(tmp_path / "png.json"))
    assert len(read_results(tmp_path / "png.json")) == len(node)


# ------------------------------------------------------------------------------- user errors


def test_user_errors_are_one_line(node_example, tmp_path):
    (tmp_path / "bad.json").write_text("[{\"image_id\": 1, \"bbox\": [1, 2, 3]}]")
    (tmp_path / "model.onnx").write_bytes(b"not a model")
    (tmp_path / "a.png").write_bytes(b"")
    cases = [
        ([], "needs a model"),
        ([str(tmp_path / "model.onnx"), str(tmp_path / "a.png"), "--nms", "greedy"], "--nms must be one of"),
        ([str(tmp_path / "model.onnx"), str(tmp_path / "a.png"), "--boxes", str(tmp_path / "bad.json")],
         f"{tmp_path / 'bad.json'}: entry 0 needs image_id, bbox"),
        ([str(tmp_path / "model.onnx"), str(tmp_path / "a.png"), "--boxes", str(tmp_path / "none.json")],
         f"{tmp_path / 'none.json'}: cannot read detections"),
        ([str(tmp_path / "missing.onnx"), str(tmp_path / "a.png")], f"{tmp_path / 'missing.onnx'}: no such file"),
        ([str(tmp_path / "model.onnx"), str(tmp_path / "no.png")], "no images found"),
    ]
    for args, message in cases:
        done = run_node("main.js", *args, check=False)
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr and "\n    at " not in done.stderr, (args, done.stderr)
        assert done.stderr.startswith("rmpe-node: ")
