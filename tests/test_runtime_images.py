"""Input discovery and decoding: formats, modes, EXIF orientation, lists, globs, recursion, bad files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from rmpe.runtime.images import ImageError, find_inputs, load_image


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".bmp", ".webp", ".tiff"])
def test_formats_decode_to_rgb(tmp_path, suffix):
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[:, :15] = (200, 40, 20)
    path = tmp_path / f"a{suffix}"
    Image.fromarray(rgb).save(path, **({"lossless": True} if suffix == ".webp" else {}))
    out = load_image(path)
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    error = np.abs(out.astype(int) - rgb)
    assert (error.mean() < 8) if suffix == ".jpg" else (error.max() == 0)  # JPEG: lossy


def test_modes_convert_to_rgb(tmp_path):
    grey = np.arange(200, dtype=np.uint8).reshape(10, 20)
    Image.fromarray(grey, "L").save(tmp_path / "grey.png")
    assert (load_image(tmp_path / "grey.png") == grey[:, :, None]).all()

    rgba = np.zeros((10, 20, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 180, 128
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    assert (load_image(tmp_path / "rgba.png")[..., 0] == 180).all()

    pal = Image.fromarray(grey, "L").convert("P")
    pal.info["transparency"] = 0
    pal.save(tmp_path / "pal.png", transparency=0)
    assert load_image(tmp_path / "pal.png").shape == (10, 20, 3)

    deep = (np.arange(200, dtype=np.uint16).reshape(10, 20) * 300)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    out = load_image(tmp_path / "deep.png")
    np.testing.assert_allclose(out[..., 1], np.rint(deep / 257), atol=1)


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), (10, 200, 10))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    image.save(tmp_path / "rotated.jpg", exif=exif)
    assert load_image(tmp_path / "rotated.jpg").shape == (40, 20, 3)


def test_bad_files_raise_one_line(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello")
    (tmp_path / "cut.png").write_bytes((lambda p: (Image.new("RGB", (64, 64)).save(p), p.read_bytes()[:60])[1])(tmp_path / "full.png"))
    for name, words in (("empty.jpg", "empty"), ("text.png", "not an image"), ("cut.png", "decode"), ("gone.png", "cannot open")):
        with pytest.raises(ImageError, match=words) as info:
            load_image(tmp_path / name)
        assert "\n" not in str(info.value)


def test_find_inputs(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    for rel in ("d/b.jpg", "d/a.PNG", "d/sub/c.webp", "d/.hidden.jpg"):
        Image.new("RGB", (4, 4)).save(tmp_path / rel, format="PNG")
    (tmp_path / "d" / "readme.txt").write_text("x")
    flat = find_inputs([str(tmp_path / "d")])
    assert [i.name for i in flat.items] == ["a.PNG", "b.jpg"] and flat.skipped == ["readme.txt"]
    deep = find_inputs([str(tmp_path / "d")], recursive=True)
    assert [i.name for i in deep.items] == ["a.PNG", "b.jpg", "sub/c.webp"]
    listing = tmp_path / "list.txt"
    listing.write_text("# images\nd/b.jpg\n\n" + str(tmp_path / "d/sub/c.webp") + "\n")
    assert [i.path.name for i in find_inputs([str(listing)]).items] == ["b.jpg", "c.webp"]
    globbed = find_inputs([str(tmp_path / "d" / "*.jpg"), str(tmp_path / "missing.jpg"), str(tmp_path / "none*.png")])
    assert [i.name for i in globbed.items] == ["b.jpg"]
    assert len(globbed.problems) == 2 and "missing.jpg: no such file" in globbed.problems[0]


def test_libtiff_messages_name_the_file_instead_of_reaching_stderr(tmp_path, capfd):
    import random

    from rmpe.runtime.cli import main as run_main
    from test_runtime_models import make_pose_model

    pixels = np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)
    Image.fromarray(pixels).save(tmp_path / "good.tif", compression="tiff_lzw")
    data = (tmp_path / "good.tif").read_bytes()
    folder = tmp_path / "tifs"
    folder.mkdir()
    rng = random.Random(1)
    for k in range(8):
        broken = bytearray(data)
        for _ in range(8):
            broken[rng.randrange(8, len(broken))] = rng.randrange(256)
        (folder / f"t{k}.tif").write_bytes(bytes(broken))
    model = make_pose_model(tmp_path / "model.onnx")
    assert run_main([str(model), str(folder), "--quiet", "--out", str(tmp_path / "r.json")]) == 0
    lines = capfd.readouterr().err.splitlines()
    assert any("libtiff:" in line for line in lines)
    assert all(line.startswith("rmpe-run: ") for line in lines), lines
