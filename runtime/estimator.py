"""``PoseEstimator``: an exported rmpe model (plus optional detector and pose NMS) as a Python callable.

>>> est = PoseEstimator("model.onnx")                # doctest: +SKIP
>>> poses = est(image_rgb_uint8, boxes=[[40, 30, 200, 380]])  # doctest: +SKIP
>>> poses.keypoints.shape                             # (people, K, 2) in image pixels  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from .backends import Backend, BackendError, BackendOptions, open_backend
from .boxes import Boxes, clean_boxes, join_boxes, pose_boxes, whole_image
from .metadata import (INPUT_BOX_IMAGE_INDEX, INPUT_BOXES, INPUT_IMAGE_SIZES, INPUT_IMAGES, OUTPUT_KEYPOINTS,
                       OUTPUT_SCORES, ModelMetadata)
from .pose_nms import PoseNMSResult, RMPEParams, nms_params, person_scores, pose_nms

NMS_MODES = ("rmpe", "alphapose", "none")
DEFAULT_NMS = "rmpe"  # for a model whose metadata names no pose NMS mode


@dataclass
class Pose:
    """One person: keypoints (K, 2) in image pixels, their scores (K,), box xyxy (4,), score."""

    keypoints: np.ndarray
    keypoint_scores: np.ndarray
    box: np.ndarray
    score: float


@dataclass
class Poses:
    """The people of one image as arrays: keypoints (M, K, 2), keypoint_scores (M, K), boxes (M, 4), scores (M,),
    and box_scores (M,), the detector's score of each person's box.

    Iterating or indexing gives :class:`Pose` objects.
    """

    keypoints: np.ndarray
    keypoint_scores: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    box_scores: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    def __getitem__(self, i: int) -> Pose:
        return Pose(self.keypoints[i], self.keypoint_scores[i], self.boxes[i], float(self.scores[i]))

    def __iter__(self) -> Iterator[Pose]:
        return (self[i] for i in range(len(self)))

    def scaled(self, sx: float, sy: float) -> "Poses":
        """The same people with x multiplied by ``sx`` and y by ``sy`` (a reduced image's pixels → its file's)."""
        if (sx, sy) == (1.0, 1.0):
            return self
        xy = np.array([sx, sy], np.float32)
        return Poses(self.keypoints * xy, self.keypoint_scores, self.boxes * np.tile(xy, 2), self.scores, self.box_scores)

    @classmethod
    def empty(cls, num_keypoints: int) -> "Poses":
        return cls(np.zeros((0, num_keypoints, 2), np.float32), np.zeros((0, num_keypoints), np.float32),
                   np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0,), np.float32))


def select_poses(keypoints: np.ndarray, keypoint_scores: np.ndarray, boxes: Boxes, mode: str,
                 constants: dict[str, float | str] | None = None) -> Poses:
    """Pose NMS over one image's candidates (``mode`` rmpe or alphapose, ``constants`` overriding the
    mode's defaults), or none: keep every candidate, ranked as rmpe mode ranks its output."""
    if mode not in NMS_MODES:
        raise ValueError(f"unknown pose NMS mode {mode!r}; choose one of {', '.join(NMS_MODES)}")
    if mode == "none" or len(boxes) == 0:
        scores = person_scores(keypoint_scores, boxes.scores, RMPEParams.person_score)
        return Poses(keypoints, keypoint_scores, boxes.xyxy, scores, boxes.scores)
    return _kept_poses(pose_nms(boxes.xyxy, boxes.scores, keypoints, keypoint_scores, mode=mode, **(constants or {})))


def _kept_poses(result: PoseNMSResult, keep: np.ndarray | slice = slice(None)) -> Poses:
    """The pose NMS output (its people selected by ``keep``) as :class:`Poses`."""
    def pick(values: np.ndarray) -> np.ndarray:
        return np.asarray(values, np.float32)[keep]

    return Poses(pick(result.keypoints), pick(result.keypoint_scores), pick(result.boxes), pick(result.scores),
                 pick(result.box_scores))


Candidates = tuple[np.ndarray, np.ndarray, Boxes]  # keypoints (N, K, 2), scores (N, K), the N boxes
Infer = Callable[[Sequence[np.ndarray], Sequence[np.ndarray]], tuple[np.ndarray, np.ndarray]]


