"""``rmpe-bench hostile``: peak memory of ``rmpe-run`` over a folder built to exhaust it.

The folder holds what once took gigabytes: one 8000x6000 photo among 15 small ones (every image
of a graph call was padded to the largest), a 169-megapixel 1-bit PNG of a few KB (half a
gigabyte once RGB), 10,000 boxes on one image, plus files that do not decode. ``rmpe-run`` runs
on it in a child process at its default settings (and with any extra flags given); the table
gives the child's peak resident memory, its exit status, and the people and skipped files.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PROG = "rmpe-bench hostile"
SMALL_IMAGES = 15


def write_folder(root: Path, seed: int = 0) -> tuple[Path, Path]:
    """Write the hostile images (synthetic people) and their detections file under ``root``; returns
    (images, detections)."""
    from PIL import Image

    from rmpe.training.synth import SynthConfig, render_sample

    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    detections: list[dict] = []

    def add(name: str, sample, factor: int = 1) -> None:
        image = np.repeat(np.repeat(sample.image, factor, axis=0), factor, axis=1) if factor > 1 else sample.image
        Image.fromarray(image).save(images / name, quality=85)
        detections.extend({**d, "image_id": name, "bbox": [v * factor for v in d["bbox"]]} for d in sample.detections)

    for i in range(SMALL_IMAGES):
        add(f"small{i:02d}.jpg", render_sample(seed, i, SynthConfig(min_size=(640, 480), max_size=(640, 480))))
    add("photo_8000x6000.jpg", render_sample(seed, 99, SynthConfig(min_size=(800, 600), max_size=(800, 600))), 10)
    Image.new("1", (15000, 11267)).save(images / "bomb_169mp.png")  # a few KB, just under Pillow's bomb limit
    corners = np.random.default_rng(seed).uniform(0, 400, (10_000, 2))
    detections += [{"image_id": "small00.jpg", "category_id": 1, "bbox": [float(x), float(y), 60.0, 120.0],
                    "score": 0.5} for x, y in corners]
    (images / "truncated.jpg").write_bytes((images / "small01.jpg").read_bytes()[:2000])
    (images / "notes.jpg").write_text("not an image")
    path = root / "detections.json"
    path.write_text(json.dumps(detections))
    return images, path


def run_child(model: Path, images: Path, detections: Path, out: Path, extra: list[str]) -> tuple[int, float, float, str]:
    """Run ``rmpe-run`` in a child; (exit status, peak RSS in MB, seconds, its stderr)."""
    command = [sys.executable, "-m", "rmpe.runtime.cli", str(model), str(images), "--boxes", str(detections),
               "--out", str(out), "--quiet", *extra]
    start = time.perf_counter()
    child = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # Linux reports KB
    return child.returncode, peak_mb, seconds, child.stderr


def run(args: argparse.Namespace) -> int:
    """Build the folder, run rmpe-run on it, print the table."""
    if not args.model.is_file():
        print(f"{PROG}: error: {args.model}: no such model file", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="rmpe-hostile-") as tmp:
        images, detections = write_folder(Path(tmp))
        out = Path(tmp) / "results.json"
        extra = args.extra[1:] if args.extra[:1] == ["--"] else args.extra
        status, peak_mb, seconds, stderr = run_child(args.model, images, detections, out, extra)
        people = len(json.loads(out.read_text())) if out.is_file() else 0
    skipped = [line for line in stderr.splitlines() if "skipped" in line]
    print(f"rmpe-run {' '.join(extra) or '(default settings)'} over {SMALL_IMAGES} 640x480 JPEGs, one 8000x6000 "
          "JPEG, a 169 MP 1-bit PNG, 10,000 boxes on one image, a truncated JPEG and a text file:\n")
    print("| exit status | peak RSS (MB) | seconds | people written | files skipped |")
    print("|---:|---:|---:|---:|---:|")
    print(f"| {status} | {peak_mb:.0f} | {seconds:.1f} | {people} | {len(skipped)} |")
    for line in skipped:
        print(f"\n    {line}", end="")
    print()
    if status != 0:
        print(f"{PROG}: rmpe-run exited {status}:\n{stderr[-2000:]}", file=sys.stderr)
        return 1
    if args.limit_mb and peak_mb > args.limit_mb:
        print(f"{PROG}: peak RSS {peak_mb:.0f} MB is over --limit-mb {args.limit_mb}", file=sys.stderr)
        return 1
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``hostile`` subcommand."""
    parser = sub.add_parser("hostile", help="peak memory of rmpe-run over a folder of giant and broken inputs",
                            description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="exported model (.onnx)")
    parser.add_argument("--limit-mb", type=float, default=2048,
                        help="exit 1 when the peak RSS is over this (default: %(default)s; 0: no limit)")
    parser.add_argument("extra", nargs=argparse.REMAINDER, metavar="-- FLAGS",
                        help="more rmpe-run flags after --, for example -- --oversize downscale")
    parser.set_defaults(func=run)
