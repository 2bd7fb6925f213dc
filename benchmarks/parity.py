"""``rmpe-bench parity``: does an exported variant keep PyTorch's accuracy? COCO keypoint AP per backend, gated.

One data set goes through the PyTorch graph of a checkpoint and through each exported variant by
the same steps as ``rmpe-run``: the data set's detections cleaned as rmpe-run cleans them
(``--box-thr``), the graph called on at most ``--batch`` boxes at a time, the model's pose NMS
(its metadata's mode and constants), COCO results scored by pycocotools with the layout's OKS
sigmas. Every backend sees the same boxes, so besides AP/AP50/AP75/AR and ΔAP against PyTorch the
keypoints of every box are compared one to one with PyTorch's (median, p99 and max, in pixels
and in OKS units, export/oks.py). A gate per precision (``--gate fp32=0.001`` …) fails the command
(exit status 1, naming the backend and gate) when |ΔAP| is above it.

The data set is a synthetic one made in a temporary folder by default (``rmpe-data synth``'s
renderer, ``--images``, ``--seed``), a folder written by ``rmpe-data synth`` with ``--data``, or
real COCO with ``--coco-ann``, ``--coco-images`` and ``--detfile`` (README: COCO val2017).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rmpe.benchmarks.ap import DataSet, InputError, evaluate, read_data_set
from rmpe.benchmarks.variants import VariantError, add_model_arguments, export_variants, given_models, load_reference

if TYPE_CHECKING:
    from rmpe.export.graph import PoseGraph

PROG = "rmpe-bench parity"
TORCH = "pytorch fp32"
DEFAULT_GATES = {"fp32": 0.001, "fp16": 0.005, "int8": 0.01}
BOX_THRESHOLD = 0.05  # rmpe-run's --box-thr default


@dataclass
class Row:
    """One backend: its COCO stats, ΔAP to PyTorch and keypoint differences to PyTorch's on the same boxes."""

    backend: str
    precision: str
    stats: dict[str, float]
    delta_ap: float = 0.0
    px: dict[str, float] = field(default_factory=dict)
    oks: dict[str, float] = field(default_factory=dict)
    gate: float | None = None

    @property
    def passed(self) -> bool:
        """Whether |ΔAP| is within the gate (always, without a gate)."""
        return self.gate is None or abs(self.delta_ap) <= self.gate


def parse_gate(text: str) -> tuple[str, float]:
    """'int8=0.01' → ('int8', 0.01)."""
    name, _, value = text.partition("=")
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected PRECISION=|ΔAP| such as int8=0.01, got {text!r}") from None
    if name not in DEFAULT_GATES or number < 0:
        raise argparse.ArgumentTypeError(f"gate {text!r}: precision one of {', '.join(DEFAULT_GATES)}, |ΔAP| at least 0")
    return name, number


def coco_data_set(annotations: Path, images: Path, detections: Path, limit: int | None) -> DataSet:
    """COCO's keypoint annotations, its image folder and a person detection file as a :class:`DataSet`."""
    for path, what in ((annotations, "--coco-ann"), (images, "--coco-images"), (detections, "--detfile")):
        if not path.exists():
            raise InputError(f"{what} {path}: not found")
    try:
        gt = json.loads(annotations.read_text())
        wanted = {a["image_id"] for a in gt["annotations"]}
        listed = sorted((int(i["id"]), i["file_name"]) for i in gt["images"] if i["id"] in wanted)
        num_keypoints = len(gt["categories"][0]["keypoints"])
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise InputError(f"--coco-ann {annotations}: not a COCO keypoint annotation file ({exc.__class__.__name__})") from None
    listed = listed[:limit] if limit else listed
    files = [images / Path(name).name for _, name in listed]
    absent = [str(f) for f in files if not f.is_file()]
    if absent:
        raise InputError(f"--coco-images {images}: {len(absent)} annotated images missing, first {absent[0]}")
    return DataSet(annotations, detections, files, [i for i, _ in listed], num_keypoints)


def synthetic_data_set(folder: Path, images: int, seed: int) -> DataSet:
    """A synthetic validation set (rmpe.training.synth) written into ``folder``."""
    try:
        from rmpe.training.synth import write_dataset
    except ImportError as exc:
        raise InputError(f"the synthetic set needs rmpe.training (pip install 'rmpe[train]'): {exc}") from None
    write_dataset(str(folder), images, seed, progress=False)
    return read_data_set(folder, None)


