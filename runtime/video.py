"""Video files in and out through PyAV (FFmpeg inside its wheel; ``pip install 'rmpe[video]'``).

Frames are decoded one at a time, a bounded number ahead of the graph in a thread, so memory does
not grow with a video's length. A frame's index counts the frames from the start of the video
(after ``--start`` the first index comes from the frame's time), so ``--every``, ``--start`` and
``--end`` never renumber frames. Rotation metadata (a phone's display matrix) is applied the way
FFmpeg's own player applies it. Drawings are encoded at the source's frame rate (divided by
``--every``) into a temporary file that is moved into place when the video is done.
"""

from __future__ import annotations

import math
import os
import queue
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator, TypeVar

import numpy as np

from .images import ImageError, InputItem

T = TypeVar("T")
CONTAINERS = {".mp4": ("mp4", "libx264"), ".m4v": ("mp4", "libx264"), ".mov": ("mov", "libx264"),
              ".mkv": ("matroska", "libx264"), ".avi": ("avi", "mpeg4")}  # --save-video: suffix → muxer, encoder


class VideoError(ImageError):
    """A video that cannot be read or written; the message names the problem in a few words."""


def load_av():
    """The ``av`` module, or a :class:`VideoError` saying how to install it."""
    try:
        import av
    except ImportError:
        raise VideoError("videos need PyAV: pip install 'rmpe[video]'") from None
    return av


def _reason(exc: BaseException) -> str:
    """One line from an FFmpeg or OS error."""
    text = str(exc).strip()
    return getattr(exc, "strerror", None) or (text.splitlines()[0] if text else exc.__class__.__name__)


@dataclass
class FrameItem(InputItem):
    """One frame of a video input: ``name`` is ``video#frame``, the key of its results journal."""

    video: str
    frame: int


def frame_item(path: Path, video: str, frame: int) -> FrameItem:
    """The item of frame ``frame`` of the input ``video`` (its name as found) at ``path``."""
    return FrameItem(path, f"{video}#{frame}", video, frame)


def parse_time(text: str) -> float:
    """Seconds from ``12.5``, ``1:02.5`` or ``1:02:03``; ``ValueError`` for anything else or below 0."""
    parts = text.strip().split(":")
    if not 1 <= len(parts) <= 3 or not all(parts):
        raise ValueError(f"{text!r} is not a time (seconds, M:SS or H:MM:SS)")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"{text!r} is not a time (seconds, M:SS or H:MM:SS)") from None
    seconds = sum(v * 60 ** i for i, v in enumerate(reversed(values)))
    if not math.isfinite(seconds) or seconds < 0 or any(v < 0 for v in values):
        raise ValueError(f"{text!r} is not a time of at least 0")
    return seconds


@dataclass(frozen=True)
class FrameRange:
    """Which frames to take: every ``every``-th from ``start`` seconds up to (not including) ``end``."""

    every: int = 1
    start: float = 0.0
    end: float | None = None


