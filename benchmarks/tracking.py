"""``rmpe-bench track``: identity switches of ``rmpe-run --track`` on synthetic crossing clips.

Each clip of ``rmpe-data synth-video`` (people walking across each other, entering and leaving)
goes through an in-process ``rmpe-run --track`` with the clip's simulated detections as boxes.
Every frame, the ground-truth people are matched one-to-one to the results by pycocotools' OKS
(at least ``--min-oks``) as CLEAR-MOT matches: last frame's pairs that still hold are kept, the
rest are assigned by the Hungarian method; a ground-truth person whose matched ``idx`` differs from
its previous match counts one identity switch (IDSW). The table also replays the same
poses through the tracker with IoU only and OKS only, and through no tracker (``idx`` = rank in
the frame) as the baseline. Target: at most 1 switch per 100 ground-truth person-frames.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

PROG = "rmpe-bench track"
TARGET = 1.0  # identity switches per 100 ground-truth person-frames


@dataclass(frozen=True)
class TrackScore:
    """Counts of one or more clips: ground-truth person-frames, matches, misses, false positives, switches."""

    person_frames: int = 0
    matched: int = 0
    false_positives: int = 0
    id_switches: int = 0

    @property
    def misses(self) -> int:
        return self.person_frames - self.matched

    @property
    def switches_per_100(self) -> float:
        """Identity switches per 100 ground-truth person-frames."""
        return 100.0 * self.id_switches / max(1, self.person_frames)

    @property
    def mota(self) -> float:
        """CLEAR-MOT accuracy: 1 - (misses + false positives + switches) / person-frames."""
        return 1.0 - (self.misses + self.false_positives + self.id_switches) / max(1, self.person_frames)

    def __add__(self, other: "TrackScore") -> "TrackScore":
        return TrackScore(self.person_frames + other.person_frames, self.matched + other.matched,
                          self.false_positives + other.false_positives, self.id_switches + other.id_switches)


def score_tracks(truth: Path, results: list[dict], min_oks: float = 0.5, min_score: float = 0.0) -> TrackScore:
    """Match ``results`` (entries with ``image_id`` = frame and ``idx``) to the ground truth of one
    clip frame by frame and count identity switches; results scoring under ``min_score`` are left out."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    from scipy.optimize import linear_sum_assignment

    results = [r for r in results if r["score"] >= min_score]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(truth))
        ev = COCOeval(gt, gt.loadRes(results) if results else COCO(), "keypoints")
        ev.params.imgIds = sorted(gt.getImgIds())
        if results:
            ev.evaluate()
    last_match: dict[int, int] = {}
    score = TrackScore()
    for frame in ev.params.imgIds:
        truths = [a for a in gt.imgToAnns[frame] if a["num_keypoints"] > 0]
        found = sorted(ev._dts.get((frame, 1), []) if results else [], key=lambda d: -d["score"])
        found = found[:ev.params.maxDets[-1]]
        pairs: list[tuple[int, int]] = []
        if truths and found:
            oks = np.asarray(ev.ious[(frame, 1)])  # (found, all ground truth of the frame), found by score
            everyone = ev._gts[(frame, 1)]
            similarity = oks[:, [everyone.index(a) for a in truths]]
            for c, a in enumerate(truths):  # CLEAR-MOT: a match of the last frame that still holds is kept
                r = next((r for r, d in enumerate(found) if int(d["idx"]) == last_match.get(a["track_id"])), None)
                if r is not None and similarity[r, c] >= min_oks:
                    pairs.append((r, c))
            rows = [r for r in range(len(found)) if r not in {p[0] for p in pairs}]
            cols = [c for c in range(len(truths)) if c not in {p[1] for p in pairs}]
            block = similarity[np.ix_(rows, cols)]
            pairs += [(rows[r], cols[c]) for r, c in zip(*linear_sum_assignment(block, maximize=True))
                      if block[r, c] >= min_oks]
        switches = 0
        for r, c in pairs:
            track, idx = truths[c]["track_id"], int(found[r]["idx"])
            switches += int(track in last_match and last_match[track] != idx)
            last_match[track] = idx
        score = score + TrackScore(len(truths), len(pairs), len(found) - len(pairs), switches)
    return score


