"""``rmpe-bench ap``: COCO keypoint AP (or MPII's PCKh@0.5) of exported models, run through ``rmpe-run`` itself.

Each model and pose NMS mode is one in-process ``rmpe-run`` call on a data set folder (``rmpe-data
synth``'s, or MPII's made by ``rmpe-bench mpii``) with the set's detections as boxes; its results file
is scored with pycocotools' COCOeval (iouType "keypoints", the OKS sigmas of the model's layout) when
the model's layout has OKS sigmas, and by PCKh@0.5 (``pckh.py``, the annotations' head boxes) when it
has none (MPII), so the figures are what a user of ``rmpe-run`` gets. images/s is images over the
wall time of that call, model loading included.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rmpe.benchmarks.pckh import COLUMNS as PCKH_COLUMNS
from rmpe.benchmarks.pckh import AnnotationError, evaluate_pckh, has_head_boxes
from rmpe.benchmarks.upscale import keypoint_shift, upscale_annotations, upscale_detections, upscale_images
from rmpe.runtime.estimator import NMS_MODES

if TYPE_CHECKING:
    from pycocotools.coco import COCO

PROG = "rmpe-bench ap"
STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
TABLE_STATS = {"AP": ("AP", "AP50", "AP75", "APm", "APl", "AR"), "PCKh": ("PCKh", *PCKH_COLUMNS)}


class InputError(ValueError):
    """Bad command-line input: reported as one line, exit status 2."""


@dataclass(frozen=True)
class DataSet:
    """A data set folder: annotation and detection files, its images in id order."""

    annotations: Path
    detections: Path
    files: list[Path]
    ids: list[int]
    num_keypoints: int
    head_boxes: bool = False  # every annotation has a head_box: PCKh can be computed


@dataclass(frozen=True)
class ModelInfo:
    """What the table says about a model, from its metadata."""

    path: str
    precision: str
    flip_test: bool
    trained: bool
    num_keypoints: int
    layout: str = ""
    oks_sigmas: list[float] | None = None  # None: scored by PCKh

    @property
    def metric(self) -> str:
        """How the model is scored: COCO keypoint AP with its layout's sigmas, or PCKh without sigmas."""
        return "AP" if self.oks_sigmas is not None else "PCKh"


@dataclass(frozen=True)
class Row:
    """One model × NMS mode: scores and speed."""

    model: str
    precision: str
    flip_test: bool
    trained: bool
    nms: str
    images: int
    seconds: float
    stats: dict[str, float]
    scale: int = 1  # the data set upscaled by this factor (--upscale)
    shift_px: dict[str, float] | None = None  # keypoint moves against the scale-1 run, in scale-1 pixels
    metric: str = "AP"  # "AP": stats are COCOeval's; "PCKh": pckh.evaluate_pckh's

    @property
    def images_per_s(self) -> float:
        """Images per second of the whole rmpe-run call."""
        return self.images / self.seconds if self.seconds > 0 else 0.0


