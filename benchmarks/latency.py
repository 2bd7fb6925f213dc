"""``rmpe-bench latency``: the deploy graph's latency in PyTorch eager (the baseline) and every export.

The same inputs (one random image per size, ``persons`` copies of one person box) go through
PyTorch eager, ONNX Runtime fp32 / fp16 / int8 and, where this machine has them, ONNX Runtime's
CUDA and TensorRT providers; every backend gets the same intra-op thread count, and none of their
thread pools spin when idle (PyTorch's OpenMP through ``OMP_WAIT_POLICY=PASSIVE`` set before
torch is imported, ONNX Runtime through ``session.intra_op.allow_spinning=0``), because the runs
are interleaved (A B C A B C …) and a spinning idle pool would slow the next backend. After a
warm-up, rounds run in blocks until every median moved less than ``--tolerance`` in the last
block. A 2048² fp32 matrix product (torch.mm on the same threads) runs in every round too, so
achieved GFLOP/s (FLOPs of the PyTorch graph by torch.utils.flop_counter, two per multiply-add)
can be put against this machine's matmul rate under the same load. The speed ratio to PyTorch is
the median over rounds of each round's PyTorch time over the backend's time in that round.
Peak memory is each backend's own: a fresh process loads it alone and runs the largest case.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rmpe.benchmarks.image_size_latency import Case, counts, cpu_line, feeds, sizes
from rmpe.benchmarks.variants import VariantError, add_model_arguments, export_variants, given_models, load_reference

PROG = "rmpe-bench latency"
MATMUL_N = 2048
TORCH = "pytorch eager"
MATMUL = "fp32 matmul"


@dataclass(frozen=True)
class Spec:
    """A backend to time: its label, kind ('torch', 'ort', 'trt') and what it needs to be opened in any process."""

    label: str
    kind: str
    path: str = ""  # .onnx for ort, .plan for trt
    provider: str = "CPUExecutionProvider"
    checkpoint: str = ""  # torch: the checkpoint ('' for the bundled one) and config
    config: str = ""
    flip: bool = False


@dataclass
class Row:
    """One backend × case: latency percentiles, throughput, FLOP rate and ratios."""

    backend: str
    width: int
    height: int
    persons: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    persons_per_s: float
    gflop: float
    gflop_per_s: float
    of_matmul: float
    vs_pytorch: float
    peak_mb: float | None


def passive_omp() -> str:
    """Make PyTorch's OpenMP threads sleep when idle; says how (or why it could not)."""
    if "torch" in sys.modules and os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE":
        return "OMP_WAIT_POLICY could not be set: torch was imported before this benchmark started (its threads may spin)"
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return "PyTorch: OMP_WAIT_POLICY=PASSIVE set in the environment before torch was imported (OpenMP threads sleep when idle)"


def open_runner(spec: Spec, threads: int) -> Callable[[dict[str, np.ndarray]], object]:
    """A function running one call of ``spec``'s backend on graph inputs."""
    if spec.kind == "torch":
        import torch

        from rmpe.benchmarks.variants import load_reference

        torch.set_num_threads(threads)
        graph, _ = load_reference(Path(spec.checkpoint) if spec.checkpoint else None,
                                  Path(spec.config) if spec.config else None, spec.flip)

        def run_torch(feed: dict[str, np.ndarray]) -> object:
            with torch.inference_mode():
                return graph(*(torch.from_numpy(v) for v in feed.values()))
        return run_torch
    if spec.kind == "trt":
        from rmpe.runtime.tensorrt_backend import TensorRTBackend

        return TensorRTBackend(Path(spec.path)).run
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    session = ort.InferenceSession(spec.path, options, providers=list(dict.fromkeys([spec.provider, "CPUExecutionProvider"])))
    return lambda feed: session.run(None, feed)


def graph_feeds(case: Case) -> dict[str, np.ndarray]:
    """The four graph inputs of ``case`` in the contract's order."""
    return feeds(["images", "image_sizes", "boxes", "box_image_index"], case)