def retrack(results: list[dict], keypoint_names: list[str], config) -> list[dict]:
    """The same poses with ids from a fresh tracker of ``config`` (None: no tracker, ``idx`` = rank)."""
    from rmpe.runtime.frames import poses_from_entries
    from rmpe.runtime.tracking import PoseTracker

    by_frame: dict[int, list[dict]] = {}
    for r in results:
        by_frame.setdefault(r["frame"], []).append(r)
    tracker = PoseTracker(keypoint_names, config) if config is not None else None
    out = []
    for frame in sorted(by_frame):
        entries = by_frame[frame]
        poses, _ = poses_from_entries(entries, len(keypoint_names))
        ids = tracker.update(poses, frame) if tracker is not None else np.arange(len(entries))
        out += [{**e, "idx": int(i)} for e, i in zip(entries, ids)]
    return out


def run(args: argparse.Namespace) -> int:
    """Make (or read) the clips, run rmpe-run --track on each, print the table."""
    from rmpe.runtime.cli import main as run_main
    from rmpe.runtime.estimator import PoseEstimator
    from rmpe.runtime.tracking import TrackerConfig
    from rmpe.training.synth_video import ClipConfig, clip_name, write_clips

    with tempfile.TemporaryDirectory(prefix="rmpe-track-") as tmp:
        data = args.data or Path(tmp) / "clips"
        if args.data is None:
            write_clips(data, args.clips, args.seed, ClipConfig(frames=args.frames))
        clips = sorted(data.glob("clip_*.mp4"))
        if not clips:
            print(f"{PROG}: error: no clip_*.mp4 in {data} (make them with rmpe-data synth-video)", file=sys.stderr)
            return 2
        with PoseEstimator(args.model) as est:
            names = est.keypoint_names
        base = TrackerConfig()
        variants = {"rmpe-run --track (OKS + IoU)": "run", "IoU only": replace(base, oks_weight=0.0),
                    "OKS only": replace(base, oks_weight=1.0), "no tracker (idx = rank in frame)": None}
        totals = dict.fromkeys(variants, TrackScore())
        seconds = 0.0
        for clip in clips:
            out = Path(tmp) / f"{clip.stem}.results.json"
            start = time.perf_counter()
            code = run_main([str(args.model), str(clip), "--boxes", str(clip.with_suffix(".detections.json")),
                             "--track", "--out", str(out), "--quiet", "--threads", str(args.threads)])
            seconds += time.perf_counter() - start
            if code != 0:
                print(f"{PROG}: error: rmpe-run failed on {clip} (exit {code})", file=sys.stderr)
                return 2
            results = json.loads(out.read_text())
            truth = clip.with_name(f"{clip.stem}.json")
            for label, config in variants.items():
                tracked = results if config == "run" else retrack(results, names, config)
                totals[label] = totals[label] + score_tracks(truth, tracked, args.min_oks)
    print(f"{len(clips)} clips ({', '.join(c.stem for c in clips[:3])}{', ...' if len(clips) > 3 else ''}), "
          f"rmpe-run {seconds:.1f} s; OKS match >= {args.min_oks}; target <= {TARGET:g} switches / 100 person-frames\n")
    print("| tracker | person-frames | matched | false pos. | ID switches | per 100 | MOTA |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, s in totals.items():
        print(f"| {label} | {s.person_frames} | {s.matched} | {s.false_positives} | {s.id_switches} | "
              f"{s.switches_per_100:.2f} | {s.mota:.3f} |")
    met = totals["rmpe-run --track (OKS + IoU)"].switches_per_100 <= TARGET
    print(f"\ntarget {'met' if met else 'NOT met'}")
    return 0 if met else 1


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``track`` subcommand."""
    parser = sub.add_parser("track", help="identity switches of rmpe-run --track on synthetic crossing clips",
                            description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="exported model (.onnx)")
    parser.add_argument("--data", type=Path, metavar="DIR", help="clips written by rmpe-data synth-video (default: new ones)")
    parser.add_argument("--clips", type=int, default=8, help="clips to make without --data (default: %(default)s)")
    parser.add_argument("--frames", type=int, default=60, help="frames per clip made (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=20261205, help="seed of the clips made (default: %(default)s)")
    parser.add_argument("--min-oks", type=float, default=0.5, help="least OKS of a match (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (default: its own)")
    parser.set_defaults(func=run)
