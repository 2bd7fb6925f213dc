"""``rmpe-bench soak``: does a long rmpe-run grow? Resident memory at the start, middle and end.

The pipeline of ``rmpe-run`` (decoding threads, batching, pose NMS, the journalled results writer)
runs in this process over a data set's images again and again under new names until ``--images``
are done, with the set's detections as boxes; resident memory (VmRSS) is read after the model is
loaded, at every tenth of the run and at the end. A run that holds nothing per image stays flat.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

PROG = "rmpe-bench soak"


def rss_mb() -> float:
    """This process's resident memory now, in MB (Linux /proc; 0 where it is not available)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run(args: argparse.Namespace) -> int:
    """Run the pipeline over ``--images`` images and print the memory table."""
    from rmpe.benchmarks.ap import InputError, read_data_set
    from rmpe.benchmarks.pipeline import run_pipeline
    from rmpe.runtime.backends import BackendError
    from rmpe.runtime.estimator import PoseEstimator

    if args.images < 10:
        print(f"{PROG}: error: --images must be at least 10", file=sys.stderr)
        return 2
    try:
        data = read_data_set(args.data, None)
    except InputError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    samples: list[tuple[int, float]] = []
    try:
        estimator = PoseEstimator(args.model)
    except (BackendError, ValueError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2

    def sample(done: int) -> None:
        if done % max(1, args.images // 10) == 0:
            samples.append((done, rss_mb()))

    with estimator, tempfile.TemporaryDirectory(prefix="rmpe-soak-") as tmp:
        samples.append((0, rss_mb()))
        start = time.perf_counter()
        stats = run_pipeline(estimator, data, args.images, args.batch, Path(tmp), sample)
        seconds = time.perf_counter() - start
        samples.append((stats.images, rss_mb()))
    middle = min(samples, key=lambda s: abs(s[0] - args.images / 2))
    first_tenth = samples[1] if len(samples) > 2 else samples[0]
    print(f"{stats.images} images ({len(data.files)} distinct, {stats.people} people) in {seconds:.1f} s; "
          f"resident memory in MB:\n")
    print("| after model load | after 10 % | middle | end | end ÷ after 10 % |")
    print("|---:|---:|---:|---:|---:|")
    print(f"| {samples[0][1]:.0f} | {first_tenth[1]:.0f} | {middle[1]:.0f} | {samples[-1][1]:.0f} | "
          f"{samples[-1][1] / max(first_tenth[1], 1e-9):.2f} |")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``soak`` subcommand."""
    parser = sub.add_parser("soak", help="resident memory over a long rmpe-run pipeline (start, middle, end)",
                            description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="exported model (.onnx)")
    parser.add_argument("--data", type=Path, required=True, metavar="DIR", help="a data set written by rmpe-data synth")
    parser.add_argument("--images", type=int, default=2000, help="images to run, cycling through the set (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=16, help="most boxes per graph call (default: %(default)s)")
    parser.set_defaults(func=run)
