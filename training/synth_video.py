"""Synthetic video clips: the procedural people of ``synth.py`` walking across a static scene.

Each clip has 2 or more walkers going left or right at their own speeds and depths; their paths
meet near the middle of the clip, so people cross (the nearer, taller one in front) and most of
them enter or leave the frame. A walker keeps its body, clothes and facing in every frame
(``numpy.random.default_rng([seed, clip, 0, person])`` is drawn afresh per frame) while its arms
and legs swing with a stride that matches its speed. Every frame has COCO keypoint annotations with
``track_id`` (the walker, from 1) and ``image_id`` = the frame index, and simulated detections;
``rmpe-data synth-video`` writes each clip as H.264 MP4 with those two files beside it. A seed
gives the same frames and JSON bytes; the MP4 bytes can differ slightly between encodes (the x264
inside PyAV's wheel is not always bit-exact), by about one grey level on average.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from .synth import (_Painter, _Person, _background, _draw_clutter, _finish, _pose_person, _sample_angles,
                    _simulate_detections, _translate, _unit, coco_category, draw_people)


@dataclass(frozen=True)
class ClipConfig:
    """What every clip of a set shares: length, frame rate, size (even, for 4:2:0 video), walkers."""

    frames: int = 40
    fps: int = 10
    size: tuple[int, int] = (320, 240)  # width, height
    min_people: int = 2
    max_people: int = 3
    min_height: float = 0.45  # person height as a fraction of the frame height
    max_height: float = 0.75


@dataclass(frozen=True)
class Walker:
    """One person's walk: hip centre ``at`` (pixels) at frame ``meet``, ``velocity`` px/frame,
    height in pixels, stride ``period`` (frames) and ``phase``, swing ``amplitude`` (radians), yaw."""

    track_id: int
    at: tuple[float, float]
    meet: float
    velocity: tuple[float, float]
    height: float
    period: float
    phase: float
    amplitude: float
    yaw: float

    def centre(self, t: int) -> np.ndarray:
        """Hip centre at frame ``t``."""
        return np.array(self.at) + (t - self.meet) * np.array(self.velocity)


def plan_walkers(rng: np.random.Generator, config: ClipConfig) -> list[Walker]:
    """Walkers in alternating directions whose paths meet mid-clip; some start or end outside the frame."""
    w, h = config.size
    n = int(rng.integers(config.min_people, config.max_people + 1))
    first = 1 if rng.random() < 0.5 else -1
    walkers = []
    for i in range(n):
        direction = first * (-1) ** i
        height = rng.uniform(config.min_height, config.max_height) * h
        speed = rng.uniform(0.6, 1.3) * w / config.frames
        y = rng.uniform(0.02 * h + 0.52 * height, 0.98 * h - 0.5 * height)
        period = float(np.clip(0.8 * height / speed, 6, 30))
        walkers.append(Walker(i + 1, (rng.uniform(0.35, 0.65) * w, y), rng.uniform(0.35, 0.65) * config.frames,
                              (direction * speed, rng.normal(0, 0.05) * speed), height, period,
                              rng.uniform(0, 2 * math.pi), math.radians(rng.uniform(18, 35)),
                              direction * math.pi / 2 * rng.uniform(0.35, 0.7)))
    return walkers


def walker_person(seed: int, clip: int, walker: Walker, t: int) -> _Person:
    """The walker at frame ``t``: its own body and clothes in the stride pose of that frame."""
    rng = np.random.default_rng([seed, clip, 0, walker.track_id])
    ang, _ = _sample_angles(rng)
    phi = walker.phase + 2 * math.pi * t / walker.period
    swing = walker.amplitude * math.sin(phi)
    ang.update(lean=math.radians(4), side=0.0, arm_f_l=swing, arm_f_r=-swing, leg_f_l=-swing, leg_f_r=swing,
               knee_l=math.radians(8) + 1.2 * walker.amplitude * max(0.0, math.sin(phi)),
               knee_r=math.radians(8) + 1.2 * walker.amplitude * max(0.0, -math.sin(phi)))
    for side in ("l", "r"):
        ang[f"arm_a_{side}"] = min(ang[f"arm_a_{side}"], math.radians(20))
        ang[f"leg_a_{side}"] = math.radians(3)
    person = _pose_person(rng, ang, 0.0, walker.height, yaw=walker.yaw)
    return _translate(person, walker.centre(t))


@dataclass
class Frame:
    """One rendered frame: RGB image, annotations (with ``track_id``) and simulated detections."""

    image: np.ndarray
    annotations: list[dict]
    detections: list[dict]


def render_clip(seed: int, clip: int, config: ClipConfig = ClipConfig()) -> Iterator[Frame]:
    """The frames of clip ``clip`` of set ``seed``, one at a time (same inputs → same frames)."""
    w, h = config.size
    rng = np.random.default_rng([seed, clip, 2])
    light = _unit(rng.normal(0, 1, 2))
    scene = Image.fromarray(_background(rng, w, h))
    clutter = _draw_clutter(_Painter(scene, light), rng, w, h)
    walkers = sorted(plan_walkers(rng, config), key=lambda k: k.height)  # far (small) people drawn first
    backdrop = np.asarray(scene)
    for t in range(config.frames):
        frame_rng = np.random.default_rng([seed, clip, 1, t])
        canvas = Image.fromarray(backdrop.copy())
        people = [walker_person(seed, clip, k, t) for k in walkers]
        annotations, det_people, _ = draw_people(_Painter(canvas, light), people, w, h, t)
        track_of = {id(person): k.track_id for person, k in zip(people, walkers)}
        for annotation, (person, _, _) in zip(annotations, det_people):
            annotation["track_id"] = track_of[id(person)]
        detections = [{"image_id": t, **d} for d in _simulate_detections(frame_rng, det_people, clutter, w, h)]
        yield Frame(_finish(frame_rng, canvas), annotations, detections)


def clip_name(clip: int) -> str:
    """File stem of clip number ``clip``."""
    return f"clip_{clip:03d}"


def write_clip(out_dir: str | Path, seed: int, clip: int, config: ClipConfig = ClipConfig()) -> dict:
    """Write ``clip_NNN.mp4``, ``clip_NNN.json`` (COCO ground truth per frame) and
    ``clip_NNN.detections.json``; returns counts of frames, annotations and detections."""
    from rmpe.runtime.video import VideoWriter

    out = Path(out_dir)
    name = clip_name(clip)
    w, h = config.size
    writer = VideoWriter(out / f"{name}.mp4", Fraction(config.fps), quality=16, threads=1)
    images, annotations, detections = [], [], []
    for t, frame in enumerate(render_clip(seed, clip, config)):
        writer.add(frame.image)
        images.append({"id": t, "frame": t, "file_name": f"{name}.mp4", "width": w, "height": h})
        annotations += [{"id": len(annotations) + i + 1, **a} for i, a in enumerate(frame.annotations)]
        detections += frame.detections
    writer.close()
    truth = {"info": {"description": "rmpe synthetic walkers", "version": "1", "seed": seed, "clip": clip},
             "video": {"file_name": f"{name}.mp4", "fps": config.fps, "frames": config.frames, "width": w, "height": h},
             "images": images, "annotations": annotations, "categories": [coco_category()]}
    for path, obj in ((out / f"{name}.json", truth), (out / f"{name}.detections.json", detections)):
        path.write_text(json.dumps(obj, separators=(",", ":")), encoding="utf-8")
    return {"frames": len(images), "annotations": len(annotations), "detections": len(detections)}


def write_clips(out_dir: str | Path, clips: int, seed: int, config: ClipConfig = ClipConfig()) -> dict:
    """Write ``clips`` clips into ``out_dir``; returns the summed counts."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    totals = {"clips": clips, "frames": 0, "annotations": 0, "detections": 0}
    for clip in range(clips):
        for key, value in write_clip(out_dir, seed, clip, config).items():
            totals[key] += value
    return totals