def graph_flops(spec: Spec, cases: list[Case]) -> dict[Case, float]:
    """FLOPs of one call of the PyTorch graph per case (torch.utils.flop_counter; a multiply-add is 2)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    graph, _ = load_reference(Path(spec.checkpoint) if spec.checkpoint else None,
                              Path(spec.config) if spec.config else None, spec.flip)
    result = {}
    for case in cases:
        counter = FlopCounterMode(display=False)
        with counter, torch.inference_mode():
            graph(*(torch.from_numpy(v) for v in graph_feeds(case).values()))
        result[case] = float(counter.get_total_flops())
    return result


def matmul_runner(threads: int) -> Callable[[], object]:
    """One 2048² fp32 torch.mm on ``threads`` threads: this machine's matrix-product rate in the same run."""
    import torch

    torch.set_num_threads(threads)
    a = torch.randn(MATMUL_N, MATMUL_N, generator=torch.Generator().manual_seed(0))
    b = torch.randn(MATMUL_N, MATMUL_N, generator=torch.Generator().manual_seed(1))
    return lambda: torch.mm(a, b)


def measure(specs: list[Spec], cases: list[Case], threads: int, block: int, max_rounds: int,
            tolerance: float) -> tuple[dict[tuple[str, Case], list[float]], list[float], int]:
    """Interleaved rounds until stable: seconds per (backend, case) per round, matmul seconds per round, rounds."""
    runners = {s.label: open_runner(s, threads) for s in specs}
    matmul = matmul_runner(threads)
    inputs = {c: graph_feeds(c) for c in cases}
    for label, run in runners.items():  # warm-up: first calls allocate and pick kernels
        for case in cases:
            run(inputs[case])
            run(inputs[case])
    matmul()
    times: dict[tuple[str, Case], list[float]] = {(s.label, c): [] for s in specs for c in cases}
    mm: list[float] = []
    previous: dict[tuple[str, Case], float] | None = None
    rounds = 0
    while rounds < max_rounds:
        for _ in range(block):
            for case in cases:
                for label, run in runners.items():
                    start = time.perf_counter()
                    run(inputs[case])
                    times[(label, case)].append(time.perf_counter() - start)
            start = time.perf_counter()
            matmul()
            mm.append(time.perf_counter() - start)
            rounds += 1
        medians = {k: float(np.median(v)) for k, v in times.items()}
        if previous is not None and all(abs(medians[k] - previous[k]) <= tolerance * previous[k] for k in medians):
            break
        previous = medians
    return times, mm, rounds


def _peak_child(spec: Spec, case: Case, threads: int, queue: multiprocessing.Queue) -> None:
    if spec.kind == "torch":
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    run = open_runner(spec, threads)
    feed = graph_feeds(case)
    for _ in range(3):
        run(feed)
    queue.put(high_water_mb())


def high_water_mb() -> float:
    """This process's peak resident MB (VmHWM: unlike ru_maxrss, not inherited from the parent across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_memory(spec: Spec, case: Case, threads: int) -> float | None:
    """Peak resident MB of a fresh process that opens only ``spec`` and runs ``case`` three times."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_peak_child, args=(spec, case, threads, queue))
    child.start()
    try:
        value = queue.get(timeout=600)
    except Exception:  # the child died: no figure rather than a wrong one
        value = None
    child.join()
    return value


