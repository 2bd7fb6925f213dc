"""Simulated pose-NMS inputs: people with duplicate candidate poses, as a top-down detector gives.

Used by the NMS benchmark, the constant search of ``mode="rmpe"`` and the tests. Each person
gets 1..max_dups candidates: the true pose plus a per-candidate shift and per-keypoint noise of
standard deviation ``jitter_px + jitter_rel·size``; keypoint scores fall with the keypoint error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# A standing person in a unit-height box (x centred on 0), COCO keypoint order (DESIGN §2).
_TEMPLATE = np.array([
    [0.0, 0.08], [-0.03, 0.06], [0.03, 0.06], [-0.06, 0.07], [0.06, 0.07],
    [-0.12, 0.2], [0.12, 0.2], [-0.17, 0.35], [0.17, 0.35], [-0.2, 0.48], [0.2, 0.48],
    [-0.08, 0.52], [0.08, 0.52], [-0.08, 0.74], [0.08, 0.74], [-0.08, 0.96], [0.08, 0.96],
])


@dataclass
class Scene:
    """Ground-truth people and the candidate poses a detector + SPPE would produce for them."""

    true_keypoints: np.ndarray  # (P, K, 2)
    true_boxes: np.ndarray  # (P, 4) xyxy
    boxes: np.ndarray  # (N, 4) xyxy
    box_scores: np.ndarray  # (N,)
    poses: np.ndarray  # (N, K, 2)
    pose_scores: np.ndarray  # (N, K)
    person: np.ndarray  # (N,) index of the true person of each candidate


def _people(rng: np.random.Generator, n: int, k: int, size_range: tuple[float, float],
            image: float) -> tuple[np.ndarray, np.ndarray]:
    """True poses (template with pose noise; random template if K != 17) and their boxes."""
    template = _TEMPLATE if k == len(_TEMPLATE) else np.c_[rng.uniform(-0.25, 0.25, k),
                                                           rng.uniform(0, 1, k)]
    heights = np.exp(rng.uniform(*np.log(size_range), n))
    centres = rng.uniform(0, image, (n, 2))
    shape = template[None] + rng.normal(0, 0.03, (n, k, 2))
    keypoints = centres[:, None] + (shape - [0, 0.5]) * heights[:, None, None]
    margin = 0.05 * heights[:, None]
    boxes = np.c_[keypoints.min(1) - margin, keypoints.max(1) + margin]
    return keypoints, boxes


def make_scene(
    rng: np.random.Generator, n_people: int, *, max_dups: int = 6, k: int = 17,
    size_range: tuple[float, float] = (20.0, 800.0), jitter_px: float = 0.0,
    jitter_rel: float = 0.02, image: float = 2000.0,
) -> Scene:
    """A scene of ``n_people`` people with 1..max_dups candidates each."""
    true_kp, true_boxes = _people(rng, n_people, k, size_range, image)
    person = np.repeat(np.arange(n_people), rng.integers(1, max_dups + 1, n_people))
    n = len(person)
    size = (true_boxes[person, 2:] - true_boxes[person, :2]).max(1)
    sigma = (jitter_px + jitter_rel * size)[:, None, None]
    shift = rng.normal(0, 0.5, (n, 1, 2)) * sigma
    poses = true_kp[person] + shift + rng.normal(0, 1, (n, k, 2)) * sigma
    err = np.linalg.norm(poses - true_kp[person], axis=2) / (0.05 * size[:, None] + 1e-9)
    quality = rng.uniform(0.5, 1.0, (n, 1))
    pose_scores = np.clip(quality * np.exp(-0.5 * err**2) + rng.normal(0, 0.05, (n, k)), 0, 1)
    box_jitter = rng.normal(0, 0.05, (n, 4)) * size[:, None]
    return Scene(true_kp, true_boxes, true_boxes[person] + box_jitter, rng.uniform(0.3, 1.0, n),
                 poses, pose_scores, person)


def candidates(scene: Scene) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The four ``pose_nms`` inputs of a scene."""
    return scene.boxes, scene.box_scores, scene.poses, scene.pose_scores
