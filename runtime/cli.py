"""``rmpe-run``: run an exported rmpe model on images and write COCO results and drawings."""

from __future__ import annotations

import argparse
import contextlib
import math
import signal
import sys
import threading
import warnings
from pathlib import Path

EPILOG = """\
examples:
  # one image, the whole image is one person; print a summary
  rmpe-run model.onnx photo.jpg --out results.json

  # a folder (and its sub-folders) with people found by a YOLO detector; draw the poses
  rmpe-run model.onnx photos/ --recursive --detector yolov8n.onnx --out results.json --save-img vis/

  # COCO val with the boxes of a detector's results file (image ids matched to file names)
  rmpe-run model.onnx val2017/ --boxes person_detections.json --annotations person_keypoints_val2017.json \\
      --out results.json

  # more accurate, slower: a second pass at boxes fitted to the people found
  rmpe-run model.onnx photos/ --boxes person_detections.json --refine --out results.json

  # AlphaPose --detfile form, a glob, GPU
  rmpe-run model.onnx 'frames/*.png' --detfile dets.json --device cuda --batch 64

  # a video: every 2nd frame from 0:10 to 0:20, people tracked, drawn into a video (needs rmpe[video])
  rmpe-run model.onnx clip.mp4 --detector yolov8n.onnx --every 2 --start 10 --end 20 --track \
      --out results.json --save-video poses.mp4

  # images on Ray (needs rmpe[ray]): a local instance, or --ray auto / --ray ray://HEAD:10001 for a cluster
  rmpe-run model.onnx photos/ --boxes dets.json --out results.json --ray

boxes, in this order: --boxes/--detfile, then --detector, otherwise one box covering each image.
a video's frames are numbered from 0 at its first frame; their results carry "frame" and "video", with
image_id the frame index (--frame-ids alphapose: "N.jpg"), and --boxes files match frames by that index.
results are journalled image by image in OUT.partial; SIGINT or SIGTERM stops after the current
graph call and writes OUT for the images done (exit 130 / 143); after any interruption, even a
kill, the same command with --resume processes only the images not yet done.
exit status: 0 done (unreadable images are reported and skipped), 1 every image failed,
2 bad arguments, model, box file or no images, 130 / 143 interrupted by SIGINT / SIGTERM.
"""

