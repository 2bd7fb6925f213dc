"""Sequences in ``rmpe-run``: video frames through the pipeline, track ids, and where frames' results go.

The images of a run form one sequence and every video another; with ``--track`` each sequence has
its own :class:`~rmpe.runtime.tracking.PoseTracker`, and its ids are written as ``idx``, as
AlphaPose writes them. A frame's results entry is a COCO results entry with ``image_id`` = the
frame index (``--frame-ids alphapose``: ``"N.jpg"``, AlphaPose's video layout), plus ``frame`` and
``video``. Frames are journalled like images (``clip.mp4#N`` in ``OUT.partial``), so an interrupted
video run resumes after its last finished frame, its tracks continuing from the journal.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .boxes import ImageId
from .estimator import Poses
from .images import ImageError, InputItem, pixel_scale
from .pipeline import RunStats
from .tracking import PoseTracker, TrackerConfig
from .video import FrameItem, FrameRange, VideoError, VideoReader, VideoWriter, ahead, frame_item
from .writers import ImageWriter, JsonWriter, coco_entries

FRAME_IDS = ("index", "alphapose")
FALLBACK_FPS = Fraction(25)  # --save-video's rate for a video whose file gives none
IMAGES = ""  # the sequence key of a run's images


def frame_image_id(frame: int, mode: str) -> ImageId:
    """The ``image_id`` of frame ``frame``: the index itself, or AlphaPose's ``"N.jpg"``."""
    return frame if mode == "index" else f"{frame}.jpg"


def frame_drawing_name(item: FrameItem) -> str:
    """Where ``--save-img`` puts a frame's drawing, relative to its folder: ``clip.mp4/000012.jpg``."""
    return f"{item.video}/{item.frame:06d}.jpg"


def poses_from_entries(entries: list[dict], num_keypoints: int) -> tuple[Poses, np.ndarray]:
    """The poses and ``idx`` values written in results entries (to continue tracks after ``--resume``)."""
    if not entries:
        return Poses.empty(num_keypoints), np.zeros(0, np.int64)
    flat = np.array([e["keypoints"] for e in entries], np.float32).reshape(len(entries), num_keypoints, 3)
    xywh = np.array([e["box"] for e in entries], np.float32)
    boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    scores = np.array([e["score"] for e in entries], np.float32)
    poses = Poses(flat[:, :, :2], flat[:, :, 2], boxes, scores, np.ones(len(entries), np.float32))
    return poses, np.array([int(e["idx"]) for e in entries], np.int64)


@dataclass
class SaveVideo:
    """``--save-video``: one output file, or a folder receiving ``<video stem>.mp4`` per video."""

    target: Path
    is_folder: bool

    def path_for(self, video: str) -> Path:
        """The output of the input video named ``video``."""
        return self.target / f"{Path(video).stem}.mp4" if self.is_folder else self.target


