"""What an image's size costs the deploy graph: latency by image size and persons per call.

    python -m rmpe.benchmarks.image_size_latency today.onnx new.onnx --image-size 640x480,3840x2160 --batch 1,8

Every model runs the same inputs (one random image, the same person box in it) in interleaved
rounds (A B A B …) after a warm-up, with equal ONNX Runtime threads that sleep rather than spin
when idle, so the machine's noise falls on all of them alike. Reported: the median ms of each model × size × persons, its ratio to the first
model, and its ratio to the smallest image (how much of the cost follows the image rather than its
boxes). The full ``rmpe-bench latency`` of issue 17 (PyTorch, TensorRT, plots) does not exist yet.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PROG = "python -m rmpe.benchmarks.image_size_latency"
BOX = (100.0, 50.0, 300.0, 450.0)  # one 200×400 px person, inside every image size


@dataclass(frozen=True)
class Case:
    """One input shape: image height, width and persons per call."""

    height: int
    width: int
    persons: int


def cpu_line() -> str:
    """The CPU model and its vector extensions, for the record (benchmarks depend on them)."""
    model, flags = platform.processor() or "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")
    return f"{model}; {' '.join(f for f in wanted if f in flags) or 'no AVX2'}"


def feeds(input_names: list[str], case: Case) -> dict[str, np.ndarray]:
    """The graph inputs of ``case``: a random image and ``persons`` copies of :data:`BOX`."""
    image = np.random.default_rng(0).integers(0, 256, (1, case.height, case.width, 3), np.uint8)
    values = {"images": image, "image_sizes": np.array([[case.height, case.width]], np.int32),
              "boxes": np.tile(np.array([BOX], np.float32), (case.persons, 1)),
              "box_image_index": np.zeros(case.persons, np.int32)}
    return {name: values[name] for name in input_names}  # models exported before image_sizes lack it


def measure(paths: list[Path], cases: list[Case], rounds: int, threads: int) -> dict[tuple[int, Case], float]:
    """Median seconds per (model index, case) over interleaved rounds, after one warm-up round."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    # Interleaving switches sessions every run: an idle session's spinning threads would slow the next one.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sessions = [ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"]) for p in paths]
    inputs = {(i, c): feeds([x.name for x in s.get_inputs()], c) for i, s in enumerate(sessions) for c in cases}
    times: dict[tuple[int, Case], list[float]] = {key: [] for key in inputs}
    for round_ in range(rounds + 1):
        for (i, case), feed in inputs.items():
            start = time.perf_counter()
            sessions[i].run(None, feed)
            if round_:
                times[(i, case)].append(time.perf_counter() - start)
    return {key: float(np.median(values)) for key, values in times.items()}


def table(paths: list[Path], cases: list[Case], medians: dict[tuple[int, Case], float]) -> str:
    """Markdown: one row per model × case, ms, ratio to the first model, ratio to the smallest image."""
    smallest = min((c.height * c.width, c.height, c.width) for c in cases)[1:]
    lines = ["| model | image | persons | median ms | × first model | × smallest image |", "|---|---|---:|---:|---:|---:|"]
    for i, path in enumerate(paths):
        for case in cases:
            ms = medians[(i, case)] * 1e3
            to_first = medians[(i, case)] / medians[(0, case)]
            to_small = medians[(i, case)] / medians[(i, Case(*smallest, case.persons))]
            lines.append(f"| {path} | {case.width}×{case.height} | {case.persons} | {ms:.1f} | {to_first:.2f} | {to_small:.2f} |")
    return "\n".join(lines)


def sizes(text: str) -> list[tuple[int, int]]:
    """'640x480,3840x2160' → [(480, 640), (2160, 3840)] as (height, width)."""
    try:
        pairs = [tuple(int(v) for v in item.lower().split("x")) for item in text.split(",")]
        result = [(h, w) for w, h in pairs]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH sizes such as 640x480,3840x2160, got {text!r}") from None
    if any(w < 320 or h < 480 for h, w in result):
        raise argparse.ArgumentTypeError(f"every size must be at least 320x480 so the 200x400 px person fits, got {text!r}")
    return result


def counts(text: str) -> list[int]:
    """'1,8' → [1, 8]."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected persons per call such as 1,8, got {text!r}") from None
    if min(values) < 1:
        raise argparse.ArgumentTypeError("persons per call must be at least 1")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", type=Path, help="exported .onnx models; ratios are to the first")
    parser.add_argument("--image-size", type=sizes, default=sizes("640x480,1920x1080,3840x2160"), metavar="WxH,...",
                        help="image sizes, each at least 320x480 so the 200x400 px person fits (default: 640x480,1920x1080,3840x2160)")
    parser.add_argument("--batch", type=counts, default=[1, 8], metavar="N,...", help="persons per call (default: 1,8)")
    parser.add_argument("--rounds", type=int, default=20, help="interleaved timed rounds (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads (default: %(default)s)")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.models if not p.is_file()]
    if missing:
        print(f"{PROG}: error: no such model: {', '.join(missing)}", file=sys.stderr)
        return 2
    cases = [Case(h, w, n) for n in args.batch for h, w in args.image_size]
    medians = measure(args.models, cases, args.rounds, args.threads)
    print(f"CPU: {cpu_line()}; {args.threads} threads (no spin-waiting), {args.rounds} interleaved rounds\n")
    print(table(args.models, cases, medians))
    return 0


if __name__ == "__main__":
    sys.exit(main())