class VideoReader:
    """A video file opened for decoding its first video stream."""

    def __init__(self, path: Path) -> None:
        av = load_av()
        self.path = Path(path)
        try:
            self.container = av.open(str(path))
        except (av.error.FFmpegError, OSError) as exc:
            raise VideoError(f"cannot open as a video ({_reason(exc)})") from None
        if not self.container.streams.video:
            self.container.close()
            raise VideoError("has no video stream")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"

    @property
    def fps(self) -> Fraction | None:
        """Frames per second (the stream's average rate, else FFmpeg's guess), None when unknown."""
        for rate in (self.stream.average_rate, self.stream.guessed_rate):
            if rate:
                return Fraction(rate)
        return None

    @property
    def frame_count(self) -> int:
        """Frames the container says the stream has (0 when it does not say)."""
        return int(self.stream.frames or 0)

    def frames(self, span: FrameRange = FrameRange()) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (frame index, HxWx3 uint8 RGB upright image) of the frames in ``span``.

        Seeks to ``span.start`` when the frame rate is known (the first index then comes from the
        frame's time); decoding errors raise :class:`VideoError` naming the last good frame.
        """
        av = load_av()
        fps = self.fps
        base = self.stream.time_base
        t0 = float(self.stream.start_time * base) if self.stream.start_time is not None and base else 0.0
        tolerance = 0.25 / float(fps) if fps else 1e-6
        seeked = bool(span.start > 0 and fps and base)
        if seeked:
            try:
                self.container.seek(int((t0 + span.start) / base), stream=self.stream, backward=True)
            except av.error.FFmpegError:
                seeked = False
                self.container.seek(0)
        index, first = -1, None
        try:
            for frame in self.container.decode(self.stream):
                rel = frame.time - t0 if frame.time is not None else None
                index = round(rel * float(fps)) if seeked and index < 0 and rel is not None else index + 1
                if rel is not None and rel < span.start - tolerance:
                    continue
                if span.end is not None and rel is not None and rel >= span.end - tolerance:
                    return
                first = index if first is None else first
                if (index - first) % span.every:
                    continue
                yield index, upright(frame.to_ndarray(format="rgb24"), frame.rotation)
        except av.error.FFmpegError as exc:
            where = f"after frame {index}" if index >= 0 else "at the first frame"
            raise VideoError(f"cannot decode {where} ({_reason(exc)})") from None

    def close(self) -> None:
        """Release the file."""
        self.container.close()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def upright(image: np.ndarray, rotation: float) -> np.ndarray:
    """The image as it is meant to be seen: ``rotation`` is the display matrix's counter-clockwise
    angle in degrees (PyAV's ``VideoFrame.rotation``), applied as FFmpeg's autorotation does."""
    turns = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


def ahead(values: Iterator[T], depth: int) -> Iterator[T]:
    """``values`` produced in a background thread at most ``depth`` items ahead of the consumer, so
    decoding overlaps inference with bounded memory; an exception is raised at its place in order."""
    items: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop, end = threading.Event(), object()

    def put(value: object) -> bool:
        while not stop.is_set():
            try:
                items.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for value in values:
                if not put(value):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            put(exc)
        finally:
            if hasattr(values, "close"):
                values.close()  # a generator left early releases what it holds (the open video)
            put(end)

    worker = threading.Thread(target=work, name="rmpe-video-decode", daemon=True)
    worker.start()
    try:
        while (value := items.get()) is not end:
            if isinstance(value, BaseException):
                raise value
            yield value
    finally:
        stop.set()
        worker.join()


class VideoWriter:
    """Encodes RGB frames (H.264 in .mp4/.m4v/.mov/.mkv, MPEG-4 Part 2 in .avi) at ``fps``.

    Frames go to a hidden temporary file beside ``path``, moved into place by :meth:`close`, so a
    half-written file never takes the name. Odd sizes are padded by one edge pixel (4:2:0 needs
    even sizes); later frames of another size are padded or cut to the first one's.
    """

    def __init__(self, path: Path, fps: Fraction, quality: int = 20, threads: int = 0) -> None:
        av = load_av()
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in CONTAINERS:
            raise VideoError(f"{self.path}: cannot write {suffix or 'files without a suffix'}; "
                             f"use one of {' '.join(CONTAINERS)}")
        self.muxer, self.codec = CONTAINERS[suffix]
        self.fps, self.quality, self.threads = Fraction(fps).limit_denominator(1001 * 1000), quality, threads
        self.temp = self.path.with_name(f".{self.path.name}.partial{suffix}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.container = av.open(str(self.temp), "w", format=self.muxer)
        except (av.error.FFmpegError, OSError) as exc:
            raise VideoError(f"{self.path}: cannot write ({_reason(exc)})") from None
        self.stream = None
        self.frames = 0

    def _open_stream(self, height: int, width: int) -> None:
        stream = self.container.add_stream(self.codec, rate=self.fps)
        stream.width, stream.height, stream.pix_fmt = width + width % 2, height + height % 2, "yuv420p"
        stream.codec_context.thread_count = self.threads
        if self.codec == "libx264":
            stream.options = {"crf": str(self.quality), "preset": "fast",
                              **({"threads": str(self.threads)} if self.threads else {})}
        else:
            stream.codec_context.bit_rate = int(stream.width * stream.height * float(self.fps) * 0.5)
        self.stream = stream

    def add(self, image: np.ndarray) -> None:
        """Encode the next frame (HxWx3 uint8 RGB)."""
        av = load_av()
        if self.stream is None:
            self._open_stream(*image.shape[:2])
        h, w = self.stream.height, self.stream.width
        if image.shape[:2] != (h, w):
            image = np.pad(image[:h, :w], ((0, max(0, h - image.shape[0])), (0, max(0, w - image.shape[1])), (0, 0)),
                           mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame.pts, frame.time_base = self.frames, 1 / self.fps
        self._mux(self.stream.encode(frame))
        self.frames += 1

    def _mux(self, packets) -> None:
        av = load_av()
        try:
            self.container.mux(packets)
        except (av.error.FFmpegError, OSError) as exc:
            raise VideoError(f"{self.path}: cannot write ({_reason(exc)})") from None

    def close(self) -> Path | None:
        """Finish the file and move it into place; returns its path (None, and no file, without frames)."""
        if self.stream is not None:
            self._mux(self.stream.encode(None))
        self.container.close()
        if not self.frames:
            self.temp.unlink(missing_ok=True)
            return None
        os.replace(self.temp, self.path)
        return self.path