class ResultSink:
    """The pipeline's sink for images and frames: track ids, journalled entries, drawings, video."""

    def __init__(self, keypoint_names: list[str], skeleton: list[list[int]], *, json_writer: JsonWriter | None = None,
                 image_writer: ImageWriter | None = None, tracking: TrackerConfig | None = None,
                 frame_ids: str = "index", image_ids: dict[str, ImageId] | None = None, vis_thr: float = 0.3,
                 oks_sigmas: list[float] | None = None) -> None:
        self.keypoint_names, self.skeleton, self.vis_thr = keypoint_names, skeleton, vis_thr
        self.oks_sigmas = oks_sigmas  # the model's layout's, for the trackers' OKS (None: from the keypoint names)
        self.json_writer, self.image_writer = json_writer, image_writer
        self.tracking, self.frame_ids = tracking, frame_ids
        self.image_ids = image_ids or {}  # image name → image_id, in input order
        self.image_rank = {name: i for i, name in enumerate(self.image_ids)}
        self.trackers: dict[str, PoseTracker] = {}
        self.video: VideoWriter | None = None

    def resume(self, records: list[dict]) -> None:
        """Continue each sequence's tracks from its last journalled frame (or image) and its ids after
        the largest ``idx`` it used."""
        if self.tracking is None:
            return
        last: dict[str, tuple[int, list[dict]]] = {}
        largest: dict[str, int] = {}
        for record in records:
            entries = record["entries"]
            key = entries[0].get("video", IMAGES) if entries else None
            if key is None:
                continue
            position = entries[0]["frame"] if key != IMAGES else self.image_rank.get(record["name"], -1)
            if position >= last.get(key, (-1, []))[0]:
                last[key] = (position, entries)
            largest[key] = max([largest.get(key, 0), *(int(e["idx"]) for e in entries)])
        for key, (position, entries) in last.items():
            tracker = self.tracker(key)
            tracker.seed(position, *poses_from_entries(entries, len(self.keypoint_names)))
            tracker.next_id = max(tracker.next_id, largest[key] + 1)

    def tracker(self, key: str) -> PoseTracker:
        """The tracker of sequence ``key`` (made on first use)."""
        if key not in self.trackers:
            self.trackers[key] = PoseTracker(self.keypoint_names, self.tracking, sigmas=self.oks_sigmas)
        return self.trackers[key]

    def start_video(self, writer: VideoWriter | None) -> None:
        """The frames that follow (one video's) are also encoded into ``writer``."""
        self.video = writer

    def end_video(self) -> Path | None:
        """Finish the current video's ``--save-video`` file; returns its path if frames were written."""
        writer, self.video = self.video, None
        return writer.close() if writer is not None else None

    def __call__(self, index: int, item: InputItem, image: np.ndarray, poses: Poses) -> None:
        frame = item if isinstance(item, FrameItem) else None
        ids = None
        if self.tracking is not None:
            key, position = (frame.video, frame.frame) if frame else (IMAGES, self.image_rank.get(item.name, index))
            ids = self.tracker(key).update(poses, position)
        if self.json_writer is not None:
            image_id = frame_image_id(frame.frame, self.frame_ids) if frame else self.image_ids.get(item.name, item.name)
            entries = coco_entries(image_id, poses.scaled(*pixel_scale(image)))
            for entry, i in zip(entries, range(len(entries)) if ids is None else ids.tolist()):
                entry["idx"] = i
                if frame is not None:
                    entry.update(frame=frame.frame, video=frame.video)
            self.json_writer.add_entries(item.name, image_id, entries)
        if self.image_writer is not None:
            self.image_writer.add(frame_drawing_name(frame) if frame else item.name, image, poses, ids)
        if self.video is not None:
            from .draw import draw_poses

            self.video.add(np.asarray(draw_poses(image, poses, self.skeleton, self.vis_thr, ids)))


def video_frames(item: InputItem, span: FrameRange, frame_ids: str, skip: set[str], stats: RunStats,
                 depth: int = 8) -> Iterator[tuple[InputItem, ImageId, np.ndarray | ImageError]]:
    """The frames of the video ``item`` as the pipeline takes them, decoded in a thread at most
    ``depth`` frames ahead; frames named in ``skip`` (journalled before) are left out, and a video
    that cannot be opened or decoded further ends with one error entry."""
    def produce() -> Iterator[tuple[InputItem, ImageId, np.ndarray | ImageError]]:
        last = -1
        try:
            with VideoReader(item.path) as reader:
                frames = reader.frames(span)
                while True:
                    start = time.perf_counter()
                    step = next(frames, None)
                    stats.seconds["decode"] += time.perf_counter() - start
                    if step is None:
                        return
                    last, image = step
                    entry = frame_item(item.path, item.name, last)
                    if entry.name not in skip:
                        yield entry, frame_image_id(last, frame_ids), image
        except VideoError as exc:
            yield frame_item(item.path, item.name, last + 1), frame_image_id(last + 1, frame_ids), exc

    queued = ahead(produce(), depth)
    while True:
        start = time.perf_counter()
        step = next(queued, None)
        stats.seconds["decode_wait"] += time.perf_counter() - start
        if step is None:
            return
        yield step


