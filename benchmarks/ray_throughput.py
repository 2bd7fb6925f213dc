"""``rmpe-bench ray``: images/s of ``rmpe-run --ray`` with 1 and 2 workers against the plain pipeline.

All runs take the same synthetic images (``rmpe-data synth``) and their simulated detections, and
go through ``rmpe-run`` itself, in this process, one after another: the single-process pipeline
with 1 ONNX Runtime thread and with one thread per core (the baseline), then Ray Data with 1 and
with 2 actors of one thread each on a local Ray instance started once beforehand (its start-up is
reported apart and not in any rate). Each configuration runs ``--repeats`` times, the median wall
time counts; a Ray run's time includes starting its actors and loading the model in each.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rmpe.benchmarks.image_size_latency import cpu_line

PROG = "rmpe-bench ray"


def _timed_run(argv: list[str]) -> float:
    """Seconds of one in-process rmpe-run (exit status checked)."""
    from rmpe.runtime.cli import main as run_main

    start = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()) as err:
        code = run_main(argv)
    if code != 0:
        raise RuntimeError(f"rmpe-run {' '.join(argv)} failed ({code}): {err.getvalue().strip()[-300:]}")
    return time.perf_counter() - start


def run(args: argparse.Namespace) -> int:
    """Make the images, time each configuration, print the table."""
    from rmpe.runtime.ray import RayError, start
    from rmpe.training.synth import write_dataset

    cores = os.cpu_count() or 1
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="rmpe-ray-bench-") as tmp:
        data = Path(tmp) / "data"
        write_dataset(str(data), args.images, args.seed, progress=False)
        base = [str(args.model), str(data / "images"), "--boxes", str(data / "detections.json"), "--quiet"]
        t0 = time.perf_counter()
        try:
            ray = start("local", 1)
        except RayError as exc:
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            return 2
        startup = time.perf_counter() - t0
        configs = {"pipeline, 1 thread": ["--threads", "1"],
                   f"pipeline, {cores} threads (baseline)": ["--threads", str(cores)],
                   "Ray, 1 worker x 1 thread": ["--ray", "--ray-workers", "1", "--threads", "1"],
                   "Ray, 2 workers x 1 thread": ["--ray", "--ray-workers", "2", "--threads", "1"]}
        times: dict[str, float] = {}
        for label, extra in configs.items():
            runs = [_timed_run([*base, *extra, "--out", str(Path(tmp) / f"r{i}.json")]) for i in range(args.repeats)]
            times[label] = statistics.median(runs)
        ray.shutdown()
    print(f"{args.images} synthetic images (seed {args.seed}), {args.repeats} runs each, median; {cores} cores "
          f"({cpu_line()}), load average {load:.2f} before the runs; "
          f"Ray local start-up {startup:.1f} s (not counted)\n")
    print("| configuration | seconds | images/s | vs baseline |")
    print("|---|---:|---:|---:|")
    baseline = times[f"pipeline, {cores} threads (baseline)"]
    for label, seconds in times.items():
        print(f"| {label} | {seconds:.2f} | {args.images / seconds:.1f} | {baseline / seconds:.2f}x |")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``ray`` subcommand."""
    parser = sub.add_parser("ray", help="images/s of rmpe-run --ray (1 and 2 workers) vs the plain pipeline",
                            description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="exported model (.onnx)")
    parser.add_argument("--images", type=int, default=96, help="synthetic images (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=20261205, help="data set seed (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per configuration (default: %(default)s)")
    parser.set_defaults(func=run)
