"""The batch pipeline: threaded decoding → boxes → batched graph calls → pose NMS → writers.

Images are decoded by a small thread pool a bounded number of images ahead of the graph, so decoding
overlaps inference. Boxes of several images go into one graph call (at most ``batch`` boxes; the
images of a call are padded bottom/right to a common size), then each image's candidates go
through pose NMS and to the writers. With the estimator's ``refine``, the same images go through the
graph once more with boxes fitted to their people, and a second pose NMS joins both passes.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from contextlib import contextmanager
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Protocol

import numpy as np

from .boxes import Boxes, ImageId, clean_boxes
from .estimator import Candidates, PoseEstimator, Poses, infer_in_batches, refine_boxes, refine_poses, select_poses
from .images import ImageError, InputItem, load_image

BoxSource = Callable[[InputItem, ImageId, np.ndarray], Boxes]


class Sink(Protocol):
    """Receives each image's poses, in the order the images finish."""

    def __call__(self, index: int, item: InputItem, image: np.ndarray, poses: Poses) -> None: ...


@dataclass
class RunStats:
    """Counts and seconds of one run; ``decode`` is thread time, ``decode_wait`` what the graph waited."""

    images: int = 0
    people: int = 0
    failures: int = 0
    graph_calls: int = 0
    wall: float = 0.0
    interrupted: bool = False  # stopped by a request (a signal) before every image was read
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(
        ("decode", "decode_wait", "boxes", "graph", "nms", "write"), 0.0))

    @contextmanager
    def timed(self, key: str) -> Iterator[None]:
        """Add the seconds the ``with`` block takes to ``seconds[key]``."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[key] += time.perf_counter() - t0

    def summary(self) -> str:
        """One line: images, people, failures, throughput and where the time went."""
        s = self.seconds
        rate = self.images / self.wall if self.wall > 0 else 0.0
        return (f"{self.images} images, {self.people} people, {self.failures} failures in {self.wall:.2f} s "
                f"({rate:.1f} images/s, {self.graph_calls} graph calls); time: decode {s['decode']:.2f} s "
                f"(graph waited {s['decode_wait']:.2f} s), boxes {s['boxes']:.2f} s, graph {s['graph']:.2f} s, "
                f"nms {s['nms']:.2f} s, write {s['write']:.2f} s")


def _timed_load(item: InputItem, max_pixels: int, downscale: bool) -> tuple[np.ndarray | ImageError, float]:
    start = time.perf_counter()
    try:
        result: np.ndarray | ImageError = load_image(item.path, max_pixels, downscale)
    except ImageError as exc:
        result = exc
    return result, time.perf_counter() - start


def decode_ahead(items: list[InputItem], workers: int, ahead: int, stats: RunStats,
                 max_pixels: int = 0, downscale: bool = False) -> Iterator[tuple[int, InputItem, np.ndarray | ImageError]]:
    """Yield decoded images in input order while up to ``ahead`` more decode in ``workers`` threads."""
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="rmpe-decode") as pool:
        queue: deque[tuple[int, InputItem, Future]] = deque()
        todo = iter(enumerate(items))
        for index, item in todo:
            queue.append((index, item, pool.submit(_timed_load, item, max_pixels, downscale)))
            if len(queue) >= max(1, ahead):
                break
        while queue:
            index, item, future = queue.popleft()
            start = time.perf_counter()
            result, seconds = future.result()
            stats.seconds["decode_wait"] += time.perf_counter() - start
            stats.seconds["decode"] += seconds
            nxt = next(todo, None)
            if nxt is not None:
                queue.append((nxt[0], nxt[1], pool.submit(_timed_load, nxt[1], max_pixels, downscale)))
            yield index, item, result


@dataclass
class _Pending:
    index: int
    item: InputItem
    image: np.ndarray
    boxes: Boxes


PIXEL_BUDGET = 24_000_000  # most pixels of one graph call's padded images (72 MB of uint8); a larger image goes alone
MAX_PIXELS = 50_000_000  # larger images are refused before decoding, or decoded reduced (Pillow's bomb warning starts at 89 M)


class Pipeline:
    """Runs an estimator over many images with batching; results go to ``sinks``.

    Images share a graph call while their padded batch stays under ``pixel_budget`` pixels, so
    memory follows the images of a call, not the largest image among many small ones. Images over
    ``max_pixels`` are refused, or with ``downscale`` decoded reduced (:class:`ReducedImage`): boxes
    and poses then are in the reduced image's pixels, and the sinks map them back.
    """

    def __init__(self, estimator: PoseEstimator, box_source: BoxSource, sinks: list[Sink], *, batch: int = 16,
                 box_thr: float = 0.05, max_people: int = 0, workers: int = 2, ahead: int = 8,
                 pixel_budget: int = PIXEL_BUDGET, max_pixels: int = MAX_PIXELS, downscale: bool = False) -> None:
        limit = estimator.max_batch
        self.estimator, self.box_source, self.sinks = estimator, box_source, sinks
        self.batch = max(1, min(batch, limit) if limit else batch)
        self.box_thr, self.max_people = box_thr, max_people
        self.workers, self.ahead = workers, ahead
        self.pixel_budget, self.max_pixels, self.downscale = pixel_budget, max_pixels, downscale
        self.stats = RunStats()
        self._pending: list[_Pending] = []

    def run(self, items: list[InputItem], ids: list[ImageId],
            on_failure: Callable[[InputItem, str], None], progress: Callable[[], None] | None = None,
            stop: threading.Event | None = None) -> RunStats:
        """Process ``items`` (with their output ``ids``); unreadable images go to ``on_failure``.

        Once ``stop`` is set no further image is taken: the images already read finish their graph
        call and reach the sinks, and ``stats.interrupted`` tells the caller the run is incomplete.
        """
        decoded = ((item, ids[index], result) for index, item, result in
                   decode_ahead(items, self.workers, self.ahead, self.stats, self.max_pixels, self.downscale))
        return self.run_decoded(decoded, on_failure, progress, stop)

    def run_decoded(self, decoded: Iterable[tuple[InputItem, ImageId, np.ndarray | ImageError]],
                    on_failure: Callable[[InputItem, str], None], progress: Callable[[], None] | None = None,
                    stop: threading.Event | None = None) -> RunStats:
        """As :meth:`run`, for images decoded elsewhere (a video's frames, a Ray batch): (item, id,
        image or error) in order. Counts and seconds add up over calls."""
        start = time.perf_counter()
        decoded = iter(decoded)
        try:
            for index, (item, image_id, result) in enumerate(decoded):
                if stop is not None and stop.is_set():
                    self.stats.interrupted = True
                    break
                if isinstance(result, ImageError):
                    self.stats.failures += 1
                    on_failure(item, str(result))
                else:
                    self._add(index, item, image_id, result)
                if progress is not None:
                    progress()
            self._flush()
        finally:
            if hasattr(decoded, "close"):
                decoded.close()  # stops a decoding thread that is ahead of an interrupted run
        self.stats.wall += time.perf_counter() - start
        return self.stats

    def _add(self, index: int, item: InputItem, image_id: ImageId, image: np.ndarray) -> None:
        with self.stats.timed("boxes"):
            boxes = clean_boxes(self.box_source(item, image_id, image), thr=self.box_thr, max_people=self.max_people)
        pending_boxes = sum(len(p.boxes) for p in self._pending)
        if self._pending and (pending_boxes + len(boxes) > self.batch or self._padded_pixels(image) > self.pixel_budget):
            self._flush()
        self._pending.append(_Pending(index, item, image, boxes))
        if len(boxes) >= self.batch:
            self._flush()

    def _padded_pixels(self, image: np.ndarray) -> int:
        """Pixels of the padded batch if ``image`` joined the pending ones (all padded to the largest)."""
        shapes = [p.image.shape[:2] for p in self._pending] + [image.shape[:2]]
        return max(h for h, _ in shapes) * max(w for _, w in shapes) * len(shapes)

    def _flush(self) -> None:
        """Run the pending images through the graph (and the refine pass) and emit their poses."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        images = [p.image for p in pending]
        candidates = self._candidates(images, [p.boxes for p in pending])
        with self.stats.timed("nms"):
            poses = [select_poses(*c, self.estimator.nms, self.estimator.nms_constants) for c in candidates]
        if self.estimator.refine:
            second = self._candidates(images, [refine_boxes(q) for q in poses])
            with self.stats.timed("nms"):
                poses = [refine_poses(c, s, self.estimator.nms, self.estimator.nms_constants)
                         for c, s in zip(candidates, second)]
        for p, image_poses in zip(pending, poses):
            with self.stats.timed("write"):
                for sink in self.sinks:
                    sink(p.index, p.item, p.image, image_poses)
            self.stats.images += 1
            self.stats.people += len(image_poses)

    def _candidates(self, images: list[np.ndarray], boxes: list[Boxes]) -> list[Candidates]:
        """Every image's candidate poses, from graph calls of at most ``batch`` boxes (one image may span several)."""
        with self.stats.timed("graph"):
            return infer_in_batches(self._infer, images, boxes, self.batch, self.estimator.metadata.num_keypoints)

    def _infer(self, images: list[np.ndarray], boxes: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        if sum(len(b) for b in boxes):
            self.stats.graph_calls += 1
        return self.estimator.infer(images, boxes)
