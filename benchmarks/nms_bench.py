"""``rmpe-bench nms``: time per image of the numpy pose NMS against the per-pair reference loop.

Both run in the same process on the same simulated scenes (people 20–800 px with 1–6 duplicate
candidates each, 2 % jitter), after one warm-up call each; the table gives the median and p90
per image and the ratio of medians.
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import numpy as np

from rmpe.benchmarks.nms_baseline import pose_nms_loop
from rmpe.benchmarks.nms_scenes import candidates, make_scene
from rmpe.runtime.pose_nms import pose_nms

Inputs = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def scene_with(n: int, rng: np.random.Generator) -> Inputs:
    """NMS inputs of exactly ``n`` candidates (duplicates of about n / 3.5 people)."""
    scene = make_scene(rng, n // 3 + 1)
    return tuple(a[:n] for a in candidates(scene))  # type: ignore[return-value]


def per_image_ms(fn: Callable[..., object], scenes: list[Inputs], repeat: int = 1, **kwargs: object) -> np.ndarray:
    """Milliseconds per call of ``fn`` on each scene (fastest of ``repeat`` rounds), after one warm-up call.

    Rounds go over all scenes in turn, so a burst of load on a shared machine hits one round of a
    scene rather than all of them; the fastest round is the usual timeit estimate of the cost.
    """
    fn(*scenes[0], **kwargs)
    times = np.empty((repeat, len(scenes)))
    for r in range(repeat):
        for i, args in enumerate(scenes):
            start = time.perf_counter()
            fn(*args, **kwargs)
            times[r, i] = time.perf_counter() - start
    return 1e3 * times.min(axis=0)


def run(args: argparse.Namespace) -> int:
    """Print the Markdown table of ours vs the reference loop for each candidate count."""
    rng = np.random.default_rng(args.seed)
    print("| candidates | images | ours alphapose p50 / p90 (ms) | reference loop p50 / p90 (ms) "
          "| speed-up (p50) | ours rmpe p50 / p90 (ms) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n, images in ((10, args.images * 4), (100, args.images), (1000, max(args.images // 6, 2))):
        scenes = [scene_with(n, rng) for _ in range(images)]
        repeat = args.repeat if n < 1000 else 1  # the 1000-candidate loop takes seconds per call
        ours = per_image_ms(pose_nms, scenes, repeat)
        loop = per_image_ms(pose_nms_loop, scenes, repeat)
        rmpe = per_image_ms(pose_nms, scenes, repeat, mode="rmpe")
        fmt = lambda t: f"{np.median(t):.3f} / {np.percentile(t, 90):.3f}"  # noqa: E731
        print(f"| {n} | {images} | {fmt(ours)} | {fmt(loop)} | "
              f"{np.median(loop) / np.median(ours):.0f}× | {fmt(rmpe)} |", flush=True)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``nms`` subcommand."""
    parser = sub.add_parser("nms", help="pose NMS time per image: numpy vs the per-pair loop")
    parser.add_argument("--images", type=int, default=30, help="scenes per size (x4 for 10, /6 for 1000)")
    parser.add_argument("--repeat", type=int, default=5,
                        help="time each scene this many rounds and keep its fastest (default: %(default)s; not for 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=run)