def infer_in_batches(infer: Infer, images: Sequence[np.ndarray], boxes: Sequence[Boxes], batch: int,
                     num_keypoints: int) -> list[Candidates]:
    """Every image's candidates from ``infer`` calls of at most ``batch`` boxes (one image may span several).

    Rows the graph marks invalid (every keypoint NaN: a box under 1 px once clipped to its image)
    are not candidates.
    """
    owner = np.repeat(np.arange(len(images)), [len(b) for b in boxes])
    flat = np.concatenate([b.xyxy for b in boxes])
    parts = []
    for lo in range(0, len(flat), batch):
        chunk, chunk_owner = flat[lo:lo + batch], owner[lo:lo + batch]
        used = np.unique(chunk_owner)
        parts.append(infer([images[i] for i in used], [chunk[chunk_owner == i] for i in used]))
    keypoints = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, num_keypoints, 2), np.float32)
    scores = np.concatenate([p[1] for p in parts]) if parts else np.zeros((0, num_keypoints), np.float32)
    ends = np.cumsum([len(b) for b in boxes])
    return [_valid_rows(keypoints[a:b], scores[a:b], bx) for a, b, bx in zip([0, *ends[:-1]], ends, boxes)]


def _valid_rows(keypoints: np.ndarray, scores: np.ndarray, boxes: Boxes) -> Candidates:
    """One image's graph rows without the invalid ones (all keypoints NaN)."""
    valid = np.isfinite(keypoints).any(axis=(1, 2))
    if valid.all():
        return keypoints, scores, boxes
    return keypoints[valid], scores[valid], Boxes(boxes.xyxy[valid], boxes.scores[valid])


def refine_boxes(first: Poses) -> Boxes:
    """Second-pass boxes: one fitted to each first-pass person's keypoints, with its box score."""
    return pose_boxes(first.keypoints, first.box_scores)


def refine_poses(first: Candidates, second: Candidates, mode: str,
                 constants: dict[str, float | str] | None = None) -> Poses:
    """One pose NMS over both passes' candidates, keeping the people that hold a first-pass candidate.

    A second-pass pose that merges with none of the first pass's would be a duplicate of the person
    it was cropped from, so refining never adds people, it only moves and re-scores them.
    """
    n_first = len(first[2])
    if n_first == 0:
        return select_poses(*first, mode, constants)
    boxes = join_boxes(first[2], second[2])
    result = pose_nms(boxes.xyxy, boxes.scores, np.concatenate([first[0], second[0]]),
                      np.concatenate([first[1], second[1]]), mode=mode, **(constants or {}))
    return _kept_poses(result, np.array([members.min() < n_first for members in result.merged], bool))


def pad_images(images: Sequence[np.ndarray]) -> np.ndarray:
    """Stack HxWx3 uint8 images into [B, H, W, 3], padding bottom/right with 0 (no copy for one image)."""
    if len(images) == 1:
        return np.ascontiguousarray(images[0], dtype=np.uint8)[None]
    height = max(im.shape[0] for im in images)
    width = max(im.shape[1] for im in images)
    batch = np.zeros((len(images), height, width, 3), np.uint8)
    for i, im in enumerate(images):
        batch[i, :im.shape[0], :im.shape[1]] = im
    return batch


def check_feeds(feeds: dict[str, np.ndarray]) -> None:
    """Refuse graph inputs the contract leaves undefined for a caller of ours: shapes that do not fit,
    sizes larger than the image tensor, or a ``box_image_index`` outside [0, B) (the graph would
    return NaN rows for those boxes rather than fail); raises ``ValueError`` naming the problem."""
    images, sizes = feeds[INPUT_IMAGES], feeds[INPUT_IMAGE_SIZES]
    boxes, index = feeds[INPUT_BOXES], feeds[INPUT_BOX_IMAGE_INDEX]
    if images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 [B, H, W, 3], got {images.dtype} {list(images.shape)}")
    if sizes.shape != (images.shape[0], 2) or (sizes < 0).any() or (sizes > images.shape[1:3]).any():
        raise ValueError(f"image_sizes must be [B, 2] (height, width) within the image tensor's {list(images.shape[1:3])}, "
                         f"got {sizes.tolist() if sizes.size <= 8 else list(sizes.shape)}")
    if boxes.ndim != 2 or boxes.shape[1] != 4 or index.shape != (boxes.shape[0],):
        raise ValueError(f"boxes must be [N, 4] with box_image_index [N], got {list(boxes.shape)} and {list(index.shape)}")
    bad = (index < 0) | (index >= images.shape[0])
    if bad.any():
        raise ValueError(f"box_image_index {int(index[bad][0])} is outside [0, {images.shape[0]}) "
                         f"({int(bad.sum())} of {len(index)} boxes)")