def torch_infer(graph: PoseGraph):
    """An ``infer(images, boxes)`` of the PyTorch graph taking the inputs PoseEstimator.infer makes."""
    import torch

    from rmpe.runtime.estimator import pad_images

    def infer(images: list[np.ndarray], boxes: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        counts = [len(b) for b in boxes]
        inputs = (pad_images(images), np.array([im.shape[:2] for im in images], np.int32),
                  np.concatenate([np.asarray(b, np.float32).reshape(-1, 4) for b in boxes]),
                  np.repeat(np.arange(len(images), dtype=np.int32), counts))
        with torch.inference_mode():
            k, s = graph(*(torch.from_numpy(np.require(v, requirements="W")) for v in inputs))
        return k.numpy(), s.numpy()
    return infer


def run_backend(infer, data: DataSet, nms: str, constants: dict, batch: int,
                num_keypoints: int) -> tuple[list[dict], np.ndarray, np.ndarray]:
    """COCO results of ``infer`` over ``data`` through rmpe-run's steps, with every box's raw keypoints and the boxes."""
    from rmpe.runtime.boxes import DetectionFile, clean_boxes, to_image_pixels
    from rmpe.runtime.estimator import infer_in_batches, select_poses
    from rmpe.runtime.images import load_image
    from rmpe.runtime.writers import coco_entries

    detections = DetectionFile(data.detections)
    results, raw, boxes = [], [], []

    def recording(images: list[np.ndarray], chunk: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        k, s = infer(images, chunk)
        raw.append(k)
        boxes.append(np.concatenate(chunk))
        return k, s

    for path, image_id in zip(data.files, data.ids):
        image = load_image(path)
        found = clean_boxes(to_image_pixels(detections.lookup(path.name, image_id), image), thr=BOX_THRESHOLD)
        if len(found) == 0:
            continue
        candidates = infer_in_batches(recording, [image], [found], batch, num_keypoints)[0]
        results += coco_entries(image_id, select_poses(*candidates, nms, constants))
    empty = np.zeros((0, num_keypoints, 2), np.float32)
    return results, np.concatenate(raw) if raw else empty, np.concatenate(boxes) if boxes else np.zeros((0, 4), np.float32)


def markdown(rows: list[Row]) -> str:
    """One row per backend: AP, AP50, AP75, AR, ΔAP, keypoint differences, gate."""
    lines = ["| backend | precision | AP | AP50 | AP75 | AR | ΔAP | keypoint Δ px median / p99 / max | "
             "in OKS units median / p99 / max | gate |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        s = r.stats
        px = f"{r.px['median']:.3f} / {r.px['p99']:.2f} / {r.px['max']:.1f}" if r.px else "–"
        oks = f"{r.oks['median']:.4f} / {r.oks['p99']:.3f} / {r.oks['max']:.2f}" if r.oks else "–"
        gate = "–" if r.gate is None else f"{'pass' if r.passed else 'FAIL'} (≤ {r.gate:g})"
        lines.append(f"| {r.backend} | {r.precision} | {s['AP']:.4f} | {s['AP50']:.4f} | {s['AP75']:.4f} | {s['AR']:.4f} | "
                     f"{r.delta_ap:+.4f} | {px} | {oks} | {gate} |")
    return "\n".join(lines)


def plot(rows: list[Row], errors: dict[str, np.ndarray], path: Path) -> None:
    """ΔAP per backend and the distribution (CDF) of per-keypoint differences to PyTorch in OKS units."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (bars, cdf) = plt.subplots(1, 2, figsize=(11, 4))
    others = [r for r in rows if r.backend != TORCH]
    bars.bar([r.backend for r in others], [r.delta_ap for r in others],
             color=["tab:green" if r.passed else "tab:red" for r in others])
    bars.axhline(0, color="black", lw=0.8)
    bars.set(ylabel="ΔAP against PyTorch", title="COCO keypoint AP")
    bars.tick_params(axis="x", labelrotation=20, labelsize=8)
    for label, values in errors.items():
        finite = np.sort(values[np.isfinite(values) & (values > 0)])
        if finite.size:
            cdf.plot(finite, np.arange(1, finite.size + 1) / values.size, label=label)
    cdf.set(xscale="log", xlabel="keypoint difference to PyTorch (OKS units)", ylabel="fraction of keypoints",
            title="per-keypoint differences")
    cdf.grid(True, which="both", alpha=0.3)
    cdf.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def compare(graph: PoseGraph, variants: list, data: DataSet, args: argparse.Namespace) -> tuple[list[Row], dict[str, np.ndarray]]:
    """Rows for PyTorch and every variant, and each variant's per-keypoint differences in OKS units."""
    from rmpe.export.oks import oks_units, spread
    from rmpe.runtime.estimator import PoseEstimator

    estimators = [PoseEstimator(v.path, nms=args.nms, threads=args.threads) for v in variants]
    try:
        first = estimators[0]
        sigmas = first.metadata.oks_sigmas
        k = first.metadata.num_keypoints
        if k != data.num_keypoints:
            raise InputError(f"the models have {k} keypoints, the data set {data.num_keypoints}")
        if sigmas is None:
            raise InputError("the model's layout has no OKS sigmas, so COCO keypoint AP cannot score it")
        results, reference, boxes = run_backend(torch_infer(graph), data, first.nms, first.nms_constants, args.batch, k)
        base = evaluate(results, data.annotations, data.ids, sigmas=sigmas)
        rows, errors = [Row(TORCH, "fp32", base)], {}
        for variant, est in zip(variants, estimators):
            if est.metadata.num_keypoints != k:
                raise InputError(f"{variant.path} has {est.metadata.num_keypoints} keypoints, the checkpoint {k}")
            results, keypoints, _ = run_backend(est.infer, data, est.nms, est.nms_constants, args.batch, k)
            stats = evaluate(results, data.annotations, data.ids, sigmas=sigmas)
            px = np.linalg.norm(keypoints - reference, axis=-1)
            oks = oks_units(px, boxes, sigmas)
            errors[variant.label] = oks.ravel()
            precision = est.metadata.precision
            rows.append(Row(variant.label, precision, stats, stats["AP"] - base["AP"], spread(px), spread(oks),
                            args.gates.get(precision)))
    finally:
        for est in estimators:
            est.close()
    return rows, errors


def run(args: argparse.Namespace) -> int:
    """Score PyTorch and every variant, print the table, write JSON/PNG, and apply the gates."""
    coco = [args.coco_ann, args.coco_images, args.detfile]
    try:
        if any(coco) and not all(coco):
            raise InputError("real COCO needs all three of --coco-ann, --coco-images and --detfile")
        if any(coco) and args.data:
            raise InputError("give either --data or --coco-ann/--coco-images/--detfile")
        for name in ("out_json", "out_png"):
            target = getattr(args, name)
            if target is not None and not target.parent.is_dir():
                raise InputError(f"--{name.replace('_', '-')} {target}: no folder {target.parent}")
        with tempfile.TemporaryDirectory(prefix="rmpe-bench-parity-") as tmp:
            if all(coco):
                data = coco_data_set(args.coco_ann, args.coco_images, args.detfile, args.limit)
            elif args.data:
                data = read_data_set(args.data, args.limit)
            else:
                data = synthetic_data_set(Path(tmp) / "val", args.images, args.seed)
            graph, sha = load_reference(args.checkpoint, args.config, args.flip)
            variants = export_variants(graph, sha, args.variants, args.export_dir or Path(tmp) / "models", args.calib)
            variants += given_models(args.models)
            if not variants:
                raise InputError("nothing to compare with PyTorch: give --variants or MODEL files")
            rows, errors = compare(graph, variants, data, args)
    except (InputError, VariantError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    source = f"COCO {args.coco_ann.name}" if all(coco) else (str(args.data) if args.data else
                                                              f"synthetic, seed {args.seed}")
    print(f"data: {source}, {len(data.ids)} images; boxes: the set's detections (score ≥ {BOX_THRESHOLD}); "
          f"pose NMS: the model's ({args.nms or 'metadata default'}); batch {args.batch}\n")
    print(markdown(rows))
    if args.out_json:
        args.out_json.write_text(json.dumps({"data": source, "images": len(data.ids), "gates": args.gates,
                                             "rows": [asdict(r) | {"passed": r.passed} for r in rows]}, indent=2) + "\n")
    if args.out_png:
        plot(rows, errors, args.out_png)
    failed = [r for r in rows if not r.passed]
    for r in failed:
        print(f"{PROG}: gate failed: {r.backend} ({r.precision}): |ΔAP| {abs(r.delta_ap):.4f} > {r.gate:g}", file=sys.stderr)
    return 1 if failed else 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``parity`` subcommand."""
    parser = sub.add_parser("parity", help="COCO keypoint AP of PyTorch and every export on one data set, ΔAP gated",
                            description=__doc__.split("\n\n")[1])
    add_model_arguments(parser)
    parser.add_argument("--data", type=Path, metavar="DIR", help="a data set written by rmpe-data synth")
    parser.add_argument("--coco-ann", type=Path, metavar="FILE", help="COCO person_keypoints_val2017.json")
    parser.add_argument("--coco-images", type=Path, metavar="DIR", help="COCO val2017 image folder")
    parser.add_argument("--detfile", type=Path, metavar="FILE", help="person detections (COCO results or AlphaPose detfile)")
    parser.add_argument("--images", type=int, default=100, help="synthetic set size (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=99, help="synthetic set seed (default: %(default)s)")
    parser.add_argument("--limit", type=int, metavar="N", help="first N images (by id) of --data or COCO")
    parser.add_argument("--nms", choices=("rmpe", "alphapose", "none"), help="pose NMS (default: the model's)")
    parser.add_argument("--batch", type=int, default=32, help="most boxes per graph call (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads (default: %(default)s)")
    parser.add_argument("--gate", dest="gate_list", type=parse_gate, action="append", default=[], metavar="PREC=DAP",
                        help="|ΔAP| allowed per precision, repeatable (defaults: fp32=0.001, fp16=0.005, int8=0.01)")
    parser.add_argument("--out-json", type=Path, metavar="FILE", help="write the rows here")
    parser.add_argument("--out-png", type=Path, metavar="FILE", help="plot ΔAP and keypoint differences here")
    parser.set_defaults(func=lambda a: run(with_gates(a)))


def with_gates(args: argparse.Namespace) -> argparse.Namespace:
    """``args.gates``: the defaults with every --gate applied."""
    args.gates = DEFAULT_GATES | dict(args.gate_list)
    return args
