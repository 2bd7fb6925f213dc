"""TensorRT optimisation profiles of a pose graph, and how one graph call is cut to fit them.

An engine holds one or more profiles, each a (min, opt, max) range for the box count, the image
count and the image height and width. ``rmpe-export --profile`` writes them in the form
``boxes=1:16:64,images=1:1:4,size=16x16:1080x1920:4096x4096``; the runner reads them back from the
engine. A call with more boxes or images than a profile holds is cut into calls that fit (never
failed); an image larger than every profile is refused, naming the limit and the flag that raises it.
Pure numpy: shared by the engine builder (export) and the TensorRT backend (runtime).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from .metadata import INPUT_BOX_IMAGE_INDEX, INPUT_BOXES, INPUT_IMAGE_SIZES, INPUT_IMAGES

Span = tuple[int, int, int]  # min, opt, max
DEFAULT_BOXES_OPT = 16  # rmpe-run's default --batch
DEFAULT_IMAGES: Span = (1, 1, 4)
DEFAULT_HEIGHT: Span = (16, 1080, 4096)
DEFAULT_WIDTH: Span = (16, 1920, 4096)
MAX_DIM = 1 << 16


class ProfileError(ValueError):
    """A profile that cannot be used (bad text, or a call no profile holds); one line."""


@dataclass(frozen=True)
class EngineProfile:
    """One optimisation profile: (min, opt, max) of boxes, images, image height and image width."""

    boxes: Span
    images: Span
    height: Span
    width: Span

    def shapes(self) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
        """Min, opt and max shape of each graph input (docs/onnx-contract.md)."""
        def at(i: int) -> dict[str, tuple[int, ...]]:
            return {INPUT_IMAGES: (self.images[i], self.height[i], self.width[i], 3),
                    INPUT_IMAGE_SIZES: (self.images[i], 2),
                    INPUT_BOXES: (self.boxes[i], 4), INPUT_BOX_IMAGE_INDEX: (self.boxes[i],)}
        low, opt, high = at(0), at(1), at(2)
        return {name: (low[name], opt[name], high[name]) for name in low}

    def text(self) -> str:
        """The ``--profile`` form of this profile."""
        size = ":".join(f"{h}x{w}" for h, w in zip(self.height, self.width))
        return f"boxes={':'.join(map(str, self.boxes))},images={':'.join(map(str, self.images))},size={size}"

    def to_json(self) -> dict[str, list[int]]:
        return {"boxes": list(self.boxes), "images": list(self.images), "height": list(self.height), "width": list(self.width)}

    def holds_size(self, height: int, width: int) -> bool:
        return height <= self.height[2] and width <= self.width[2]


def default_profile(max_boxes: int) -> EngineProfile:
    """The profile used when ``--profile`` is not given: up to the model's ``max_boxes``, 4 images, 4096 px sides."""
    return EngineProfile((1, min(DEFAULT_BOXES_OPT, max_boxes), max_boxes), DEFAULT_IMAGES, DEFAULT_HEIGHT, DEFAULT_WIDTH)


def _span(text: str, key: str) -> Span:
    try:
        values = tuple(int(v) for v in text.split(":"))
    except ValueError:
        raise ProfileError(f"{key}={text}: expected min:opt:max integers") from None
    return _checked(values, key, text)


def _checked(values: tuple[int, ...], key: str, text: str) -> Span:
    if len(values) != 3:
        raise ProfileError(f"{key}={text}: expected min:opt:max")
    if not 1 <= values[0] <= values[1] <= values[2] <= MAX_DIM:
        raise ProfileError(f"{key}={text}: needs 1 <= min <= opt <= max <= {MAX_DIM}")
    return values[0], values[1], values[2]


