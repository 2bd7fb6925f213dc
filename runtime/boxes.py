"""Person boxes from detection files, image ids, and box clean-up (non-finite, threshold, top-k).

Two detection-file forms are read, both JSON lists with ``bbox`` = ``[x, y, w, h]`` and ``score``:
COCO detection results (``image_id`` an integer) and AlphaPose's ``--detfile`` (``image_id`` the
image's file name). Entries with a ``category_id`` other than 1 (person) are ignored.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .images import pixel_scale

ImageId = int | str


class BoxFileError(ValueError):
    """A detection or annotation file that cannot be used; the message is one line."""


@dataclass
class Boxes:
    """Person boxes of one image: ``xyxy`` (N, 4) float32 pixels and ``scores`` (N,) float32."""

    xyxy: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.xyxy)

    @classmethod
    def empty(cls) -> "Boxes":
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32))


def whole_image(height: int, width: int) -> Boxes:
    """Single-person mode: the whole image is one box with score 1."""
    return Boxes(np.array([[0, 0, width, height]], np.float32), np.ones(1, np.float32))


def to_image_pixels(boxes: Boxes, image: np.ndarray) -> Boxes:
    """A file's boxes (in the image file's pixels) in the pixels of ``image`` as decoded (reduced or not)."""
    sx, sy = pixel_scale(image)
    if (sx, sy) == (1.0, 1.0):
        return boxes
    return Boxes((boxes.xyxy / np.array([sx, sy, sx, sy], np.float32)).astype(np.float32), boxes.scores)


def clean_boxes(boxes: Boxes, thr: float = 0.0, max_people: int = 0) -> Boxes:
    """Drop boxes with a non-finite value or scoring below ``thr``; sort by score; keep the ``max_people`` best.

    Clipping to the image and the minimum box size are the graph's (docs/onnx-contract.md), so that
    every host gets the same poses from the same boxes; what stays here cannot live in the graph,
    which returns one row per box.
    """
    xyxy = boxes.xyxy.astype(np.float32, copy=False)
    scores = boxes.scores.astype(np.float32, copy=False)
    keep = np.isfinite(xyxy).all(axis=1) & np.isfinite(scores) & (scores >= thr)
    xyxy, scores = xyxy[keep], scores[keep]
    order = np.argsort(-scores, kind="stable")
    if max_people > 0:
        order = order[:max_people]
    return Boxes(xyxy[order], scores[order])


def pose_boxes(keypoints: np.ndarray, box_scores: np.ndarray) -> Boxes:
    """Each pose's keypoint extent (M, K, 2 → M boxes; NaN keypoints ignored) as a box, best box score first.

    The boxes of ``rmpe-run --refine``'s second pass: fitted to a whole pose, they are centred on the
    person where a detector's box may cut off raised arms or feet. The graph enlarges every box
    (``box_enlarge``), so no margin is added here. Poses without finite keypoints get no box.
    """
    keypoints = np.asarray(keypoints, np.float32)
    finite = np.isfinite(keypoints).all(axis=2).any(axis=1)
    kept = keypoints[finite]
    xyxy = np.concatenate([np.nanmin(kept, axis=1), np.nanmax(kept, axis=1)], axis=1) if len(kept) else np.zeros((0, 4))
    return clean_boxes(Boxes(xyxy.astype(np.float32), np.asarray(box_scores, np.float32)[finite]))


def join_boxes(first: Boxes, second: Boxes) -> Boxes:
    """The boxes of ``first`` followed by those of ``second``."""
    return Boxes(np.concatenate([first.xyxy, second.xyxy]), np.concatenate([first.scores, second.scores]))


def _load_json(path: Path, what: str):
    try:
        return json.loads(Path(path).read_text())
    except OSError as exc:
        raise BoxFileError(f"{path}: cannot read {what} ({exc.strerror or exc.__class__.__name__})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BoxFileError(f"{path}: not valid JSON ({exc.__class__.__name__}: {str(exc).splitlines()[0]})") from None
    except RecursionError:
        raise BoxFileError(f"{path}: not usable JSON (nested too deeply)") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise BoxFileError(f"{path}: not usable JSON ({str(exc).splitlines()[0][:120]})") from None


def read_annotation_ids(path: Path) -> dict[str, int]:
    """``file_name`` → ``id`` from a COCO annotation file's ``images`` list (base names)."""
    data = _load_json(path, "annotations")
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise BoxFileError(f"{path}: not a COCO annotation file (no 'images' list)")
    try:
        return {Path(img["file_name"]).name: int(img["id"]) for img in data["images"]}
    except (KeyError, TypeError, ValueError):
        raise BoxFileError(f"{path}: an 'images' entry lacks file_name or an integer id") from None


