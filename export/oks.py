"""Keypoint differences in OKS units: how far two backends' keypoints are apart, as COCO scores it.

COCO's OKS gives a keypoint exp(−d² / (2 s² κ²)) with s² the person's area and κ = 2σ its
keypoint's sigma. Here a distance d is given as u = d / (s κ), so u = 1 is where that term falls to
0.61 and u = 0.1 costs 0.005: a 70 px move of a wrist on a 400 px person (u ≈ 1.4) is a
regression, the same move of an ankle the model cannot see and a flip of its argmax sends across
the crop scores as what it is. numpy only, so benchmarks can use it without torch.
"""

from __future__ import annotations

import numpy as np


def oks_units(distance_px: np.ndarray, boxes: np.ndarray, sigmas: list[float] | np.ndarray) -> np.ndarray:
    """(N, K) pixel distances of N people with xyxy ``boxes`` (N, 4) → the same in OKS units (box area as s²)."""
    boxes = np.asarray(boxes, np.float64)
    area = np.clip(boxes[:, 2] - boxes[:, 0], 1.0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 1.0, None)
    scale = np.sqrt(area)[:, None] * 2.0 * np.asarray(sigmas, np.float64)[None, :]
    return np.asarray(distance_px, np.float64) / scale


def spread(values: np.ndarray) -> dict[str, float]:
    """Median, 99th percentile and maximum of the finite ``values`` (zeros when there are none)."""
    finite = np.asarray(values, np.float64)[np.isfinite(values)]
    if finite.size == 0:
        return {"median": 0.0, "p99": 0.0, "max": 0.0}
    return {"median": float(np.median(finite)), "p99": float(np.percentile(finite, 99)), "max": float(finite.max())}
