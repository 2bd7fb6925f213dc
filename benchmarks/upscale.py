"""How far keypoints move when the same scene is upscaled: a crop that aliases large people moves them.

    python -m rmpe.benchmarks.upscale MODEL [MODEL ...] --images DIR --boxes detections.json --factor 4

Each model runs through ``rmpe-run --nms none`` (one pose per box) on the images and boxes as given
and on copies upscaled by ``--factor`` (bicubic; boxes scaled to match). People are paired by image
and box; the table gives the median, 90th percentile and largest keypoint distance in scale-1
pixels. ``rmpe-bench ap --upscale`` does the same for a synthetic set, with AP per scale.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

PROG = "python -m rmpe.benchmarks.upscale"


def upscale_images(files: list[Path], factor: int, folder: Path) -> list[Path]:
    """Copies of ``files`` in ``folder``, ``factor`` times larger (bicubic), under the same names.

    Pillow's resize keeps pixel centres at (i + 0.5) / factor, so every coordinate scales by
    ``factor`` exactly in the corner-origin convention of boxes and keypoints.
    """
    from PIL import Image, ImageOps

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for path in files:
        with Image.open(path) as image:
            upright = ImageOps.exif_transpose(image)  # the copy has no EXIF: turn it as the runtime would
            upright.resize((upright.width * factor, upright.height * factor), Image.BICUBIC).save(folder / path.name)
        out.append(folder / path.name)
    return out


def upscale_detections(path: Path, factor: int, out: Path) -> Path:
    """A detections file (COCO results or AlphaPose detfile) with every ``bbox`` × ``factor``."""
    dets = json.loads(path.read_text())
    out.write_text(json.dumps([dict(d, bbox=[v * factor for v in d["bbox"]]) for d in dets]))
    return out


def upscale_annotations(path: Path, factor: int, out: Path) -> Path:
    """A COCO keypoint annotation file with image sizes, keypoints, boxes, areas and head boxes scaled."""
    gt = json.loads(path.read_text())
    for img in gt["images"]:
        if "width" in img and "height" in img:
            img["width"], img["height"] = img["width"] * factor, img["height"] * factor
    for ann in gt["annotations"]:
        kps = np.asarray(ann["keypoints"], np.float64).reshape(-1, 3)
        kps[:, :2] *= factor
        ann["keypoints"] = kps.ravel().tolist()
        ann["bbox"] = [v * factor for v in ann["bbox"]]
        ann["area"] = ann["area"] * factor**2
        if "head_box" in ann:
            ann["head_box"] = [v * factor for v in ann["head_box"]]
    out.write_text(json.dumps(gt))
    return out


def keypoint_shift(base: list[dict], scaled: list[dict], factor: int) -> dict[str, float] | None:
    """Median, 90th percentile and largest distance, in scale-1 pixels, between the keypoints of the
    people found from the same box (image id and box) in a scale-1 and an upscaled results list."""
    by_box = {(r["image_id"], tuple(np.round(r["box"], 1))): r for r in base}
    moves = []
    for r in scaled:
        match = by_box.get((r["image_id"], tuple(np.round(np.asarray(r["box"]) / factor, 1))))
        if match is not None:
            a = np.asarray(match["keypoints"]).reshape(-1, 3)[:, :2]
            b = np.asarray(r["keypoints"]).reshape(-1, 3)[:, :2] / factor
            moves.append(np.linalg.norm(a - b, axis=1))
    if not moves:
        return None
    flat = np.concatenate(moves)
    return {"p50": float(np.median(flat)), "p90": float(np.percentile(flat, 90)), "max": float(flat.max()),
            "people": float(len(moves))}


def run_poses(model: Path, images: list[Path], boxes: Path, out: Path) -> list[dict]:
    """``rmpe-run MODEL IMAGES --boxes BOXES --nms none``: one pose per box."""
    from rmpe.runtime.cli import main as run_main

    if run_main([str(model), *map(str, images), "--boxes", str(boxes), "--nms", "none", "--out", str(out), "--quiet"]):
        raise RuntimeError(f"rmpe-run failed on {model}")
    return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", type=Path, help="exported .onnx models")
    parser.add_argument("--images", type=Path, required=True, help="a folder of images (file stems as image ids)")
    parser.add_argument("--boxes", type=Path, required=True, help="their person boxes (COCO detections or AlphaPose detfile)")
    parser.add_argument("--factor", type=int, default=4, help="upscaling factor (default: %(default)s)")
    args = parser.parse_args(argv)
    from rmpe.runtime.images import is_image_file

    files = sorted(p for p in args.images.iterdir() if is_image_file(p)) if args.images.is_dir() else []
    problems = [f"{p}: not found" for p in [*args.models, args.boxes] if not p.is_file()]
    problems += [] if files else [f"{args.images}: no images"]
    if problems or args.factor < 2:
        print(f"{PROG}: error: {'; '.join(problems) or '--factor must be at least 2'}", file=sys.stderr)
        return 2
    lines = [f"| model | people | keypoint move ×{args.factor} vs ×1: p50 / p90 / max px |", "|---|---:|---:|"]
    with tempfile.TemporaryDirectory(prefix="rmpe-upscale-") as tmp:
        big = upscale_images(files, args.factor, Path(tmp) / "images")
        big_boxes = upscale_detections(args.boxes, args.factor, Path(tmp) / "boxes.json")
        for model in args.models:
            try:
                base = run_poses(model, files, args.boxes, Path(tmp) / "x1.json")
                shift = keypoint_shift(base, run_poses(model, big, big_boxes, Path(tmp) / "xf.json"), args.factor)
            except RuntimeError as exc:  # rmpe-run has said why on stderr
                print(f"{PROG}: error: {exc}", file=sys.stderr)
                return 2
            cells = f"{shift['people']:.0f} | {shift['p50']:.2f} / {shift['p90']:.2f} / {shift['max']:.1f}" if shift else "0 | –"
            lines.append(f"| {model} | {cells} |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
