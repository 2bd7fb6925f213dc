"""``rmpe-bench pipeline``: images/s of ``rmpe-run``'s pipeline and the share of its wall time outside the graph.

The pipeline of ``rmpe-run`` (decoding threads, batching, the graph, pose NMS, the journalled COCO
results writer) runs in this process over a data set's images, cycled under new names until
``--images`` are done, with the set's detections as boxes, once per ``--batch``. Its own stage
clock (``RunStats``) gives the seconds of each stage; everything but the graph call is overhead
that ONNX Runtime cannot make faster, and the command fails (exit status 1) when its share of the
wall time is above ``--max-share`` (10 %) at any batch.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rmpe.benchmarks.ap import DataSet
    from rmpe.runtime.estimator import PoseEstimator, Poses
    from rmpe.runtime.images import InputItem
    from rmpe.runtime.pipeline import RunStats

PROG = "rmpe-bench pipeline"
STAGES = ("decode_wait", "boxes", "graph", "nms", "write")


def run_pipeline(estimator: PoseEstimator, data: DataSet, images: int, batch: int, folder: Path,
                 on_image: Callable[[int], None] | None = None) -> RunStats:
    """rmpe-run's pipeline over ``images`` images cycled from ``data`` (the set's detections as boxes),
    results journalled into ``folder``; ``on_image(done)`` after each image."""
    from rmpe.runtime.boxes import DetectionFile, to_image_pixels
    from rmpe.runtime.images import InputItem
    from rmpe.runtime.pipeline import Pipeline
    from rmpe.runtime.writers import JsonWriter

    detections = DetectionFile(data.detections)
    files = {path.name: image_id for path, image_id in zip(data.files, data.ids)}
    items = [InputItem(data.files[i % len(data.files)], f"{i}/{data.files[i % len(data.files)].name}") for i in range(images)]
    ids = [files[item.path.name] for item in items]
    writer = JsonWriter(folder / "results.json", [item.name for item in items])
    done = 0

    def sink(index: int, item: InputItem, image, poses: Poses) -> None:
        nonlocal done
        writer.add(item.name, ids[index], poses)
        done += 1
        if on_image is not None:
            on_image(done)

    def source(item: InputItem, image_id, image):
        return to_image_pixels(detections.lookup(item.path.name, image_id), image)

    stats = Pipeline(estimator, source, [sink], batch=batch).run(items, ids, on_failure=lambda item, why: None)
    writer.close()
    return stats


def outside_share(stats: RunStats) -> float:
    """The fraction of the wall time not spent in graph calls."""
    return max(0.0, stats.wall - stats.seconds["graph"]) / stats.wall if stats.wall > 0 else 0.0


def markdown(results: list[tuple[int, RunStats]], limit: float) -> str:
    """One row per batch: images/s, seconds per stage, the share outside the graph and the verdict."""
    lines = ["| batch | images | people | images/s | decode wait s | boxes s | graph s | nms s | write s | "
             "decode (threads) s | outside the graph | ≤ limit |", "|---:|---:|---:|---:|" + "---:|" * 8]
    for batch, s in results:
        share = outside_share(s)
        stages = " | ".join(f"{s.seconds[k]:.2f}" for k in STAGES)
        lines.append(f"| {batch} | {s.images} | {s.people} | {s.images / s.wall:.2f} | {stages} | {s.seconds['decode']:.2f} | "
                     f"{100 * share:.1f} % | {'yes' if share <= limit else 'NO'} |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run the pipeline once per batch size, print the table, write JSON, and fail above the limit."""
    from rmpe.benchmarks.ap import InputError, read_data_set
    from rmpe.benchmarks.parity import synthetic_data_set
    from rmpe.runtime.backends import BackendError
    from rmpe.runtime.estimator import PoseEstimator

    if args.images < 1 or min(args.batch) < 1:
        print(f"{PROG}: error: --images and --batch must be at least 1", file=sys.stderr)
        return 2
    results = []
    with tempfile.TemporaryDirectory(prefix="rmpe-bench-pipeline-") as tmp:
        try:
            data = read_data_set(args.data, None) if args.data else synthetic_data_set(Path(tmp) / "val", args.synth_images, 99)
            estimator = PoseEstimator(args.model, threads=args.threads)
        except (InputError, BackendError, ValueError) as exc:
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            return 2
        with estimator:
            for batch in args.batch:
                folder = Path(tmp) / f"batch{batch}"
                folder.mkdir()
                results.append((batch, run_pipeline(estimator, data, args.images, batch, folder)))
    print(f"{args.model}: {args.images} images from {args.data or 'a synthetic set'}, {args.threads} threads\n")
    print(markdown(results, args.max_share))
    if args.out_json:
        rows = [{"batch": b, "images": s.images, "people": s.people, "wall_s": s.wall, "seconds": s.seconds,
                 "images_per_s": s.images / s.wall, "outside_graph": outside_share(s)} for b, s in results]
        args.out_json.write_text(json.dumps({"model": str(args.model), "limit": args.max_share, "rows": rows}, indent=2) + "\n")
    over = [(b, outside_share(s)) for b, s in results if outside_share(s) > args.max_share]
    for batch, share in over:
        print(f"{PROG}: failed: at batch {batch}, {100 * share:.1f} % of the wall time is outside the graph "
              f"(limit {100 * args.max_share:.0f} %)", file=sys.stderr)
    return 1 if over else 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``pipeline`` subcommand."""
    parser = sub.add_parser("pipeline", help="images/s of rmpe-run's pipeline, time per stage, share outside the graph",
                            description=__doc__.split("\n\n")[1])
    parser.add_argument("model", type=Path, help="exported model (.onnx)")
    parser.add_argument("--data", type=Path, metavar="DIR", help="a data set written by rmpe-data synth (default: 20 synthetic images)")
    parser.add_argument("--synth-images", type=int, default=20, help=argparse.SUPPRESS)
    parser.add_argument("--images", type=int, default=100, help="images to run, cycling through the set (default: %(default)s)")
    parser.add_argument("--batch", type=lambda t: [int(v) for v in t.split(",")], default=[1, 8, 32], metavar="N,...",
                        help="rmpe-run --batch values, one run each (default: 1,8,32)")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads (default: %(default)s)")
    parser.add_argument("--max-share", type=float, default=0.10,
                        help="largest allowed share of wall time outside the graph (default: %(default)s)")
    parser.add_argument("--out-json", type=Path, metavar="FILE", help="write the rows here")
    parser.set_defaults(func=run)