def parse_profile(text: str, max_boxes: int) -> EngineProfile:
    """``boxes=A:B:C,images=A:B:C,size=HxW:HxW:HxW`` (any subset, the rest from :func:`default_profile`)."""
    base = default_profile(max_boxes)
    fields = {"boxes": base.boxes, "images": base.images, "height": base.height, "width": base.width}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or key not in ("boxes", "images", "size"):
            raise ProfileError(f"{part!r}: expected boxes=, images= or size=")
        if key != "size":
            fields[key] = _span(value, key)
            continue
        try:
            pairs = [tuple(int(v) for v in item.lower().split("x")) for item in value.split(":")]
        except ValueError:
            raise ProfileError(f"size={value}: expected HxW:HxW:HxW (min:opt:max)") from None
        if len(pairs) != 3 or any(len(p) != 2 for p in pairs):
            raise ProfileError(f"size={value}: expected HxW:HxW:HxW (min:opt:max)")
        fields["height"] = _checked(tuple(p[0] for p in pairs), "size (height)", value)
        fields["width"] = _checked(tuple(p[1] for p in pairs), "size (width)", value)
    return EngineProfile(fields["boxes"], fields["images"], fields["height"], fields["width"])


def profile_from_shapes(images: tuple[tuple[int, ...], ...], boxes: tuple[tuple[int, ...], ...]) -> EngineProfile:
    """An :class:`EngineProfile` from the (min, opt, max) shapes of ``images`` [B, H, W, 3] and ``boxes`` [N, 4]."""
    return EngineProfile(tuple(int(s[0]) for s in boxes), tuple(int(s[0]) for s in images),
                         tuple(int(s[1]) for s in images), tuple(int(s[2]) for s in images))


class ImageTooLarge(ProfileError):
    """An image larger than every profile of an engine: its size and the largest the profiles hold."""

    def __init__(self, size: tuple[int, int], limit: tuple[int, int]) -> None:
        super().__init__(f"a {size[0]}x{size[1]} image is larger than the engine's profiles allow "
                         f"(at most {limit[0]}x{limit[1]})")
        self.size, self.limit = size, limit

    def raised(self, profiles: list[EngineProfile]) -> list[EngineProfile]:
        """``profiles`` with the largest one's max size raised to hold this image: what to rebuild with."""
        top = max(range(len(profiles)), key=lambda i: profiles[i].height[2] * profiles[i].width[2])
        grown = [replace(p, height=(p.height[0], p.height[1], max(p.height[2], self.size[0])),
                         width=(p.width[0], p.width[1], max(p.width[2], self.size[1]))) if i == top else p
                 for i, p in enumerate(profiles)]
        return grown


def choose_profile(profiles: list[EngineProfile], heights: np.ndarray, widths: np.ndarray, boxes: int) -> int:
    """The profile a call runs under: of those that hold its largest image, the tightest that holds
    the whole call (fewest max boxes), else the one holding the most boxes (the call is then cut);
    :class:`ImageTooLarge` when none holds the image."""
    height, width = int(heights.max(initial=1)), int(widths.max(initial=1))
    fitting = [i for i, p in enumerate(profiles) if p.holds_size(height, width)]
    if not fitting:
        raise ImageTooLarge((height, width), (max(p.height[2] for p in profiles), max(p.width[2] for p in profiles)))
    whole = [i for i in fitting if profiles[i].boxes[2] >= boxes and profiles[i].images[2] >= len(heights)]
    if whole:
        return min(whole, key=lambda i: (profiles[i].boxes[2], profiles[i].images[2]))
    return max(fitting, key=lambda i: (profiles[i].boxes[2], profiles[i].images[2]))


@dataclass(frozen=True)
class Chunk:
    """One engine call cut from a graph call: the boxes it runs (positions in the call) and its images."""

    rows: np.ndarray  # positions in the original boxes, in the order they run
    images: np.ndarray  # original image indices, ascending


