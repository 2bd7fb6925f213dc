"""`rmpe-data`: make the synthetic people data set and clips, and fit the pose-guided proposal generator."""

from __future__ import annotations

import argparse
import sys
import time


def _size(text: str) -> tuple[int, int]:
    """Parse WxH (e.g. 320x240) into (width, height)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 320x240, got {text!r}") from None
    if w < 32 or h < 32:
        raise argparse.ArgumentTypeError(f"size must be at least 32x32, got {text!r}")
    return w, h


def _parser() -> argparse.ArgumentParser:
    """Command line of both subcommands."""
    p = argparse.ArgumentParser(prog="rmpe-data", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("synth", help="render synthetic multi-person images with COCO keypoints and detections")
    s.add_argument("--out", required=True, help="output folder (images/, person_keypoints.json, detections.json)")
    s.add_argument("--images", type=int, required=True, help="number of images")
    s.add_argument("--seed", type=int, required=True, help="data set seed; same seed, same bytes")
    s.add_argument("--min-people", type=int, default=1)
    s.add_argument("--max-people", type=int, default=6)
    s.add_argument("--size", type=_size, nargs="+", metavar="WxH", default=[(320, 240), (512, 384)],
                   help="one size, or the smallest and largest size (default 320x240 512x384)")
    s.add_argument("--workers", type=int, default=1, help="processes (output does not depend on it)")
    v = sub.add_parser("synth-video", help="render clips of synthetic people walking, crossing, entering and leaving, "
                       "with per-frame ground truth (COCO + track_id) and detections")
    v.add_argument("--out", required=True, help="output folder (clip_NNN.mp4, clip_NNN.json, clip_NNN.detections.json)")
    v.add_argument("--clips", type=int, required=True, help="number of clips")
    v.add_argument("--seed", type=int, required=True, help="set seed; same seed, same frames")
    v.add_argument("--frames", type=int, default=40, help="frames per clip (default 40)")
    v.add_argument("--fps", type=int, default=10, help="frame rate (default 10)")
    v.add_argument("--size", type=_size, default=(320, 240), metavar="WxH", help="frame size, even (default 320x240)")
    v.add_argument("--min-people", type=int, default=2)
    v.add_argument("--max-people", type=int, default=3)
    g = sub.add_parser("pgpg", help="fit the pose-guided proposal generator")
    g.add_argument("--keypoints", required=True, help="COCO keypoints JSON (ground truth)")
    g.add_argument("--detections", required=True, help="COCO detection results JSON")
    g.add_argument("--out", required=True, help="output .npz")
    g.add_argument("--atoms", type=int, default=16)
    g.add_argument("--components", type=int, default=3)
    g.add_argument("--iou", type=float, default=0.5, help="IoU to match a detection to its ground truth")
    return p


def _synth(args: argparse.Namespace) -> int:
    """Run `rmpe-data synth`."""
    from rmpe.training.synth import SynthConfig, write_dataset

    if len(args.size) > 2:
        raise SystemExit("rmpe-data: error: --size takes one or two sizes")
    if not 1 <= args.min_people <= args.max_people or args.images < 0 or args.workers < 1:
        raise SystemExit("rmpe-data: error: need 1 <= --min-people <= --max-people, --images >= 0, --workers >= 1")
    lo, hi = args.size[0], args.size[-1]
    config = SynthConfig(args.min_people, args.max_people, (min(lo[0], hi[0]), min(lo[1], hi[1])),
                         (max(lo[0], hi[0]), max(lo[1], hi[1])))
    start = time.perf_counter()
    counts = write_dataset(args.out, args.images, args.seed, config, args.workers)
    print(f"wrote {counts['images']} images, {counts['annotations']} people, {counts['detections']} "
          f"detections to {args.out} in {time.perf_counter() - start:.1f} s")
    return 0


def _synth_video(args: argparse.Namespace) -> int:
    """Run `rmpe-data synth-video`."""
    from rmpe.training.synth_video import ClipConfig, write_clips

    if args.clips < 0 or args.frames < 1 or not 1 <= args.fps <= 240 or not 1 <= args.min_people <= args.max_people:
        raise SystemExit("rmpe-data: error: need --clips >= 0, --frames >= 1, 1 <= --fps <= 240 and "
                         "1 <= --min-people <= --max-people")
    if args.size[0] % 2 or args.size[1] % 2:
        raise SystemExit(f"rmpe-data: error: --size {args.size[0]}x{args.size[1]}: H.264 needs even sizes")
    config = ClipConfig(args.frames, args.fps, args.size, args.min_people, args.max_people)
    start = time.perf_counter()
    counts = write_clips(args.out, args.clips, args.seed, config)
    print(f"wrote {counts['clips']} clips, {counts['frames']} frames, {counts['annotations']} people, "
          f"{counts['detections']} detections to {args.out} in {time.perf_counter() - start:.1f} s")
    return 0


def _pgpg(args: argparse.Namespace) -> int:
    """Run `rmpe-data pgpg`."""
    from rmpe.training.pgpg import fit_files

    model = fit_files(args.keypoints, args.detections, args.atoms, args.components, args.iou)
    model.save(args.out)
    print(f"fitted {len(model.centres)} atoms from {int(model.counts.sum())} matched detections; wrote {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; bad input files give a one-line error and exit status 2."""
    args = _parser().parse_args(argv)
    try:
        return {"synth": _synth, "synth-video": _synth_video, "pgpg": _pgpg}[args.command](args)
    except SystemExit as e:
        print(e, file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"rmpe-data: error: no such file: {e.filename}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"rmpe-data: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
