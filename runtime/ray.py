"""Batch pose inference on Ray Data (``pip install 'rmpe[ray]'``): ``rmpe-run --ray [ADDRESS]``.

Images become rows (``uri``, ``name``, ``image_id``, ``boxes``) of a Ray Dataset; ``map_batches``
runs them through an actor pool in which each actor holds one model session (and detector) for its
lifetime and runs the very :class:`~rmpe.runtime.pipeline.Pipeline` that ``rmpe-run`` runs, so a
row gets the poses the single-process run gives it. The model's bytes travel through Ray's object
store, so a cluster's nodes need rmpe installed but not the model file; the images must be readable
by every node (a shared folder, or URIs such as ``s3://``, read through ``pyarrow.fs``). Each row
comes back with its COCO results entries as JSON text, or with ``error`` saying why it failed: one
bad image never stops the job. Inputs: paths, folders, globs, and Parquet (a ``uri`` or ``path``
column) or JSON / JSON-lines lists of URIs. ``ray`` here is always the Ray package (absolute
imports): this module is ``rmpe.runtime.ray``.

>>> import ray                                                       # doctest: +SKIP
>>> from rmpe.runtime.ray import image_rows, pose_dataset            # doctest: +SKIP
>>> ds = pose_dataset(ray.data.from_items(image_rows(["photos/"])), "model.onnx", workers=4)  # doctest: +SKIP
>>> ds.write_parquet("s3://bucket/poses/")                           # doctest: +SKIP
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import tempfile
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from .boxes import Boxes, DetectionFile, ImageId, image_ids, to_image_pixels, whole_image
from .images import ImageError, InputItem, Inputs, decode_image, find_inputs, load_image, pixel_scale
from .pipeline import MAX_PIXELS, PIXEL_BUDGET, Pipeline, RunStats

LIST_SUFFIXES = (".parquet", ".json", ".jsonl")  # lists of image URIs
URI_COLUMNS = ("uri", "path")
ROW_BATCH = 8  # rows per actor call


class RayError(RuntimeError):
    """Ray missing, a cluster that cannot be reached, or an unusable URI list; one line."""


def load_ray():
    """The ``ray`` package with Ray Data, or a :class:`RayError` saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise RayError("--ray needs Ray Data: pip install 'rmpe[ray]'") from None
    return ray


@dataclass
class UriItem(InputItem):
    """An image named by a URI in a list (``s3://bucket/a.jpg``, a path relative to the list's folder)."""

    uri: str