def image_ids(names: list[str], annotations: dict[str, int] | None = None) -> list[ImageId]:
    """The id written for each image, decided from the names alone, before any image is decoded.

    An image's id is its id in ``annotations`` (looked up by base name) or, without annotations,
    its file stem read as an integer when the stem is all digits (``000000000139.jpg`` → 139).
    Every other image, and every image whose integer id another input shares, is named by its
    file name. Each image's results take their id as soon as it is done, so ids cannot wait for
    every decode; deciding each id by the image's own name keeps a file that later fails to
    decode (a stray ``notes.jpg``) from changing the ids of the others, at the price that a
    folder mixing numeric and other names gets both kinds of id.
    """
    numbers = [_integer_id(name, annotations) for name in names]
    counts = Counter(numbers)
    return [number if number is not None and counts[number] == 1 else name
            for name, number in zip(names, numbers)]


def _integer_id(name: str, annotations: dict[str, int] | None) -> int | None:
    """The integer id one image's name gives: its annotation id or its numeric stem (None: none)."""
    base = Path(name).name
    if annotations is not None:
        return annotations.get(base)
    stem = Path(base).stem
    return int(stem) if stem.isascii() and stem.isdigit() else None


class DetectionFile:
    """Boxes per image read once from a COCO-results or AlphaPose ``--detfile`` JSON list."""

    def __init__(self, path: Path) -> None:
        data = _load_json(path, "detections")
        if isinstance(data, dict) and "annotations" in data:
            raise BoxFileError(f"{path}: this is an annotation file, not detection results; pass it as --annotations")
        if not isinstance(data, list):
            raise BoxFileError(f"{path}: expected a JSON list of detections")
        rows: dict[ImageId, list[list[float]]] = defaultdict(list)
        for n, det in enumerate(data):
            category = det.get("category_id", 1) if isinstance(det, dict) else 1
            if type(category) is not int:
                raise BoxFileError(f"{path}: entry {n} has category_id {category!r}; COCO categories are integers (person: 1)")
            try:
                if category != 1:
                    continue
                x, y, w, h = (float(v) for v in det["bbox"])
                key = det["image_id"]
                key = Path(key).name if isinstance(key, str) else int(key)
                rows[key].append([x, y, x + w, y + h, float(det.get("score", 1.0))])
            except (AttributeError, KeyError, TypeError, ValueError, OverflowError):
                raise BoxFileError(f"{path}: entry {n} needs image_id, bbox [x, y, w, h] and score") from None
        self.path = Path(path)
        with np.errstate(over="ignore"):  # boxes beyond float32 become infinite: counted below, dropped later
            self.by_id = {k: np.asarray(v, np.float32).reshape(-1, 5) for k, v in rows.items()}
        self.nonfinite = sum(int((~np.isfinite(v)).any(axis=1).sum()) for v in self.by_id.values())
        self.by_stem = {Path(k).stem: k for k in self.by_id if isinstance(k, str)}

    def lookup(self, name: str, image_id: ImageId) -> Boxes:
        """Boxes for an image, matched by integer id, by file name, or by file stem."""
        base = Path(name).name
        candidates = [image_id, name, base, self.by_stem.get(Path(base).stem), _integer_id(base, None)]
        for key in candidates:
            if key is not None and key in self.by_id:
                rows = self.by_id[key]
                return Boxes(rows[:, :4].copy(), rows[:, 4].copy())
        return Boxes.empty()