def plan_chunks(box_image_index: np.ndarray, profile: EngineProfile) -> list[Chunk]:
    """Cut a call's boxes into runs of at most the profile's max boxes that touch at most its max images,
    keeping each image's boxes together as far as the limits allow."""
    order = np.argsort(box_image_index, kind="stable")
    chunks, rows, images = [], [], []
    for row in order:
        image = int(box_image_index[row])
        new_image = not images or images[-1] != image
        if rows and (len(rows) == profile.boxes[2] or (new_image and len(images) == profile.images[2])):
            chunks.append(Chunk(np.array(rows, np.int64), np.array(images, np.int64)))
            rows, images, new_image = [], [], True
        rows.append(int(row))
        if new_image:
            images.append(image)
    if rows:
        chunks.append(Chunk(np.array(rows, np.int64), np.array(images, np.int64)))
    return chunks


def chunk_feeds(feeds: dict[str, np.ndarray], chunk: Chunk, profile: EngineProfile) -> dict[str, np.ndarray]:
    """The inputs of one chunk: its images cropped to their own largest size (the padding of the others
    dropped) and padded up to the profile's minima, its boxes (padded with copies of the first up to
    the minimum box count) and their image indices renumbered."""
    sizes = feeds[INPUT_IMAGE_SIZES][chunk.images]
    height = max(int(sizes[:, 0].max(initial=0)), profile.height[0])
    width = max(int(sizes[:, 1].max(initial=0)), profile.width[0])
    count = max(len(chunk.images), profile.images[0])
    extra = max(0, profile.boxes[0] - len(chunk.rows))
    whole = (count == len(chunk.images) == len(sizes) == len(feeds[INPUT_IMAGES]) and extra == 0
             and (height, width) == feeds[INPUT_IMAGES].shape[1:3] and (chunk.rows == np.arange(len(chunk.rows))).all()
             and len(chunk.rows) == len(feeds[INPUT_BOXES]))
    if whole:  # the call fits as it is: no copy
        return feeds
    source = feeds[INPUT_IMAGES][chunk.images, :height, :width]
    images = np.zeros((count, height, width, 3), np.uint8)
    images[:len(chunk.images), :source.shape[1], :source.shape[2]] = source
    image_sizes = np.zeros((count, 2), np.int32)
    image_sizes[:len(chunk.images)] = sizes
    renumber = np.searchsorted(chunk.images, feeds[INPUT_BOX_IMAGE_INDEX][chunk.rows]).astype(np.int32)
    boxes = feeds[INPUT_BOXES][chunk.rows]
    return {INPUT_IMAGES: images, INPUT_IMAGE_SIZES: image_sizes,
            INPUT_BOXES: np.concatenate([boxes, np.repeat(boxes[:1], extra, 0)]).astype(np.float32),
            INPUT_BOX_IMAGE_INDEX: np.concatenate([renumber, np.repeat(renumber[:1], extra)])}


Execute = Callable[[dict[str, np.ndarray], int], dict[str, np.ndarray]]


def run_within(profiles: list[EngineProfile], feeds: dict[str, np.ndarray], execute: Execute,
               outputs: dict[str, tuple[tuple[int, ...], type]]) -> dict[str, np.ndarray]:
    """One graph call through ``execute(feeds, profile_index)`` in calls that fit a profile, the outputs
    put back in box order; ``outputs`` gives each output's shape after the box axis and its dtype
    (for a call without boxes, which does not run)."""
    count = len(feeds[INPUT_BOXES])
    if count == 0:
        return {name: np.zeros((0, *tail), dtype) for name, (tail, dtype) in outputs.items()}
    sizes = np.asarray(feeds[INPUT_IMAGE_SIZES])
    index = choose_profile(profiles, sizes[:, 0], sizes[:, 1], count)
    profile = profiles[index]
    results: dict[str, np.ndarray] = {}
    for chunk in plan_chunks(np.asarray(feeds[INPUT_BOX_IMAGE_INDEX]), profile):
        part = execute(chunk_feeds(feeds, chunk, profile), index)
        for name, values in part.items():
            if name not in results:
                results[name] = np.empty((count, *values.shape[1:]), values.dtype)
            results[name][chunk.rows] = values[:len(chunk.rows)]
    return results