def evaluate(results_json: str | Path | list[dict], annotations_json: str | Path | dict,
             image_ids: list[int] | None = None, verbose: bool = False,
             sigmas: list[float] | None = None) -> dict[str, float]:
    """COCO keypoint stats (AP … ARl) of results vs annotations, plus ``nonfinite`` (keypoints scored as
    misses); ``sigmas``: the layout's per-keypoint OKS sigmas (default pycocotools' COCO 17)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    results = json.loads(Path(results_json).read_text()) if isinstance(results_json, (str, Path)) else results_json
    gt_data = (json.loads(Path(annotations_json).read_text()) if isinstance(annotations_json, (str, Path))
               else annotations_json)
    if image_ids is not None:
        wanted = set(image_ids)
        results = [r for r in results if r["image_id"] in wanted]
    if not results:
        return dict.fromkeys(STAT_NAMES, 0.0) | {"nonfinite": 0.0}
    with contextlib.redirect_stdout(sys.stdout if verbose else io.StringIO()):
        gt = COCO()
        gt.dataset = gt_data
        gt.createIndex()
        loaded, nonfinite = load_results(gt, results)
        evaluator = COCOeval(gt, loaded, "keypoints")
        if sigmas is not None:
            evaluator.params.kpt_oks_sigmas = np.asarray(sigmas, np.float64)
        if image_ids is not None:
            evaluator.params.imgIds = sorted(image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: float(value) for name, value in zip(STAT_NAMES, evaluator.stats)} | {"nonfinite": float(nonfinite)}


def load_results(gt: COCO, results: list[dict]) -> tuple[COCO, int]:
    """``gt.loadRes`` with NaN/inf keypoint coordinates made infinitely far (OKS term 0); returns (COCO, count).

    COCOeval's matching treats a NaN OKS as a match at every threshold, so NaN keypoints would
    inflate AP; box and area of such a result come from its finite keypoints only.
    """
    copies, bad = [], []
    for r in results:
        kps = np.asarray(r["keypoints"], np.float64).reshape(-1, 3)
        broken = ~np.isfinite(kps[:, :2]).all(axis=1)
        kps[broken, :2] = np.inf
        kps[~np.isfinite(kps[:, 2]), 2] = 0.0
        copies.append(dict(r, keypoints=kps.ravel().tolist()))
        bad.append(broken)
    with np.errstate(invalid="ignore"):  # inf - inf in loadRes's box; replaced below
        loaded = gt.loadRes(copies)
    for ann, broken in zip(copies, bad):
        if broken.any():
            kps = np.asarray(ann["keypoints"]).reshape(-1, 3)[~broken]
            x0, y0 = (kps[:, :2].min(axis=0) if len(kps) else (0.0, 0.0))
            x1, y1 = (kps[:, :2].max(axis=0) if len(kps) else (0.0, 0.0))
            ann["bbox"], ann["area"] = [x0, y0, x1 - x0, y1 - y0], (x1 - x0) * (y1 - y0)
    return loaded, int(sum(b.sum() for b in bad))


def read_data_set(folder: Path, limit: int | None) -> DataSet:
    """The data set in ``folder``, restricted to its first ``limit`` images (by id) when given."""
    paths = (folder / "images", folder / "person_keypoints.json", folder / "detections.json")
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise InputError(f"{folder} is not a data set written by rmpe-data synth or rmpe-bench mpii "
                         f"(missing {', '.join(missing)})")
    try:
        gt = json.loads(paths[1].read_text())
        images = sorted(gt["images"], key=lambda img: int(img["id"]))
        files, ids = [paths[0] / Path(img["file_name"]).name for img in images], [int(img["id"]) for img in images]
        num_keypoints = len(gt["categories"][0]["keypoints"])
        head_boxes = has_head_boxes(gt)
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise InputError(f"{paths[1]}: not a COCO keypoint annotation file ({exc.__class__.__name__})") from None
    if limit is not None:
        files, ids = files[:limit], ids[:limit]
    if not files:
        raise InputError(f"{paths[1]} lists no images")
    return DataSet(paths[1], paths[2], files, ids, num_keypoints, head_boxes)


def read_model_info(path: Path) -> ModelInfo:
    """Precision, flip test, keypoint count, layout and OKS sigmas from the model's metadata (as the runtime reads it)."""
    from rmpe.runtime.backends import BackendOptions, open_backend
    from rmpe.runtime.metadata import ModelMetadata

    if not path.is_file():
        raise InputError(f"model {path} not found")
    try:
        backend = open_backend(path, BackendOptions(optimization="disable"))
        try:
            meta = ModelMetadata.from_props(backend.metadata)
        finally:
            backend.close()
    except (RuntimeError, ValueError) as exc:
        raise InputError(f"cannot read model {path}: {exc}") from None
    return ModelInfo(str(path), meta.precision, bool(meta.flip_test), bool(meta.trained), meta.num_keypoints,
                     meta.layout, meta.oks_sigmas)


def run_model(model: Path, data: DataSet, nms: str, batch: int, out: Path, verbose: bool,
              refine: bool = False) -> float:
    """One ``rmpe-run`` call writing COCO results to ``out``; returns its wall time in seconds."""
    from rmpe.runtime.cli import main as run_main

    argv = [str(model), *map(str, data.files), "--boxes", str(data.detections), "--annotations", str(data.annotations),
            "--out", str(out), "--nms", nms, "--batch", str(batch)] + (["--refine"] if refine else [])
    start = time.perf_counter()
    status = run_main(argv + ([] if verbose else ["--quiet"]))
    seconds = time.perf_counter() - start
    if status != 0:
        raise InputError(f"rmpe-run failed on {model} (exit status {status})")
    return seconds


