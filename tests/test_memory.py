"""Bounded memory: graph calls stay under a pixel budget, giant images are refused from their header."""

from __future__ import annotations

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