def rows_for(specs: list[Spec], cases: list[Case], times: dict[tuple[str, Case], list[float]], mm: list[float],
             flops: dict[Case, float], peaks: dict[str, float | None]) -> list[Row]:
    """The table rows: percentiles, persons/s, GFLOP/s, share of the matmul rate, paired ratio to PyTorch."""
    matmul_rate = 2 * MATMUL_N ** 3 / float(np.median(mm))
    rows = []
    for spec in specs:
        for case in cases:
            t = np.asarray(times[(spec.label, case)])
            p50, p90, p99 = (float(np.percentile(t, q)) for q in (50, 90, 99))
            base = np.asarray(times[(specs[0].label, case)])
            rows.append(Row(spec.label, case.width, case.height, case.persons, p50 * 1e3, p90 * 1e3, p99 * 1e3,
                            case.persons / p50, flops[case] / 1e9, flops[case] / p50 / 1e9,
                            flops[case] / p50 / matmul_rate, float(np.median(base / t)), peaks.get(spec.label)))
    return rows


def markdown(rows: list[Row], matmul_gflops: float) -> str:
    """The Markdown table, one row per backend × image size × persons per call."""
    lines = ["| backend | image | persons | p50 ms | p90 ms | p99 ms | persons/s | GFLOP/s | × matmul rate | "
             "× PyTorch (paired) | peak MB |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        peak = f"{r.peak_mb:.0f}" if r.peak_mb is not None else "–"
        lines.append(f"| {r.backend} | {r.width}×{r.height} | {r.persons} | {r.p50_ms:.1f} | {r.p90_ms:.1f} | "
                     f"{r.p99_ms:.1f} | {r.persons_per_s:.1f} | {r.gflop_per_s:.1f} | {r.of_matmul:.2f} | "
                     f"{r.vs_pytorch:.2f} | {peak} |")
    lines.append(f"\n{MATMUL} ({MATMUL_N}², torch.mm, same threads, same rounds): {matmul_gflops:.1f} GFLOP/s")
    return "\n".join(lines)


def plot(rows: list[Row], path: Path) -> None:
    """Latency (p50 ms) against persons per call, one line per backend, one panel per image size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = sorted({(r.width, r.height) for r in rows})
    fig, axes = plt.subplots(1, len(images), figsize=(5 * len(images), 4), squeeze=False)
    for ax, (w, h) in zip(axes[0], images):
        for backend in dict.fromkeys(r.backend for r in rows):
            mine = sorted((r.persons, r.p50_ms) for r in rows if r.backend == backend and (r.width, r.height) == (w, h))
            ax.plot([m[0] for m in mine], [m[1] for m in mine], marker="o", label=backend)
        ax.set(title=f"{w}×{h}", xlabel="persons per call", ylabel="p50 latency (ms)", xscale="log", yscale="log")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def device_specs(variants: list, skipped: list[str]) -> list[Spec]:
    """ONNX Runtime CUDA / TensorRT provider runs of the fp32 export where this onnxruntime has them."""
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    fp32 = next((v for v in variants if v.label.endswith("fp32")), variants[0] if variants else None)
    specs = []
    for provider, label in (("CUDAExecutionProvider", "onnxruntime cuda fp32"), ("TensorrtExecutionProvider", "onnxruntime tensorrt fp32")):
        if provider in available and fp32 is not None:
            specs.append(Spec(label, "ort", str(fp32.path), provider))
        else:
            skipped.append(f"{label}: skipped ({provider} not in this onnxruntime: {', '.join(sorted(available))})")
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        skipped.append("tensorrt engines: skipped (no tensorrt module on this machine)")
    return specs


def model_spec(variant) -> Spec:
    """A variant's spec: a TensorRT engine (rmpe-export --engine) or an ONNX file for ONNX Runtime."""
    return Spec(variant.label, "trt" if variant.engine else "ort", str(variant.path))


def run(args: argparse.Namespace) -> int:
    """Measure every backend, print the table and write the JSON and PNG files."""
    how = passive_omp()
    for name in ("out_json", "out_png"):
        target = getattr(args, name)
        if target is not None and not target.parent.is_dir():
            print(f"{PROG}: error: --{name.replace('_', '-')} {target}: no folder {target.parent}", file=sys.stderr)
            return 2
    if args.threads < 1 or args.block < 1 or args.max_rounds < args.block:
        print(f"{PROG}: error: --threads and --block must be at least 1 and --max-rounds at least --block", file=sys.stderr)
        return 2
    cases = [Case(h, w, n) for h, w in args.image_size for n in args.batch]
    torch_spec = Spec(TORCH, "torch", checkpoint=str(args.checkpoint or ""), config=str(args.config or ""), flip=args.flip)
    skipped: list[str] = []
    with tempfile.TemporaryDirectory(prefix="rmpe-bench-latency-") as tmp:
        try:
            graph, sha = load_reference(args.checkpoint, args.config, args.flip)
            variants = export_variants(graph, sha, args.variants, args.export_dir or Path(tmp), args.calib)
            variants += given_models(args.models)
        except VariantError as exc:
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            return 2
        if engines := [v.path for v in variants if v.engine]:
            from rmpe.runtime.backends import BackendError
            from rmpe.runtime.tensorrt_backend import import_tensorrt

            try:
                import_tensorrt(engines[0])
            except BackendError as exc:
                print(f"{PROG}: error: {exc}", file=sys.stderr)
                return 2
        specs = [torch_spec] + [model_spec(v) for v in variants] + device_specs([v for v in variants if not v.engine], skipped)
        flops = graph_flops(torch_spec, cases)
        times, mm, rounds = measure(specs, cases, args.threads, args.block, args.max_rounds, args.tolerance)
        largest = max(cases, key=lambda c: (c.persons, c.height * c.width))
        peaks = {s.label: peak_memory(s, largest, args.threads) for s in specs} if args.memory else {}
    rows = rows_for(specs, cases, times, mm, flops, peaks)
    matmul_gflops = 2 * MATMUL_N ** 3 / float(np.median(mm)) / 1e9
    import onnxruntime as ort
    import torch

    header = (f"CPU: {cpu_line()}; {os.cpu_count()} logical cores; {args.threads} threads for every backend "
              f"(ONNX Runtime without spin-waiting); {how}; torch {torch.__version__}, onnxruntime {ort.__version__}; "
              f"{rounds} interleaved rounds (stable to {100 * args.tolerance:.0f}% or --max-rounds), "
              f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(header + "\n")
    print(markdown(rows, matmul_gflops))
    for line in skipped:
        print(line)
    if args.out_json:
        payload = {"machine": header, "rounds": rounds, "matmul_gflop_per_s": matmul_gflops, "skipped": skipped,
                   "rows": [asdict(r) for r in rows]}
        args.out_json.write_text(json.dumps(payload, indent=2) + "\n")
    if args.out_png:
        plot(rows, args.out_png)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``latency`` subcommand."""
    parser = sub.add_parser("latency", help="latency of PyTorch eager and every export, interleaved, ratios per round",
                            description=__doc__.split("\n\n")[1])
    add_model_arguments(parser)
    parser.add_argument("--batch", type=counts, default=[1, 8, 32], metavar="N,...", help="persons per call (default: 1,8,32)")
    parser.add_argument("--image-size", type=sizes, default=sizes("640x480"), metavar="WxH,...",
                        help="image sizes, e.g. 640x480,1920x1080,3840x2160 (default: 640x480)")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads of every backend (default: %(default)s)")
    parser.add_argument("--block", type=int, default=5, help="rounds between stability checks (default: %(default)s)")
    parser.add_argument("--max-rounds", type=int, default=40, help="most timed rounds (default: %(default)s)")
    parser.add_argument("--tolerance", type=float, default=0.03,
                        help="stop when no median moved more than this fraction in a block (default: %(default)s)")
    parser.add_argument("--no-memory", dest="memory", action="store_false",
                        help="skip the peak-memory runs (one fresh process per backend)")
    parser.add_argument("--out-json", type=Path, metavar="FILE", help="write the rows and the machine here")
    parser.add_argument("--out-png", type=Path, metavar="FILE", help="plot latency against persons per call here")
    parser.set_defaults(func=run)