def markdown_table(rows: list[Row]) -> str:
    """One table per metric (AP first, then PCKh): model, precision, NMS mode, the metric's columns
    ("n/a": -1, no such people or joints) and images/s; with several scales, the scale and the keypoint
    moves against scale 1 too."""
    metrics = [m for m in TABLE_STATS if any(row.metric == m for row in rows)]
    return "\n\n".join(_metric_table([row for row in rows if row.metric == m], TABLE_STATS[m]) for m in metrics)


def _metric_table(rows: list[Row], columns: tuple[str, ...]) -> str:
    """The Markdown table of rows scored by one metric, whose stats hold ``columns``."""
    scaled = any(row.scale != 1 for row in rows)
    extra = " scale | keypoint move p50 / p90 / max px |" if scaled else ""
    lines = ["| model | precision | nms |" + extra + " " + " | ".join(columns) + " | images/s |",
             "|---|---|---|" + ("---:|---:|" if scaled else "") + "---:|" * (len(columns) + 1)]
    for row in rows:
        model = row.model + ("" if row.trained else " (untrained)")
        precision = row.precision + (" + flip" if row.flip_test else "")
        scores = " | ".join(f"{row.stats[name]:.3f}" if row.stats[name] >= 0 else "n/a" for name in columns)
        moves = ""
        if scaled:
            shift = row.shift_px
            moved = f"{shift['p50']:.2f} / {shift['p90']:.2f} / {shift['max']:.1f}" if shift else "–"
            moves = f" ×{row.scale} | {moved} |"
        lines.append(f"| {model} | {precision} | {row.nms} |{moves} {scores} | {row.images_per_s:.2f} |")
    return "\n".join(lines)


def upscaled_data_set(data: DataSet, factor: int, folder: Path) -> DataSet:
    """A copy of ``data`` in ``folder`` with images, ground truth and detections ``factor`` times larger."""
    files = upscale_images(data.files, factor, folder / "images")
    annotations = upscale_annotations(data.annotations, factor, folder / "person_keypoints.json")
    detections = upscale_detections(data.detections, factor, folder / "detections.json")
    return DataSet(annotations, detections, files, data.ids, data.num_keypoints, data.head_boxes)


def check_args(args: argparse.Namespace, data: DataSet) -> list[ModelInfo]:
    """Validate numbers and models (keypoint count as the data set's; flip models exported with ``--flip``;
    head boxes for a model scored by PCKh)."""
    if args.limit is not None and args.limit < 1:
        raise InputError("--limit must be at least 1")
    if args.batch < 1:
        raise InputError("--batch must be at least 1")
    if args.refine and "none" in args.nms:
        raise InputError("--refine needs a pose NMS: drop 'none' from --nms")
    if args.out_json is not None and not args.out_json.parent.is_dir():
        raise InputError(f"--out-json {args.out_json}: no folder {args.out_json.parent}")
    infos = [read_model_info(Path(m)) for m in args.models + args.flip_model]
    for info in infos[len(args.models):]:
        if not info.flip_test:
            raise InputError(f"--flip-model {info.path} was not exported with rmpe-export --flip")
    for info in infos:
        if info.num_keypoints != data.num_keypoints:
            raise InputError(f"{info.path} has {info.num_keypoints} keypoints, the data set {data.num_keypoints}")
        if info.metric == "PCKh" and not data.head_boxes:
            raise InputError(f"{info.path} (layout {info.layout or 'of its own'}) has no OKS sigmas, so it is scored by "
                             f"PCKh@0.5, which needs a head_box on every annotation of {data.annotations}")
    return infos


