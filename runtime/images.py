"""Finding input images (files, folders, globs, path lists) and decoding them to RGB uint8 arrays."""

from __future__ import annotations

import glob
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from . import libtiff_messages

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".ts")  # decoded by rmpe.runtime.video
LIST_SUFFIXES = (".txt", ".lst", ".list")
_GLOB_CHARS = "*?["


class ImageError(Exception):
    """An image that cannot be decoded; the message names the problem in a few words."""


class ReducedImage(np.ndarray):
    """Pixels decoded smaller than the file (``rmpe-run --oversize downscale``); ``scale`` (sx, sy) maps
    their coordinates back to the file's: x_file = x * sx."""

    scale: tuple[float, float] = (1.0, 1.0)

    def __array_finalize__(self, obj) -> None:
        self.scale = getattr(obj, "scale", (1.0, 1.0))


def pixel_scale(image: np.ndarray) -> tuple[float, float]:
    """(sx, sy) from ``image``'s pixels to its file's: (1, 1) unless it was decoded reduced."""
    return getattr(image, "scale", (1.0, 1.0))


def reduced_size(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """The largest size of the same aspect ratio with at most ``max_pixels`` pixels."""
    factor = (width * height / max_pixels) ** 0.5
    w, h = max(1, int(width / factor)), max(1, int(height / factor))
    while w * h > max_pixels:
        w, h = max(1, w - 1), max(1, round(h * (w - 1) / w))
    return w, h


@dataclass
class InputItem:
    """One image to process: where it is and its name relative to the input it was found under."""

    path: Path
    name: str  # relative posix path for folders, the file name otherwise


@dataclass
class Inputs:
    """The images found, plus one-line notes about inputs that were skipped."""

    items: list[InputItem] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # missing paths, unreadable lists
    skipped: list[str] = field(default_factory=list)  # files in folders that are not images


def is_image_file(path: Path) -> bool:
    """True for a file whose suffix is one of the supported image formats."""
    return path.suffix.lower() in IMAGE_SUFFIXES


def is_video_file(path: Path) -> bool:
    """True for a file whose suffix is one of the video formats read through PyAV."""
    return path.suffix.lower() in VIDEO_SUFFIXES


def _is_input(path: Path) -> bool:
    return is_image_file(path) or is_video_file(path)


def _scan_folder(folder: Path, recursive: bool, found: Inputs) -> None:
    files = folder.rglob("*") if recursive else folder.iterdir()
    for path in sorted(files):
        rel = path.relative_to(folder)
        if not path.is_file() or any(part.startswith(".") for part in rel.parts):
            continue
        if _is_input(path):
            found.items.append(InputItem(path, rel.as_posix()))
        else:
            found.skipped.append(rel.as_posix())


def _read_list(list_file: Path, found: Inputs) -> None:
    try:
        lines = list_file.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        found.problems.append(f"{list_file}: cannot read path list ({exc.__class__.__name__})")
        return
    for line in lines:
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        path = Path(entry)
        if not path.is_absolute():
            path = list_file.parent / path
        found.items.append(InputItem(path, path.name))


def find_inputs(specs: list[str], recursive: bool = False) -> Inputs:
    """Expand image and video files, folders, glob patterns and ``.txt`` path lists into an ordered list."""
    found = Inputs()
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            _scan_folder(path, recursive, found)
        elif path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
            _read_list(path, found)
        elif path.is_file():
            found.items.append(InputItem(path, path.name))
        elif any(c in spec for c in _GLOB_CHARS):
            matches = [Path(p) for p in sorted(glob.glob(spec, recursive=True))]
            files = [p for p in matches if p.is_file() and _is_input(p)]
            if not files:
                found.problems.append(f"{spec}: pattern matches no images")
            found.items.extend(InputItem(p, p.name) for p in files)
        else:
            found.problems.append(f"{spec}: no such file or folder")
    return found


def _to_rgb(image) -> np.ndarray:
    """Convert any PIL mode (grey, 16-bit, float, RGBA, palette, CMYK) to an HxWx3 uint8 array."""
    mode = image.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        peak = values.max(initial=0.0)
        if mode == "F" and peak <= 1.0:
            values = values * 255.0
        elif peak > 255.0:  # 16-bit range
            values = values / 257.0
        grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8)