def _is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def read_uri_list(path: Path) -> list[str]:
    """The URIs of a Parquet file (column ``uri`` or ``path``, or its only column), a JSON list (of
    strings, or of objects with ``uri`` or ``path``) or JSON lines; ``RayError`` naming the file."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path)
            column = next((c for c in URI_COLUMNS if c in table.column_names), None)
            if column is None and table.num_columns == 1:
                column = table.column_names[0]
            if column is None:
                raise RayError(f"{path}: needs a column named {' or '.join(URI_COLUMNS)} (has {table.column_names})")
            values = table.column(column).to_pylist()
        else:
            text = path.read_text(encoding="utf-8")
            stripped = text.lstrip()
            values = json.loads(text) if stripped.startswith("[") else [json.loads(line) for line in text.splitlines()
                                                                         if line.strip()]
    except RayError:
        raise
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise RayError(f"{path}: cannot read the list of URIs ({str(exc).splitlines()[0][:120]})") from None
    except Exception as exc:  # pyarrow's own errors (a file that is not Parquet)
        raise RayError(f"{path}: cannot read the list of URIs ({exc.__class__.__name__})") from None
    uris = []
    for n, value in enumerate(values if isinstance(values, list) else [values]):
        if isinstance(value, dict):
            value = next((value[c] for c in URI_COLUMNS if c in value), None)
        if not isinstance(value, str) or not value:
            raise RayError(f"{path}: entry {n} is not a URI (a string, or an object with {' or '.join(URI_COLUMNS)})")
        uris.append(value)
    return uris


def expand_lists(found: Inputs) -> Inputs:
    """``found`` with every Parquet/JSON list replaced by the images it lists (local paths relative to
    the list's folder, remote URIs as they are)."""
    out = Inputs(problems=list(found.problems), skipped=list(found.skipped))
    for item in found.items:
        if item.path.suffix.lower() not in LIST_SUFFIXES:
            out.items.append(item)
            continue
        for uri in read_uri_list(item.path):
            local = uri[len("file://"):] if uri.startswith("file://") else uri
            where = uri if _is_remote(uri) else str(item.path.parent / local if not Path(local).is_absolute() else local)
            out.items.append(UriItem(Path(where.rsplit("/", 1)[-1]) if _is_remote(uri) else Path(where),
                                     where.rsplit("/", 1)[-1], where))
    return out


def image_rows(specs: list[str], recursive: bool = False, detections: Path | None = None,
               annotations: dict[str, int] | None = None) -> list[dict]:
    """Rows for :func:`pose_dataset` from paths, folders, globs and URI lists (ids as ``rmpe-run`` gives them)."""
    found = expand_lists(find_inputs(specs, recursive))
    items = found.items
    ids = image_ids([item.name for item in items], annotations)
    boxes = DetectionFile(detections) if detections is not None else None
    return rows_for(items, ids, boxes)


def rows_for(items: list[InputItem], ids: list[ImageId], detections: DetectionFile | None) -> list[dict]:
    """One row per image: its URI (an absolute path for local files), name, id (JSON) and boxes
    (JSON ``[[x1, y1, x2, y2, score], ...]`` from ``detections``; empty: the workers find them)."""
    rows = []
    for item, image_id in zip(items, ids):
        uri = item.uri if isinstance(item, UriItem) else str(item.path.resolve())
        boxes = ""
        if detections is not None:
            found = detections.lookup(item.name, image_id)
            boxes = json.dumps(np.concatenate([found.xyxy, found.scores[:, None]], axis=1).tolist())
        rows.append({"uri": uri, "name": item.name, "image_id": json.dumps(image_id), "boxes": boxes})
    return rows


def read_image(uri: str, max_pixels: int = 0, downscale: bool = False) -> np.ndarray:
    """Decode the image at ``uri`` (a local path, ``file://``, or any scheme ``pyarrow.fs`` reads)."""
    if not _is_remote(uri):
        return load_image(Path(uri[len("file://"):] if uri.startswith("file://") else uri), max_pixels, downscale)
    try:
        from pyarrow import fs

        filesystem, where = fs.FileSystem.from_uri(uri)
        with filesystem.open_input_stream(where) as stream:
            data = stream.read()
    except Exception as exc:  # pyarrow raises its own errors for unknown schemes and missing objects
        raise ImageError(f"cannot fetch ({str(exc).splitlines()[0][:160] if str(exc) else exc.__class__.__name__})") from None
    if not data:
        raise ImageError("empty file (0 bytes)")
    return decode_image(io.BytesIO(data), max_pixels, uri, downscale)


class PoseWorker:
    """A Ray Data actor: one pose model session (and detector) for its lifetime; each call runs a
    batch of rows through rmpe-run's pipeline and returns one result row per input row."""

    def __init__(self, model: bytes, options: dict[str, Any], detector: bytes | None = None,
                 pipeline: dict[str, Any] | None = None) -> None:
        from .backends import BackendOptions
        from .estimator import PoseEstimator

        ray = load_ray()
        self.folder = tempfile.TemporaryDirectory(prefix="rmpe-ray-")
        model_path = Path(self.folder.name) / "model.onnx"
        model_path.write_bytes(ray.get(model) if isinstance(model, ray.ObjectRef) else model)
        detector_path = None
        if detector is not None:
            detector_path = Path(self.folder.name) / "detector.onnx"
            detector_path.write_bytes(ray.get(detector) if isinstance(detector, ray.ObjectRef) else detector)
        settings = dict(options)
        estimator_keys = ("nms", "refine", "box_thr", "max_people", "detector_format")
        kwargs = {k: settings.pop(k) for k in estimator_keys if k in settings}
        self.estimator = PoseEstimator(model_path, options=BackendOptions(**settings), detector=detector_path, **kwargs)
        self.settings = dict(pipeline or {})

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        from .writers import coco_entries

        uris, names = list(batch["uri"]), list(batch["name"])
        ids = [json.loads(v) for v in batch["image_id"]]
        boxes = list(batch["boxes"])
        items = [InputItem(Path(str(name)), str(name)) for name in names]
        slot = {id(item): i for i, item in enumerate(items)}
        entries: list[list[dict] | None] = [None] * len(items)
        errors = [""] * len(items)

        def source(item: InputItem, image_id: ImageId, image: np.ndarray) -> Boxes:
            given = boxes[slot[id(item)]]
            if given:
                rows = np.asarray(json.loads(given), np.float32).reshape(-1, 5)
                return to_image_pixels(Boxes(rows[:, :4], rows[:, 4]), image)
            if self.estimator.detector is not None:
                return self.estimator.detector(image)
            return whole_image(*image.shape[:2])

        def sink(index, item, image, poses) -> None:
            entries[slot[id(item)]] = coco_entries(ids[slot[id(item)]], poses.scaled(*pixel_scale(image)))

        def failed(item: InputItem, problem: str) -> None:
            errors[slot[id(item)]] = problem

        pipeline = Pipeline(self.estimator, source, [sink], batch=self.settings.get("batch", 16),
                            box_thr=self.estimator.box_thr, max_people=self.estimator.max_people,
                            pixel_budget=self.settings.get("pixel_budget", PIXEL_BUDGET))
        pipeline.run_decoded(self._decoded(items, ids, uris), failed)
        return {"uri": uris, "name": names, "image_id": list(batch["image_id"]),
                "people": [len(e) if e is not None else 0 for e in entries],
                "results": [json.dumps(e, separators=(",", ":")) if e is not None else "" for e in entries],
                "error": [e or ("" if entries[i] is not None else "not processed") for i, e in enumerate(errors)]}

    def _decoded(self, items: list[InputItem], ids: list[ImageId],
                 uris: list[str]) -> Iterator[tuple[InputItem, ImageId, np.ndarray | ImageError]]:
        """Each row's image (or why not), decoded by a few threads in row order."""
        max_pixels, downscale = self.settings.get("max_pixels", MAX_PIXELS), self.settings.get("downscale", False)

        def load(uri: str) -> np.ndarray | ImageError:
            try:
                return read_image(str(uri), max_pixels, downscale)
            except ImageError as exc:
                return exc

        with ThreadPoolExecutor(max_workers=max(1, self.settings.get("decoders", 2))) as pool:
            yield from zip(items, ids, pool.map(load, uris))


def pose_dataset(ds, model: str | Path, *, workers: int = 1, threads: int = 1, detector: str | Path | None = None,
                 options: dict[str, Any] | None = None, pipeline: dict[str, Any] | None = None, ray_module=None):
    """``ds`` (rows with ``uri``, ``name``, ``image_id``, ``boxes``, e.g. from :func:`image_rows`) mapped
    through ``workers`` :class:`PoseWorker` actors of ``threads`` CPUs each; a lazy Ray Dataset of
    rows ``uri, name, image_id, people, results, error``."""
    ray = ray_module or load_ray()
    constructor = {"model": ray.put(Path(model).read_bytes()),
                   "detector": ray.put(Path(detector).read_bytes()) if detector is not None else None,
                   "options": {"threads": threads, **(options or {})}, "pipeline": pipeline or {}}
    with warnings.catch_warnings():  # max_restarts goes through ray_remote_args, deprecated in 2.60 without a successor
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*")
        return ds.map_batches(PoseWorker, fn_constructor_kwargs=constructor, batch_size=ROW_BATCH, batch_format="numpy",
                              compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=max(1, threads),
                              max_restarts=0)  # a restarted actor could not fetch its model again (ray#53727)


def write_results(ds, out: str) -> None:
    """Write a :func:`pose_dataset` with Ray's own writers: ``.parquet`` → Parquet files, otherwise
    JSON lines, into the folder (or bucket prefix) ``out``, one file per block."""
    if str(out).rstrip("/").lower().endswith(".parquet"):
        ds.write_parquet(str(out))
    else:
        ds.write_json(str(out))


def start(address: str, threads: int):
    """Connect to (``auto``, ``ray://HOST:PORT``) or start (``local``) Ray, quietly; returns the module."""
    ray = load_ray()
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    if ray.is_initialized():
        return ray
    try:
        if address == "local":
            ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, logging_level=logging.ERROR,
                     log_to_driver=False)
        else:
            ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise RayError(f"--ray {address}: cannot connect ({str(exc).splitlines()[0][:160]})") from None
    return ray