def run(args: argparse.Namespace) -> int:
    """Evaluate every model × NMS mode (× scale) and print the Markdown table (optionally write JSON)."""
    try:
        data = read_data_set(args.data, args.limit)
        infos = check_args(args, data)
        rows = []
        with tempfile.TemporaryDirectory(prefix="rmpe-bench-ap-") as tmp:
            scales = {1: data} | {f: upscaled_data_set(data, f, Path(tmp) / f"x{f}") for f in args.upscale if f != 1}
            for n, info in enumerate(infos):
                for nms in args.nms:
                    base: list[dict] = []
                    for factor, scaled in scales.items():
                        out = Path(tmp) / f"results-{n}-{nms}-x{factor}.json"
                        seconds = run_model(Path(info.path), scaled, nms, args.batch, out, args.verbose, args.refine)
                        stats = score(info, out, scaled, args.verbose)
                        if stats.get("nonfinite"):
                            print(f"{PROG}: warning: {info.path} ({nms}, ×{factor}): {stats['nonfinite']:.0f} keypoints "
                                  "are NaN or inf; scored as misses", file=sys.stderr)
                        results = json.loads(out.read_text())
                        base = results if factor == 1 else base
                        shift = keypoint_shift(base, results, factor) if factor != 1 else None
                        label = f"{nms} + refine" if args.refine else nms
                        rows.append(Row(info.path, info.precision, info.flip_test, info.trained, label,
                                        len(data.ids), seconds, stats, factor, shift, info.metric))
    except InputError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    print(markdown_table(rows), flush=True)
    if args.out_json is not None:
        payload = {"data": str(args.data), "images": len(data.ids),
                   "rows": [asdict(r) | {"images_per_s": r.images_per_s} for r in rows]}
        try:
            args.out_json.write_text(json.dumps(payload, indent=2) + "\n")
        except OSError as exc:
            print(f"{PROG}: error: cannot write {args.out_json}: {exc.strerror}", file=sys.stderr)
            return 2
    return 0


def score(info: ModelInfo, results: Path, data: DataSet, verbose: bool) -> dict[str, float]:
    """The model's metric on its results file: COCO keypoint AP with its sigmas, or PCKh@0.5."""
    if info.metric == "AP":
        return evaluate(results, data.annotations, data.ids, verbose=verbose, sigmas=info.oks_sigmas)
    try:
        return evaluate_pckh(json.loads(results.read_text()), json.loads(data.annotations.read_text()), data.ids,
                             source=str(data.annotations))
    except AnnotationError as exc:
        raise InputError(str(exc)) from None


def parse_factors(text: str) -> list[int]:
    """'1,2,4' → [1, 2, 4]: whole upscaling factors, 1 always first (the reference)."""
    try:
        factors = sorted({int(v) for v in text.split(",")})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole factors such as 1,2,4, got {text!r}") from None
    if not factors or factors[0] < 1 or factors[-1] > 16:
        raise argparse.ArgumentTypeError(f"factors must be 1 to 16, got {text!r}")
    return sorted(set(factors) | {1})


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``ap`` subcommand."""
    parser = sub.add_parser("ap", help="COCO keypoint AP (PCKh@0.5 for MPII models) of exported models through rmpe-run",
                            description="COCO keypoint AP (pycocotools, with the OKS sigmas of the model's layout) of "
                            "exported models, each run through rmpe-run with the data set's detections as boxes; "
                            "models whose layout has no OKS sigmas (MPII 16) are scored by PCKh@0.5 instead, "
                            "which needs head boxes in the annotations (rmpe-bench mpii makes such a data set).")
    parser.add_argument("models", nargs="+", metavar="MODEL", help="exported models (.onnx or TensorRT engines)")
    parser.add_argument("--data", type=Path, required=True, metavar="DIR",
                        help="a data set written by rmpe-data synth or rmpe-bench mpii "
                        "(images/, person_keypoints.json, detections.json)")
    parser.add_argument("--nms", nargs="+", choices=NMS_MODES, default=["rmpe"],
                        help="pose NMS modes to evaluate, each a separate run (default: rmpe, rmpe-run's default)")
    parser.add_argument("--flip-model", nargs="+", default=[], metavar="MODEL",
                        help="more models, exported with rmpe-export --flip (flip test inside the graph)")
    parser.add_argument("--refine", action="store_true", help="run rmpe-run with --refine (not with --nms none)")
    parser.add_argument("--limit", type=int, metavar="N", help="evaluate the first N images (by id) only")
    parser.add_argument("--batch", type=int, default=32, help="rmpe-run --batch: most boxes per call (default 32)")
    parser.add_argument("--upscale", type=parse_factors, default=[1], metavar="F,F,...",
                        help="also run on copies of the data set upscaled by these factors (images, ground truth and "
                        "boxes; bicubic), e.g. 1,2,4: AP per scale, and how far each person's keypoints move from "
                        "the scale-1 run (in scale-1 pixels): a crop that aliases large people moves them")
    parser.add_argument("--out-json", type=Path, metavar="FILE", help="also write the rows (all ten COCO stats) here")
    parser.add_argument("--verbose", action="store_true", help="show pycocotools' output and rmpe-run's summary")
    parser.set_defaults(func=run)
