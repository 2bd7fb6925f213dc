"""Pose tracking across frames: each person keeps an id while it is seen (``rmpe-run --track``).

Every frame, the tracks' last poses are moved by their velocity to where they should be now, and
compared with the frame's poses by a blend of object keypoint similarity (OKS, COCO's formula with
the layout's per-keypoint sigmas, scaled by the track's box area) and box IoU. SciPy's Hungarian
solver picks the assignment of largest total similarity; a pair below ``min_similarity`` is not a
match. Unmatched poses start new tracks; a track unseen for more than ``ttl`` frames is dropped, so
a person hidden for a moment (crossing behind someone) gets its id back when it reappears.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .estimator import Poses
from .keypoints import COCO_KEYPOINTS, COCO_OKS_SIGMAS

DEFAULT_SIGMA = 0.08  # a keypoint without a COCO sigma: about a hip's or a knee's spread


def oks_sigmas(names: list[str]) -> np.ndarray:
    """Per-keypoint OKS sigmas of a layout: COCO's for keypoints COCO names, ``DEFAULT_SIGMA`` otherwise."""
    coco = dict(zip(COCO_KEYPOINTS, COCO_OKS_SIGMAS))
    return np.array([coco.get(name, DEFAULT_SIGMA) for name in names], np.float64)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of xyxy boxes ``a`` (N, 4) against ``b`` (M, 4) → (N, M)."""
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def pose_oks(a: np.ndarray, a_scores: np.ndarray, areas: np.ndarray, b: np.ndarray, b_scores: np.ndarray,
             sigmas: np.ndarray, vis_thr: float) -> np.ndarray:
    """OKS of poses ``a`` (N, K, 2; ``areas`` (N,) their scale) against poses ``b`` (M, K, 2) → (N, M),
    over the keypoints both poses score above ``vis_thr`` (0 where they share none)."""
    variances = (2 * sigmas) ** 2
    d2 = ((a[:, None] - b[None]) ** 2).sum(axis=3)  # (N, M, K)
    shared = (a_scores[:, None] > vis_thr) & (b_scores[None] > vis_thr) & np.isfinite(d2)
    e = np.where(shared, d2, 0.0) / variances / (2 * np.maximum(areas, 1.0)[:, None, None])
    count = shared.sum(axis=2)
    return np.where(count > 0, (np.exp(-e) * shared).sum(axis=2) / np.maximum(count, 1), 0.0)


@dataclass(frozen=True)
class TrackerConfig:
    """How poses are matched: ``ttl`` frames a lost track is kept, the OKS share of the similarity
    (the rest is box IoU), the least similarity of a match, the keypoint score OKS counts from, and
    the person score from which a pose is ``confident``."""

    ttl: int = 30
    oks_weight: float = 0.5
    min_similarity: float = 0.2
    vis_thr: float = 0.3
    confident: float = 0.5
    smoothing: float = 0.5  # weight of the newest displacement in the velocity estimate


@dataclass
class _Track:
    id: int
    keypoints: np.ndarray  # (K, 2) last seen
    scores: np.ndarray  # (K,)
    box: np.ndarray  # xyxy last seen
    frame: int  # frame last seen
    velocity: np.ndarray  # (2,) pixels per frame: the median keypoint's, smoothed
    confirmed: bool  # seen with a confident pose: kept for ttl frames when lost


class PoseTracker:
    """Gives the poses of consecutive frames of one sequence persistent ids (1, 2, 3, ...).

    Matching runs in two rounds, as ByteTrack does with boxes: confident poses first, against every
    track; then the other poses, only against tracks seen in the previous frame. So a weak pose (a
    false detection, a half-hidden duplicate) can continue a track but never takes over one whose
    person is hidden, and a track that no confident pose ever matched ends when it is first missed.
    """

    def __init__(self, keypoint_names: list[str], config: TrackerConfig = TrackerConfig(), first_id: int = 1,
                 sigmas: list[float] | None = None) -> None:
        self.sigmas = oks_sigmas(keypoint_names) if sigmas is None else np.asarray(sigmas, np.float64)  # the model's, where it has them
        self.config = config
        self.next_id = first_id
        self.tracks: list[_Track] = []
        self.frame = -1

    def update(self, poses: Poses, frame: int | None = None) -> np.ndarray:
        """The track id of each of ``poses`` (frame ``frame``; default: the one after the last)."""
        frame = self.frame + 1 if frame is None else int(frame)
        previous = self.frame
        self.tracks = [t for t in self.tracks if frame - t.frame <= (self.config.ttl if t.confirmed else frame - previous)]
        ids = np.zeros(len(poses), np.int64)
        confident = poses.scores >= self.config.confident
        free = list(range(len(self.tracks)))
        if self.tracks and len(poses):
            similarity = self.similarity(poses, frame)
            free = self._assign(similarity, free, np.flatnonzero(confident), poses, ids, frame)
            recent = [r for r in free if self.tracks[r].frame == previous]
            self._assign(similarity, recent, np.flatnonzero(~confident), poses, ids, frame)
        for c in np.flatnonzero(ids == 0):
            ids[c] = self._start(poses, int(c), frame)
        self.frame = frame
        return ids

    def _assign(self, similarity: np.ndarray, rows: list[int], cols: np.ndarray, poses: Poses, ids: np.ndarray,
                frame: int) -> list[int]:
        """Hungarian matching of tracks ``rows`` to poses ``cols``; matched poses take their track's id.
        Returns the tracks left unmatched."""
        from scipy.optimize import linear_sum_assignment

        if not rows or not len(cols):
            return rows
        block = similarity[np.ix_(rows, cols)]
        taken = set()
        for r, c in zip(*linear_sum_assignment(block, maximize=True)):
            if block[r, c] >= self.config.min_similarity:
                track = self.tracks[rows[r]]
                self._follow(track, poses, int(cols[c]), frame)
                ids[cols[c]] = track.id
                taken.add(rows[r])
        return [r for r in rows if r not in taken]

    def seed(self, frame: int, poses: Poses, ids: np.ndarray) -> None:
        """Tracks at ``poses`` with ``ids`` as seen in frame ``frame`` (a resumed run's last journalled frame)."""
        for i, track_id in enumerate(ids.tolist()):
            self._add(int(track_id), poses, i, frame)
        self.next_id = max([self.next_id, *(int(i) + 1 for i in ids.tolist())])
        self.frame = max(self.frame, frame)

    def similarity(self, poses: Poses, frame: int) -> np.ndarray:
        """(tracks, poses) similarity: OKS and IoU of each track's pose moved to ``frame`` by its velocity."""
        shift = np.stack([t.velocity * (frame - t.frame) for t in self.tracks])  # (T, 2)
        keypoints = np.stack([t.keypoints for t in self.tracks]) + shift[:, None]
        boxes = np.stack([t.box for t in self.tracks]) + np.tile(shift, 2)
        areas = np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=1)
        oks = pose_oks(keypoints, np.stack([t.scores for t in self.tracks]), areas,
                       poses.keypoints.astype(np.float64), poses.keypoint_scores.astype(np.float64),
                       self.sigmas, self.config.vis_thr)
        iou = box_iou(boxes, poses.boxes.astype(np.float64))
        w = self.config.oks_weight
        return w * oks + (1 - w) * iou

    def _follow(self, track: _Track, poses: Poses, i: int, frame: int) -> None:
        """Move ``track`` to pose ``i`` of ``frame`` and update its velocity."""
        box = poses.boxes[i].astype(np.float64)
        keypoints, scores = poses.keypoints[i].astype(np.float64), poses.keypoint_scores[i].astype(np.float64)
        shared = (scores > self.config.vis_thr) & (track.scores > self.config.vis_thr)
        shared &= np.isfinite(keypoints).all(axis=1) & np.isfinite(track.keypoints).all(axis=1)
        if shared.any():  # keypoints move with the body; detector boxes jitter with every frame
            moved = np.median(keypoints[shared] - track.keypoints[shared], axis=0)
        else:
            moved = ((box[:2] + box[2:]) - (track.box[:2] + track.box[2:])) / 2
        a = self.config.smoothing
        track.velocity = a * moved / max(1, frame - track.frame) + (1 - a) * track.velocity
        track.keypoints, track.scores, track.box, track.frame = keypoints, scores, box, frame
        track.confirmed = track.confirmed or bool(poses.scores[i] >= self.config.confident)

    def _start(self, poses: Poses, i: int, frame: int) -> int:
        """A new track at pose ``i``; returns its id."""
        self._add(self.next_id, poses, i, frame)
        self.next_id += 1
        return self.next_id - 1

    def _add(self, track_id: int, poses: Poses, i: int, frame: int) -> None:
        self.tracks.append(_Track(track_id, poses.keypoints[i].astype(np.float64),
                                  poses.keypoint_scores[i].astype(np.float64), poses.boxes[i].astype(np.float64),
                                  frame, np.zeros(2), bool(poses.scores[i] >= self.config.confident)))
