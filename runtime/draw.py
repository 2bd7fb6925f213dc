"""Drawing poses on images: a colour per limb over a dark outline, so it reads on dark and light photos."""

from __future__ import annotations

import colorsys
from typing import Sequence

import numpy as np

from .estimator import Poses

OUTLINE = (20, 20, 20)
BOX_COLOUR = (255, 200, 0)


def palette(n: int) -> list[tuple[int, int, int]]:
    """``n`` saturated, evenly spaced hues."""
    return [tuple(int(c * 255) for c in colorsys.hsv_to_rgb(i / max(n, 1), 0.85, 1.0)) for i in range(n)]


def id_colour(track_id: int) -> tuple[int, int, int]:
    """A track id's colour: hues a golden-ratio turn apart, so neighbouring ids never look alike."""
    return tuple(int(c * 255) for c in colorsys.hsv_to_rgb((track_id * 0.618034) % 1.0, 0.9, 1.0))


def draw_poses(image: np.ndarray, poses: Poses, skeleton: list[list[int]], vis_thr: float = 0.3,
               ids: Sequence[int] | None = None):
    """Return a PIL image with boxes, scores, limbs (1-based ``skeleton``) and keypoints above ``vis_thr``;
    with track ``ids``, each box and label is in its id's colour and the label starts with ``#id``."""
    from PIL import Image, ImageDraw

    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    width = max(2, round(min(image.shape[:2]) / 200))
    radius = width + 1
    limb_colours = palette(len(skeleton))
    point_colours = palette(poses.keypoints.shape[1] if len(poses) else 0)
    for i, pose in enumerate(poses):
        box_colour = BOX_COLOUR if ids is None else id_colour(int(ids[i]))
        x1, y1, x2, y2 = (float(v) for v in pose.box)
        draw.rectangle([x1, y1, x2, y2], outline=OUTLINE, width=width + 2)
        draw.rectangle([x1, y1, x2, y2], outline=box_colour, width=max(1, width - 1))
        label = f"{pose.score:.2f}" if ids is None else f"#{int(ids[i])} {pose.score:.2f}"
        left, top, right, bottom = draw.textbbox((x1 + 2, y1 + 2), label)
        draw.rectangle([left - 2, top - 2, right + 2, bottom + 2], fill=OUTLINE)
        draw.text((x1 + 2, y1 + 2), label, fill=box_colour)
        visible = pose.keypoint_scores > vis_thr
        points = [tuple(p) for p in pose.keypoints.astype(float).tolist()]
        limbs = [((a - 1, b - 1), colour) for (a, b), colour in zip(skeleton, limb_colours)
                 if visible[a - 1] and visible[b - 1]]
        for (a, b), _ in limbs:  # all outlines first, so they never cover a neighbouring limb
            draw.line([points[a], points[b]], fill=OUTLINE, width=width + 3)
        for (a, b), colour in limbs:
            draw.line([points[a], points[b]], fill=colour, width=width)
        for k in np.flatnonzero(visible):
            x, y = points[k]
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=point_colours[k], outline=OUTLINE)
    return canvas
