"""Image ids: each image's id comes from its own name, so undecodable files do not change others'."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from rmpe.runtime.boxes import image_ids
from rmpe.runtime.cli import main
from test_runtime_models import make_pose_model, person_image


def test_numeric_stems_are_integers_whatever_the_other_names() -> None:
    names = ["000000000139.jpg", "000000000785.jpg", "notes.jpg", "sub/42.png", "7b.jpg"]
    assert image_ids(names) == [139, 785, "notes.jpg", 42, "7b.jpg"]


def test_shared_integers_fall_back_to_names() -> None:
    """Two inputs that would get the same integer are both named; the others keep theirs."""
    names = ["1.jpg", "a/01.png", "2.jpg", "².jpg"]  # '²' is a digit to str.isdigit, not to int()
    assert image_ids(names) == ["1.jpg", "a/01.png", 2, "².jpg"]


def test_annotation_ids_by_base_name() -> None:
    annotations = {"000000000139.jpg": 139, "b.jpg": 5}
    names = ["val/000000000139.jpg", "notes.jpg", "b.jpg", "785.jpg"]
    assert image_ids(names, annotations) == [139, "notes.jpg", 5, "785.jpg"]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return make_pose_model(tmp_path_factory.mktemp("model") / "model.onnx")


def test_rmpe_run_keeps_integer_ids_beside_an_undecodable_file(model: Path, tmp_path: Path,
                                                               capsys) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("000000000139.jpg", "000000000785.jpg"):
        Image.fromarray(person_image(100, 60, [[0, 0, 60, 100]], [255])).save(folder / name)
    (folder / "notes.jpg").write_text("not really an image\n")
    out = tmp_path / "results.json"
    assert main([str(model), str(folder), "--out", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "skipped" in err and "notes.jpg" in err  # it failed to decode
    assert sorted({r["image_id"] for r in json.loads(out.read_text())}) == [139, 785]