def run_on_ray(args, items: list[InputItem], ids: list[ImageId], json_writer, on_failure: Callable[[InputItem, str], None],
               progress: Callable[[], None] | None, stop: threading.Event | None) -> tuple[RunStats, int]:
    """``rmpe-run --ray``: the images on Ray, their entries journalled by ``json_writer`` as they
    arrive (in any order: the results file is assembled in input order); returns the run's counts and
    the number of workers."""
    import time

    stats = RunStats()
    if not items:
        return stats, 0
    begin = time.perf_counter()
    ray = start(args.ray, args.threads)
    total = int(ray.cluster_resources().get("CPU", 1))
    threads = args.threads or 1
    workers = args.ray_workers or max(1, total // threads)
    detections = DetectionFile(args.boxes) if args.boxes is not None else None
    options = {"backend": args.backend, "device": args.device, "optimization": args.opt_level,
               "session_config": dict(e.partition("=")[::2] for e in args.session_option), "nms": args.nms,
               "refine": args.refine, "box_thr": args.box_thr, "max_people": args.max_people,
               "detector_format": args.detector_format}
    settings = {"batch": args.batch, "pixel_budget": args.batch_pixels, "max_pixels": args.max_pixels,
                "downscale": args.oversize == "downscale", "decoders": args.workers}
    rows = rows_for(items, ids, detections)
    ds = ray.data.from_items(rows, override_num_blocks=max(1, math.ceil(len(rows) / ROW_BATCH)))
    result = pose_dataset(ds, args.model, workers=workers, threads=threads,
                          detector=args.detector if detections is None else None, options=options,
                          pipeline=settings, ray_module=ray)
    by_name = {item.name: item for item in items}
    try:
        for row in result.iter_rows():
            if stop is not None and stop.is_set():
                stats.interrupted = True
                break
            item = by_name[row["name"]]
            if row["error"]:
                stats.failures += 1
                on_failure(item, row["error"])
            else:
                if json_writer is not None:
                    json_writer.add_entries(item.name, json.loads(row["image_id"]), json.loads(row["results"]))
                stats.images += 1
                stats.people += int(row["people"])
            if progress is not None:
                progress()
    except Exception as exc:  # a worker that cannot start (its model, its session) fails the whole job
        raise RayError(f"the Ray job failed: {_root_cause(exc)}") from None
    stats.wall = time.perf_counter() - begin
    return stats, workers


def _root_cause(exc: BaseException) -> str:
    """The innermost error's one line (Ray wraps a worker's exception in its own several times)."""
    while exc.__cause__ is not None or getattr(exc, "cause", None) is not None:
        exc = exc.__cause__ or exc.cause
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return f"{exc.__class__.__name__}: {lines[-1].strip()[:200]}" if lines else exc.__class__.__name__