def check_image(image: np.ndarray) -> np.ndarray:
    """Accept an HxWx3 uint8 RGB array (or HxW grey); raise ``ValueError`` otherwise."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got shape {image.shape} dtype {image.dtype}")
    return image


class PoseEstimator:
    """An exported rmpe pose model: ``est(image, boxes=None) -> Poses``.

    Without boxes, the detector finds people if one was given, otherwise the whole image is one
    person (single-person mode). Keypoint names, skeleton and input size come from the model's metadata.
    ``refine=True`` adds a second pass: every person found is cropped again at a box fitted to its
    keypoints, and those poses join the first pass's candidates in a second pose NMS that keeps the
    same people (one more graph run per person; +0.01 COCO keypoint AP on the synthetic set,
    docs/runtime.md).
    """

    def __init__(self, model: str | Path, *, device: str = "cpu", backend: str = "auto", threads: int = 0,
                 nms: str | None = None, refine: bool = False, detector: str | Path | None = None,
                 detector_format: str = "auto", box_thr: float = 0.05, max_people: int = 0,
                 options: BackendOptions | None = None) -> None:
        if nms is not None and nms not in NMS_MODES:
            raise ValueError(f"unknown pose NMS mode {nms!r}; choose one of {', '.join(NMS_MODES)}")
        self.options = options or BackendOptions(backend=backend, device=device, threads=threads)
        self.path = Path(model)
        self.backend: Backend = open_backend(self.path, self.options)
        self._check_io()
        try:
            self.metadata = ModelMetadata.from_props(self.backend.metadata)
        except (ValueError, TypeError) as exc:
            raise BackendError(f"{self.path.name}: {exc}") from None
        self.nms, self.nms_constants = self._pose_nms(nms)
        if refine and self.nms == "none":
            self.backend.close()
            raise ValueError("refine needs a pose NMS to merge its second pass (nms 'rmpe' or 'alphapose')")
        self.refine, self.box_thr, self.max_people = refine, box_thr, max_people
        self.detector = None
        if detector is not None:
            from .detector import YoloDetector

            det_options = BackendOptions(device=self.options.device, threads=self.options.threads)
            self.detector = YoloDetector(detector, detector_format, det_options, score_thr=box_thr)

    def _pose_nms(self, requested: str | None) -> tuple[str, dict[str, float | str]]:
        """The pose NMS mode (``requested``, else the metadata's default, else rmpe) and its constants
        from the metadata, so rmpe-run follows the model as any other host does (docs/onnx-contract.md)."""
        entry = self.metadata.pose_nms or {}
        mode = requested or entry.get("default", DEFAULT_NMS)
        if mode not in NMS_MODES:
            raise BackendError(f"{self.path.name}: metadata pose_nms default {mode!r} is not one of {', '.join(NMS_MODES)}")
        if mode == "none":
            return mode, {}
        constants = dict(entry.get("modes", {}).get(mode, {}))
        try:
            nms_params(mode, **constants)
        except (TypeError, ValueError) as exc:
            raise BackendError(f"{self.path.name}: metadata pose_nms constants for {mode}: {exc}") from None
        return mode, constants

    def _check_io(self) -> None:
        inputs = {t.name for t in self.backend.inputs}
        outputs = {t.name for t in self.backend.outputs}
        need_in = {INPUT_IMAGES, INPUT_IMAGE_SIZES, INPUT_BOXES, INPUT_BOX_IMAGE_INDEX}
        need_out = {OUTPUT_KEYPOINTS, OUTPUT_SCORES}
        if need_in - {INPUT_IMAGE_SIZES} <= inputs and INPUT_IMAGE_SIZES not in inputs and need_out <= outputs:
            raise BackendError(f"{self.path.name}: exported by an older rmpe-export (no {INPUT_IMAGE_SIZES} input); "
                               "export it again")
        if not need_in <= inputs or not need_out <= outputs:
            raise BackendError(
                f"{self.path.name}: not an rmpe pose model (inputs {sorted(inputs)}, outputs {sorted(outputs)}; "
                f"expected {sorted(need_in)} -> {sorted(need_out)})")

    @property
    def keypoint_names(self) -> list[str]:
        return list(self.metadata.keypoint_names)

    @property
    def skeleton(self) -> list[list[int]]:
        """Limbs as 1-based keypoint pairs, as in COCO."""
        return [list(p) for p in self.metadata.skeleton]

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) of the crop the SPPE sees."""
        return int(self.metadata.input_size[0]), int(self.metadata.input_size[1])

    @property
    def max_batch(self) -> int | None:
        """Most boxes per graph call the backend runs at once (a TensorRT engine's profiles), or None for any."""
        return getattr(self.backend, "max_boxes", None)

    def infer(self, images: Sequence[np.ndarray], boxes: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """One graph call: boxes (n_i, 4) of each image → keypoints (sum n_i, K, 2) and scores (sum n_i, K)."""
        counts = [len(b) for b in boxes]
        k = self.metadata.num_keypoints
        if sum(counts) == 0:
            return np.zeros((0, k, 2), np.float32), np.zeros((0, k), np.float32)
        return self.run_graph({
            INPUT_IMAGES: pad_images(images),
            INPUT_IMAGE_SIZES: np.array([im.shape[:2] for im in images], np.int32),
            INPUT_BOXES: np.concatenate([np.asarray(b, np.float32).reshape(-1, 4) for b in boxes]),
            INPUT_BOX_IMAGE_INDEX: np.repeat(np.arange(len(images), dtype=np.int32), counts),
        })

    def run_graph(self, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The raw graph call of docs/onnx-contract.md, after :func:`check_feeds`: keypoints and scores."""
        check_feeds(feeds)
        out = self.backend.run(feeds)
        return np.asarray(out[OUTPUT_KEYPOINTS], np.float32), np.asarray(out[OUTPUT_SCORES], np.float32)

    def find_boxes(self, image: np.ndarray) -> Boxes:
        """People in ``image`` from the detector, or the whole image when there is none."""
        if self.detector is None:
            return whole_image(*image.shape[:2])
        return self.detector(image)

    def __call__(self, image: np.ndarray, boxes: np.ndarray | Sequence[Sequence[float]] | None = None,
                 box_scores: np.ndarray | Sequence[float] | None = None) -> Poses:
        """Poses of the people in an HxWx3 uint8 RGB ``image``; ``boxes`` are xyxy pixels (N, 4)."""
        image = check_image(image)
        if boxes is None:
            found = self.find_boxes(image)
        else:
            xyxy = np.asarray(boxes, np.float32).reshape(-1, 4)
            scores = np.ones(len(xyxy), np.float32) if box_scores is None else np.asarray(box_scores, np.float32)
            found = Boxes(xyxy, scores)
        found = clean_boxes(found, thr=self.box_thr if boxes is None else 0.0, max_people=self.max_people)
        if len(found) == 0:
            return Poses.empty(self.metadata.num_keypoints)
        candidates = self._candidates(image, found)
        poses = select_poses(*candidates, self.nms, self.nms_constants)
        if not self.refine or len(poses) == 0:
            return poses
        return refine_poses(candidates, self._candidates(image, refine_boxes(poses)), self.nms, self.nms_constants)

    def _candidates(self, image: np.ndarray, boxes: Boxes) -> Candidates:
        """One image's candidates, in as many graph calls as max_batch needs."""
        batch = self.max_batch or max(1, len(boxes))
        return infer_in_batches(self.infer, [image], [boxes], batch, self.metadata.num_keypoints)[0]

    def close(self) -> None:
        """Release the model (and detector) sessions."""
        self.backend.close()
        if self.detector is not None:
            self.detector.close()

    def __enter__(self) -> "PoseEstimator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