def check_sequence_options(args, items: list[InputItem]) -> SaveVideo | None:
    """Refuse, before any work, video and tracking options that cannot be carried out (one-line
    :class:`~rmpe.runtime.outputs.OutputError`); returns where ``--save-video`` writes."""
    from .images import is_video_file
    from .outputs import OutputError
    from .video import CONTAINERS, load_av

    videos = [item for item in items if is_video_file(item.path)]
    if args.ray is not None and (videos or args.track or args.save_img or args.save_video):
        raise OutputError("--ray runs images into --out only; run videos, --track, --save-img and --save-video without it")
    try:
        if videos:
            load_av()
        if args.track:
            import scipy.optimize  # noqa: F401  (the Hungarian solver)
    except (VideoError, ImportError) as exc:
        raise OutputError(str(exc) if isinstance(exc, VideoError) else "--track needs SciPy: pip install 'rmpe[video]'") from None
    target = args.save_video
    if target is None:
        return None
    if not videos:
        raise OutputError(f"--save-video {target}: no video among the inputs")
    if args.resume:
        raise OutputError(f"--save-video {target}: a resumed run would leave out the frames done before; "
                          "run it again without --resume")
    is_folder = not target.suffix
    if not is_folder and target.suffix.lower() not in CONTAINERS:
        raise OutputError(f"--save-video {target}: cannot write {target.suffix}; use one of {' '.join(CONTAINERS)}")
    if not is_folder and len(videos) > 1:
        raise OutputError(f"--save-video {target}: {len(videos)} videos in the inputs; give a folder instead")
    if target.is_dir() != is_folder:
        raise OutputError(f"--save-video {target}: " + ("is a folder; give a file name such as out.mp4" if not is_folder
                                                        else "exists and is not a folder"))
    save = SaveVideo(target, is_folder)
    inputs = {item.path.resolve() for item in items}
    if any(save.path_for(v.name).resolve() in inputs for v in videos):
        raise OutputError(f"--save-video {target}: would overwrite an input video; choose another name")
    return save


def frame_range(args) -> FrameRange:
    """The frames ``--every``, ``--start`` and ``--end`` select."""
    return FrameRange(args.every, args.start, args.end)


def estimate_frames(path: Path, args) -> int:
    """About how many frames of the video at ``path`` the run takes (0 when the file does not say)."""
    try:
        with VideoReader(path) as reader:
            count, fps = reader.frame_count, reader.fps
    except VideoError:
        return 0
    if not count or not fps:
        return count
    first = min(count, round(args.start * float(fps)))
    last = count if args.end is None else min(count, round(args.end * float(fps)))
    return max(0, -(-(last - first) // args.every))


def run_videos(pipeline, sink: ResultSink, videos: list[InputItem], args, done: set[str],
               on_failure: Callable[[InputItem, str], None], progress: Callable[[], None] | None,
               stop: threading.Event | None, say: Callable[[str], None]) -> None:
    """Each video's frames through ``pipeline`` into ``sink`` (and its ``--save-video`` file), one after another."""
    span = frame_range(args)
    for item in videos:
        if stop is not None and stop.is_set():
            pipeline.stats.interrupted = True
            return
        writer = None
        if args.save_video is not None:
            try:
                with VideoReader(item.path) as reader:
                    fps = reader.fps
            except VideoError as exc:
                pipeline.stats.failures += 1
                on_failure(item, str(exc))
                continue
            if fps is None:
                say(f"warning: {item.path}: no frame rate in the file; --save-video uses {FALLBACK_FPS} frames/s")
            try:
                writer = VideoWriter(args.save_video.path_for(item.name), (fps or FALLBACK_FPS) / args.every)
            except VideoError as exc:
                raise OSError(str(exc)) from None
        sink.start_video(writer)
        try:
            pipeline.run_decoded(video_frames(item, span, args.frame_ids, done, pipeline.stats), on_failure, progress, stop)
        except VideoError as exc:  # writing the drawings failed
            raise OSError(str(exc)) from None
        finally:
            written = sink.end_video()
        if written is not None and not args.quiet:
            say(f"wrote {written}")