PROG = "rmpe-run"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``rmpe-run``."""
    from .estimator import NMS_MODES
    from .frames import FRAME_IDS
    from .pipeline import MAX_PIXELS, PIXEL_BUDGET
    from .tracking import TrackerConfig

    p = argparse.ArgumentParser(prog=PROG, description="Run an exported rmpe pose model on images.",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="model.onnx (ONNX Runtime) or a TensorRT engine (.plan/.engine)")
    p.add_argument("inputs", nargs="+", help="images, videos, folders, glob patterns or .txt files listing paths")
    p.add_argument("--recursive", action="store_true", help="look into sub-folders of input folders")
    out = p.add_argument_group("outputs")
    out.add_argument("--out", type=Path, help="COCO keypoint results JSON to write")
    out.add_argument("--resume", action="store_true",
                     help="finish an interrupted run: keep the images already in OUT.partial (the journal every "
                     "run writes beside --out) and process only the rest")
    out.add_argument("--save-img", type=Path, metavar="DIR", help="save images with poses drawn here")
    out.add_argument("--vis-thr", type=float, default=0.3, help="draw keypoints scoring above this (default 0.3)")
    out.add_argument("--quiet", action="store_true", help="no progress bar and no summary line")
    box = p.add_argument_group("person boxes")
    box.add_argument("--boxes", "--detfile", type=Path, metavar="FILE",
                     help="detections JSON: COCO results (integer image_id) or AlphaPose detfile (file-name image_id)")
    box.add_argument("--annotations", type=Path, metavar="FILE",
                     help="COCO annotation file mapping file_name to image id (for --boxes and the results)")
    box.add_argument("--detector", type=Path, metavar="ONNX", help="YOLOv8/YOLO11 or YOLOX person detector")
    box.add_argument("--detector-format", choices=("auto", "yolov8", "yolox"), default="auto",
                     help="detector output layout (default: from the output shape)")
    box.add_argument("--box-thr", type=float, default=0.05, help="drop boxes scoring below this (default 0.05)")
    box.add_argument("--max-people", type=int, default=0, help="keep at most this many boxes per image (0: all)")
    run = p.add_argument_group("inference")
    run.add_argument("--nms", choices=NMS_MODES,
                     help="pose NMS, with the constants in the model's metadata (default: the metadata's mode, rmpe: "
                     "the paper's scale-aware rules, people ranked by their median keypoint score; alphapose: "
                     "AlphaPose's pixel rules and person score; none: keep every box's pose)")
    run.add_argument("--refine", action="store_true",
                     help="second pass: crop every person again at a box fitted to its keypoints and merge both "
                     "passes' poses in a second pose NMS (one more graph run per person, about +0.01 AP)")
    run.add_argument("--batch", type=int, default=16, help="most boxes per graph call (default 16)")
    run.add_argument("--batch-pixels", type=int, default=PIXEL_BUDGET, metavar="N",
                     help="most pixels of the (padded) images of one graph call; a larger image goes alone "
                     f"(default {PIXEL_BUDGET:,}: memory follows the images of a call, not the largest of the run)")
    run.add_argument("--max-pixels", type=int, default=MAX_PIXELS, metavar="N",
                     help=f"images of more pixels, read from their header before decoding, are skipped or reduced "
                     f"(--oversize; default {MAX_PIXELS:,}; 0: no limit)")
    run.add_argument("--oversize", choices=("skip", "downscale"), default="skip",
                     help="images over --max-pixels: skip them with a message (default), or decode them reduced to "
                     "--max-pixels (area averaging; results stay in the file's pixels, drawings are at the reduced size)")
    run.add_argument("--backend", choices=("auto", "ort", "ort-trt", "trt"), default="auto",
                     help="auto: by file suffix; ort-trt: ONNX Runtime's TensorRT provider")
    run.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="execution device (default cpu)")
    run.add_argument("--trt-cache", metavar="DIR", help="--backend ort-trt: folder of the TensorRT provider's engine and "
                     "timing caches, so only the first run builds (default: ~/.cache/rmpe/ort-tensorrt)")
    run.add_argument("--trt-fp16", action="store_true", help="--backend ort-trt: let TensorRT run fp32 layers in fp16 "
                     "(an --fp16 export keeps the sampling grids fp32 and is the safer way to fp16)")
    run.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: its default)")
    run.add_argument("--opt-level", choices=("disable", "basic", "extended", "all"), default="all",
                     help="ONNX Runtime graph optimisation level")
    run.add_argument("--session-option", action="append", default=[], metavar="KEY=VALUE",
                     help="ONNX Runtime session config entry (repeatable)")
    run.add_argument("--workers", type=int, default=2, help="image decoding threads (default 2)")
    vid = p.add_argument_group("video and tracking (rmpe[video])")
    vid.add_argument("--every", type=int, default=1, metavar="N", help="take every N-th frame of a video (default 1)")
    vid.add_argument("--start", type=_time, default=0.0, metavar="T", help="first time taken, seconds or [H:]M:S")
    vid.add_argument("--end", type=_time, metavar="T", help="stop before this time, seconds or [H:]M:S")
    vid.add_argument("--save-video", type=Path, metavar="FILE",
                     help="the poses drawn into a video at the source's frame rate (divided by --every): FILE for one "
                     "video input (.mp4 .m4v .mov .mkv .avi), else a folder receiving NAME.mp4 per video")
    vid.add_argument("--frame-ids", choices=FRAME_IDS, default="index",
                     help="image_id of a frame's results: its index (default) or AlphaPose's \"N.jpg\"")
    vid.add_argument("--track", action="store_true",
                     help="give each person an id kept across frames (OKS + box IoU, Hungarian matching), written "
                     "as idx and drawn in its colour; the images of a run are one sequence, each video another")
    vid.add_argument("--track-ttl", type=int, default=TrackerConfig.ttl, metavar="FRAMES",
                     help=f"frames a lost person keeps its id (default {TrackerConfig.ttl})")
    vid.add_argument("--track-thr", type=float, default=TrackerConfig.min_similarity, metavar="S",
                     help=f"least similarity (0.5 OKS + 0.5 IoU) of a match (default {TrackerConfig.min_similarity})")
    dist = p.add_argument_group("distributed (rmpe[ray])")
    dist.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                      help="run the images on Ray Data, one model session per worker: alone, a new local instance; "
                      "auto, the running cluster; ray://HOST:10001, a remote one. Put it after the inputs, or "
                      "write --ray=ADDRESS")
    dist.add_argument("--ray-workers", type=int, default=0, metavar="N",
                      help="Ray actors, each holding one session (default: the cluster's CPUs / --threads)")
    return p


def _time(text: str) -> float:
    """argparse type of --start / --end."""
    from .video import parse_time

    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _say(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    _say(f"warning: {message}")


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    warnings.showwarning = _show_warning
    # Pillow's own bomb warning does not name the file; load_image says the same with the path
    warnings.filterwarnings("ignore", message="Image size .* exceeds limit")
    try:
        return _run(args)
    except KeyboardInterrupt:
        _say("interrupted")
        return 130


def _run(args: argparse.Namespace) -> int:
    from .backends import BackendError, BackendOptions
    from .boxes import BoxFileError, DetectionFile, image_ids, read_annotation_ids, to_image_pixels, whole_image
    from .detector import DetectorError
    from .estimator import PoseEstimator
    from .frames import check_sequence_options
    from .images import IMAGE_SUFFIXES, VIDEO_SUFFIXES, find_inputs, is_video_file
    from .video import FrameItem
    from .outputs import OutputError, OutputLock, check_outputs
    from .writers import drawing_path

    if args.batch < 1:
        _say("error: --batch must be at least 1")
        return 2
    if args.resume and args.out is None:
        _say("error: --resume needs --out (the results file of the interrupted run)")
        return 2
    numbers = {"--box-thr": (args.box_thr, 0.0), "--vis-thr": (args.vis_thr, 0.0), "--max-people": (args.max_people, 0),
               "--threads": (args.threads, 0), "--workers": (args.workers, 1),
               "--batch-pixels": (args.batch_pixels, 1), "--max-pixels": (args.max_pixels, 0),
               "--every": (args.every, 1), "--track-ttl": (args.track_ttl, 0), "--track-thr": (args.track_thr, 0.0),
               "--ray-workers": (args.ray_workers, 0)}
    for flag, (value, least) in numbers.items():
        if not math.isfinite(value) or value < least:
            _say(f"error: {flag} {value}: must be a number of at least {least}")
            return 2
    if args.ray not in (None, "local", "auto") and "://" not in args.ray and Path(args.ray).exists():
        _say(f"error: --ray {args.ray}: that is an input, not a Ray address; put --ray after the inputs "
             "or write --ray=ADDRESS")
        return 2
    if args.end is not None and args.end <= args.start:
        _say(f"error: --end {args.end:g} s must come after --start {args.start:g} s")
        return 2
    config = {}
    for entry in args.session_option:
        key, sep, value = entry.partition("=")
        if not sep:
            _say(f"error: --session-option {entry!r} is not KEY=VALUE")
            return 2
        config[key] = value

    found = find_inputs(args.inputs, recursive=args.recursive)
    if args.ray is not None:
        from .ray import RayError, expand_lists

        try:
            found = expand_lists(found)
        except RayError as exc:
            _say(f"error: {exc}")
            return 2
    for problem in found.problems:
        _say(problem)
    if found.skipped:
        shown = ", ".join(found.skipped[:5]) + (", ..." if len(found.skipped) > 5 else "")
        _say(f"skipped {len(found.skipped)} file(s) that are not images or videos: {shown}")
    if not found.items:
        _say(f"error: no images found in {', '.join(args.inputs)} "
             f"(looked for {' '.join(IMAGE_SUFFIXES)}, and videos {' '.join(VIDEO_SUFFIXES)})")
        return 2

    try:
        targets = [drawing_path(args.save_img, item.name) for item in found.items] if args.save_img else []
        check_outputs(args.out, args.save_img, targets, found.items)
        args.save_video = check_sequence_options(args, found.items)
    except OutputError as exc:
        _say(f"error: {exc}")
        return 2

    options = BackendOptions(backend=args.backend, device=args.device, threads=args.threads,
                             optimization=args.opt_level, session_config=config, trt_cache=args.trt_cache,
                             trt_fp16=args.trt_fp16)
    try:
        annotations = read_annotation_ids(args.annotations) if args.annotations else None
        detections = DetectionFile(args.boxes) if args.boxes else None
        if detections is not None and args.detector is not None:
            _say("warning: --boxes given, so --detector is not used")
        estimator = PoseEstimator(args.model, nms=args.nms, refine=args.refine, options=options, box_thr=args.box_thr,
                                  max_people=args.max_people,
                                  detector=args.detector if detections is None else None,
                                  detector_format=args.detector_format)
    except (BackendError, BoxFileError, DetectorError, RuntimeError, ValueError) as exc:
        _say(f"error: {exc}")
        return 2

    if detections is not None:
        images = [item for item in found.items if not is_video_file(item.path)]
        if images:
            _check_detections(detections, images, image_ids([item.name for item in images], annotations))

        def source(item, image_id, image):
            if isinstance(item, FrameItem):  # a frame's boxes are those of its index (or AlphaPose's "N.jpg")
                return detections.lookup(f"{item.frame}.jpg", item.frame)
            return to_image_pixels(detections.lookup(item.name, image_id), image)
    elif estimator.detector is not None:
        def source(item, image_id, image):
            return estimator.detector(image)
    else:
        def source(item, image_id, image):
            return whole_image(*image.shape[:2])

    try:
        with OutputLock(args.out) if args.out else contextlib.nullcontext() as lock:
            if lock is not None and lock.stale is not None:
                _say(f"warning: took over {lock.path} from rmpe-run pid {lock.stale}, which is no longer running")
            return _process(args, found, annotations, estimator, source)
    except OutputError as exc:  # only the lock raises it here
        estimator.close()
        _say(f"error: {exc}")
        return 2


def _process(args: argparse.Namespace, found, annotations, estimator, source) -> int:
    """Run the pipeline (or Ray) over ``found``'s images, then its videos, and write the outputs; returns
    the exit status."""
    from .backends import BackendError
    from .boxes import image_ids
    from .frames import ResultSink, estimate_frames, run_videos
    from .images import is_video_file
    from .pipeline import Pipeline
    from .tracking import TrackerConfig
    from .writers import ImageWriter, JsonWriter, journal_path, read_journal

    images = [item for item in found.items if not is_video_file(item.path)]
    videos = [item for item in found.items if is_video_file(item.path)]
    ids = image_ids([item.name for item in images], annotations)
    id_of = dict(zip((item.name for item in images), ids))
    if args.out is not None and journal_path(args.out).is_file() != args.resume:
        _say(f"warning: {journal_path(args.out)} " + ("holds an interrupted run's results and is replaced; add --resume to "
             "finish that run instead" if not args.resume else "is missing: nothing to resume, every image is run"))
    try:
        json_writer = JsonWriter(args.out, [item.name for item in images], args.resume) if args.out else None
    except OSError as exc:
        _say(f"error: cannot write {args.out}: {exc.strerror or exc}")
        return 2
    todo = images
    if json_writer is not None and json_writer.done:
        todo = [item for item in images if item.name not in json_writer.done]
        frames_done = len(json_writer.done) - (len(images) - len(todo))
        _say(f"resuming: {len(images) - len(todo)} of {len(images)} images" +
             (f" and {frames_done} video frames" if videos else "") + f" already in {json_writer.journal}")
    tracking = TrackerConfig(ttl=args.track_ttl, min_similarity=args.track_thr) if args.track else None
    sink = ResultSink(estimator.keypoint_names, estimator.skeleton, json_writer=json_writer,
                      image_writer=ImageWriter(args.save_img, estimator.skeleton, args.vis_thr) if args.save_img else None,
                      tracking=tracking, frame_ids=args.frame_ids, image_ids=id_of, vis_thr=args.vis_thr,
                      oks_sigmas=estimator.metadata.oks_sigmas)
    if json_writer is not None and json_writer.done:
        sink.resume(read_journal(args.out))

    bar = _progress(len(todo) + sum(estimate_frames(v.path, args) for v in videos), args.quiet)

    def on_failure(item, problem: str) -> None:
        line = f"{PROG}: skipped {item.path}: {problem}"
        bar.write(line, file=sys.stderr) if bar is not None else print(line, file=sys.stderr)

    pipeline = Pipeline(estimator, source, [sink], batch=args.batch, box_thr=args.box_thr,
                        max_people=args.max_people, workers=args.workers, pixel_budget=args.batch_pixels,
                        max_pixels=args.max_pixels, downscale=args.oversize == "downscale")
    stop = threading.Event()
    received = _stop_on_signals(stop)
    stats, status, ray_workers = pipeline.stats, 0, 0
    progress = bar.update if bar is not None else None
    try:
        if args.ray is not None:
            from .ray import RayError, run_on_ray

            estimator.close()
            try:
                stats, ray_workers = run_on_ray(args, todo, [id_of[item.name] for item in todo], json_writer,
                                                on_failure, progress, stop)
            except RayError as exc:
                _say(f"error: {exc}")
                status = 2
        else:
            stats = pipeline.run(todo, [id_of[item.name] for item in todo], on_failure, progress=progress, stop=stop)
            run_videos(pipeline, sink, videos, args, json_writer.done if json_writer else set(), on_failure,
                       progress, stop, say=_say)
    except (BackendError, OSError) as exc:
        _say(f"error: {exc}")
        status = 2
    finally:
        _restore_signals(received)
        if bar is not None:
            bar.close()
        estimator.close()
        sink.end_video()
        if json_writer is not None:
            json_writer.close(complete=status == 0 and not stats.interrupted)
    if stats.interrupted:
        name = signal.Signals(received["signal"]).name
        _say(f"interrupted by {name} after {stats.images} images" + (
            f"; their results are in {args.out}; add --resume to the same command to finish the rest" if args.out else ""))
        return 128 + received["signal"]
    if not args.quiet and status == 0:
        line = stats.summary() if args.ray is None else (
            f"{stats.images} images, {stats.people} people, {stats.failures} failures in {stats.wall:.2f} s on Ray "
            f"({stats.images / max(stats.wall, 1e-9):.1f} images/s, {ray_workers} workers)")
        _say(line + (f"; results in {args.out}" if args.out else ""))
    return status or (1 if stats.images == 0 and stats.failures else 0)


def _check_detections(detections, items, ids) -> None:
    """Warn when a detections file has boxes for none or only some of the images, or boxes beyond float range."""
    matched = sum(1 for item, image_id in zip(items, ids) if len(detections.lookup(item.name, image_id)))
    if matched < len(items):
        _say(f"warning: {detections.path} has boxes for {matched} of the {len(items)} images"
             + ("; check that its image_id values are the images' ids (numeric file names or --annotations)"
                if matched == 0 else ""))
    if detections.nonfinite:
        _say(f"warning: {detections.path}: {detections.nonfinite} box(es) beyond float range are dropped")


def _stop_on_signals(stop: threading.Event) -> dict:
    """SIGINT and SIGTERM ask the run to stop after the current graph call (a second SIGINT stops at
    once); returns the record of the signal received and of the handlers replaced."""
    received: dict = {"previous": {}}

    def handler(signum, frame) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        received["signal"] = signum
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        received["previous"][sig] = signal.signal(sig, handler)
    return received


def _restore_signals(received: dict) -> None:
    """Put back the signal handlers :func:`_stop_on_signals` replaced."""
    for sig, previous in received["previous"].items():
        signal.signal(sig, previous)


def _progress(total: int, quiet: bool):
    """A tqdm bar on stderr for more than one image (None when quiet or not a terminal)."""
    if quiet or total < 2:
        return None
    from tqdm import tqdm

    bar = tqdm(total=total, unit="img", file=sys.stderr, dynamic_ncols=True, disable=None)
    return None if bar.disable else bar


if __name__ == "__main__":
    sys.exit(main())