def _decode_reduced(image, max_pixels: int) -> ReducedImage:
    """Decode an open Pillow image to at most ``max_pixels`` pixels, with the scale back to the file's."""
    from PIL import Image, ImageOps

    swapped = image.getexif().get(0x0112) in (5, 6, 7, 8)  # EXIF orientations that turn the image a quarter
    width, height = (image.height, image.width) if swapped else image.size
    target = reduced_size(width, height, max_pixels)
    if image.format == "JPEG":
        image.draft("RGB", target[::-1] if swapped else target)  # DCT scaling: decodes at 1/2, 1/4 or 1/8 size
    image.load()
    image = ImageOps.exif_transpose(image)
    if image.mode == "1":
        image = image.convert("L")  # one byte a pixel: the 1-bit bombs stay small
    elif image.mode not in ("RGB", "L"):
        image = Image.fromarray(_to_rgb(image))
    if image.size != target:
        image = image.resize(target, Image.Resampling.BOX)
    pixels = _to_rgb(image).view(ReducedImage)
    pixels.scale = (width / target[0], height / target[1])
    return pixels


def load_image(path: Path, max_pixels: int = 0, downscale: bool = False) -> np.ndarray:
    """Decode ``path`` to RGB uint8 (EXIF orientation applied); raise :class:`ImageError` on failure.

    ``max_pixels`` (0: no limit) refuses larger images from their header, before any pixel is
    decoded: a 37 KB 1-bit PNG can hold 169 M pixels, half a gigabyte once RGB. With ``downscale``
    they are decoded reduced to ``max_pixels`` instead (JPEGs at a reduced DCT scale, then an
    area-averaging resize) and returned as a :class:`ReducedImage`.
    """
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImageError(f"cannot open ({exc.strerror or exc.__class__.__name__})") from None
    if size == 0:
        raise ImageError("empty file (0 bytes)")
    return decode_image(path, max_pixels, str(path), downscale)


def decode_image(source: Path | BinaryIO, max_pixels: int = 0, label: str = "", downscale: bool = False) -> np.ndarray:
    """Decode an image file or file object (bytes fetched from a URI) as :func:`load_image` does;
    ``label`` names it in warnings, libtiff's own messages among them."""
    libtiff_messages.install()
    libtiff_messages.take()
    try:
        image = _decode(source, max_pixels, label, downscale)
    except ImageError as exc:
        messages = libtiff_messages.take()
        raise ImageError(f"{exc}; libtiff: {messages[-1]}" if messages else str(exc)) from None
    for message in libtiff_messages.take()[:3]:
        warnings.warn(f"{label}: libtiff: {message}", RuntimeWarning, stacklevel=2)
    return image


def _decode(source: Path | BinaryIO, max_pixels: int, label: str, downscale: bool) -> np.ndarray:
    """:func:`decode_image` without the libtiff messages."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(source) as image:
            width, height = image.size
            oversize = bool(max_pixels) and width * height > max_pixels
            if oversize and not downscale:
                raise ImageError(f"{width}x{height} is {width * height / 1e6:.0f} M pixels, "
                                 f"over --max-pixels {max_pixels} (0: no limit; --oversize downscale reduces it)")
            if not oversize and Image.MAX_IMAGE_PIXELS and width * height > Image.MAX_IMAGE_PIXELS:
                warnings.warn(f"{label}: {width}x{height} pixels is over Pillow's decompression bomb "
                              f"limit of {Image.MAX_IMAGE_PIXELS}; decoding it anyway", RuntimeWarning, stacklevel=2)
            if oversize:
                return _decode_reduced(image, max_pixels)
            image.load()
            image = ImageOps.exif_transpose(image)
            return _to_rgb(image)
    except UnidentifiedImageError:
        raise ImageError("not an image or an unsupported format") from None
    except Image.DecompressionBombError:
        raise ImageError("image too large (decompression bomb guard)") from None
    except (OSError, ValueError, SyntaxError) as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise ImageError(f"cannot decode ({text})") from None
