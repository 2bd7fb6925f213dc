"""Bounded memory: graph calls stay under a pixel budget, giant images are refused from their header."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from rmpe.runtime import PoseEstimator
from rmpe.runtime.boxes import whole_image
from rmpe.runtime.cli import main as run_main
from rmpe.runtime.images import InputItem
from rmpe.runtime.pipeline import Pipeline
from test_runtime_models import make_pose_model, person_image


def test_images_share_a_call_only_under_the_pixel_budget(tmp_path):
    sizes = [(100, 100), (100, 100), (400, 400), (100, 100)]
    items = []
    for i, (h, w) in enumerate(sizes):
        path = tmp_path / f"{i}.png"
        Image.fromarray(person_image(h, w, [[5, 5, 60, 90]], [200])).save(path)
        items.append(InputItem(path, path.name))
    calls = []
    with PoseEstimator(make_pose_model(tmp_path / "model.onnx"), nms="none") as est:
        infer = est.infer
        est.infer = lambda images, boxes: calls.append([im.shape[:2] for im in images]) or infer(images, boxes)
        pipeline = Pipeline(est, lambda item, image_id, image: whole_image(*image.shape[:2]), [], pixel_budget=25_000)
        stats = pipeline.run(items, list(range(len(items))), on_failure=lambda item, why: None)
    assert stats.images == 4
    assert calls == [[(100, 100), (100, 100)], [(400, 400)], [(100, 100)]]  # the large one alone


def test_giant_images_are_refused_before_decoding(tmp_path, capsys):
    model = make_pose_model(tmp_path / "model.onnx")
    (tmp_path / "images").mkdir()
    Image.new("1", (3000, 2000)).save(tmp_path / "images" / "bomb.png")  # a few KB, 6 M pixels
    Image.fromarray(np.zeros((60, 80, 3), np.uint8)).save(tmp_path / "images" / "fine.png")
    assert run_main([str(model), str(tmp_path / "images"), "--max-pixels", "1000000", "--out", str(tmp_path / "r.json"),
                     "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "skipped" in err and "bomb.png: 3000x2000 is 6 M pixels, over --max-pixels 1000000" in err
    assert run_main([str(model), str(tmp_path / "images"), "--max-pixels", "-1"]) == 2


def test_oversize_downscale_gives_the_small_images_results_in_the_files_pixels(default_onnx, tmp_path):
    small = person_image(120, 160, [[20, 10, 70, 110], [90, 20, 140, 115]], [200, 160])
    (tmp_path / "small").mkdir()
    (tmp_path / "big").mkdir()
    Image.fromarray(small).save(tmp_path / "small" / "p.png")
    Image.fromarray(small).resize((640, 480), Image.Resampling.NEAREST).save(tmp_path / "big" / "p.png")
    boxes = [[20, 10, 50, 100], [90, 20, 50, 95]]
    for name, factor in (("small", 1), ("big", 4)):
        dets = [{"image_id": "p.png", "category_id": 1, "bbox": [v * factor for v in b], "score": 0.9} for b in boxes]
        (tmp_path / f"{name}.json").write_text(json.dumps(dets))
    common = ["--nms", "none", "--quiet", "--max-pixels", str(120 * 160)]
    assert run_main([str(default_onnx), str(tmp_path / "small"), "--boxes", str(tmp_path / "small.json"),
                     "--out", str(tmp_path / "small-out.json"), *common]) == 0
    assert run_main([str(default_onnx), str(tmp_path / "big"), "--boxes", str(tmp_path / "big.json"),
                     "--out", str(tmp_path / "big-out.json"), "--oversize", "downscale", *common]) == 0
    want = json.loads((tmp_path / "small-out.json").read_text())
    got = json.loads((tmp_path / "big-out.json").read_text())
    assert len(got) == len(want) == 2
    for a, b in zip(sorted(want, key=lambda e: e["box"]), sorted(got, key=lambda e: e["box"])):
        ka, kb = np.reshape(a["keypoints"], (-1, 3)), np.reshape(b["keypoints"], (-1, 3))
        np.testing.assert_allclose(kb[:, :2], 4 * ka[:, :2], atol=0.02)  # a 4x nearest upscale box-filters back exactly
        np.testing.assert_allclose(kb[:, 2], ka[:, 2], atol=1e-3)
        np.testing.assert_allclose(b["box"], [4 * v for v in a["box"]], atol=0.05)


def test_oversize_downscale_reduces_a_one_bit_bomb_and_jpegs(tmp_path):
    from rmpe.runtime.images import load_image

    Image.new("1", (3000, 2000)).save(tmp_path / "bomb.png")
    Image.new("RGB", (1600, 1200), (10, 200, 30)).save(tmp_path / "big.jpg")
    bomb = load_image(tmp_path / "bomb.png", 1_000_000, downscale=True)
    assert bomb.shape[0] * bomb.shape[1] <= 1_000_000 and bomb.shape[2] == 3
    assert np.allclose(bomb.scale, (3000 / bomb.shape[1], 2000 / bomb.shape[0]))
    jpeg = load_image(tmp_path / "big.jpg", 100_000, downscale=True)
    assert jpeg.shape[:2] == (273, 365) and abs(int(jpeg[5, 5, 1]) - 200) <= 3
