"""Reference AlphaPose pose NMS (DESIGN §1.3) as plain per-pair Python loops.

Deliberately slow and literal: it is the baseline of ``rmpe-bench nms`` and the oracle of the
parity test of ``rmpe.runtime.pose_nms(mode="alphapose")``. Keypoints must be finite.
"""

from __future__ import annotations

import math

import numpy as np

from rmpe.runtime.pose_nms import ZERO_SCORE, AlphaPoseParams, PoseNMSResult


def _dist(a: list[float], b: list[float]) -> float:
    """Euclidean distance between two (x, y) points."""
    dx, dy = a[0] - b[0], a[1] - b[1]
    return math.sqrt(dx * dx + dy * dy)


def _similar(p: int, j: int, poses: list, scores: list, ref: float, prm: AlphaPoseParams) -> bool:
    """Whether candidate j falls in reference p's cluster (similarity or keypoint matches)."""
    simi, nmatch = 0.0, 0
    for n in range(len(poses[p])):
        d = _dist(poses[p][n], poses[j][n])
        if d <= prm.ksim_radius:
            simi += math.tanh(scores[p][n] / prm.delta1) * math.tanh(scores[j][n] / prm.delta1)
        simi += prm.mu * math.exp(-d / prm.delta2)
        if d <= min(ref, prm.match_cap):
            nmatch += 1
    return simi > prm.gamma or nmatch >= prm.match_thresh


def _merge(p: int, cluster: list[int], poses: list, scores: list, radius: float):
    """Score-weighted merge of the cluster around reference p, keypoint by keypoint."""
    xy, s = [], []
    for n in range(len(poses[p])):
        sw = swx = swy = sww = 0.0
        for j in cluster:
            if _dist(poses[p][n], poses[j][n]) <= radius:
                w = scores[j][n]
                sw, sww = sw + w, sww + w * w
                swx, swy = swx + w * poses[j][n][0], swy + w * poses[j][n][1]
        xy.append([swx / sw, swy / sw])
        s.append(sww / sw)
    return xy, s


def pose_nms_loop(
    boxes: np.ndarray, box_scores: np.ndarray, poses: np.ndarray, pose_scores: np.ndarray,
    ids: np.ndarray | None = None, **overrides: float,
) -> PoseNMSResult:
    """AlphaPose pose NMS, one candidate pair and one keypoint at a time."""
    prm = AlphaPoseParams(**overrides)
    pts = np.asarray(poses, np.float64).tolist()
    sc = [[ZERO_SCORE if v <= 0 else v for v in row] for row in np.asarray(pose_scores, float).tolist()]
    refs = [prm.alpha * max(b[2] - b[0], b[3] - b[1]) for b in np.asarray(boxes, float).tolist()]
    alive = list(range(len(pts)))
    kept, dropped = [], []
    while alive:
        means = [sum(sc[j]) / len(sc[j]) for j in alive]
        p = alive[means.index(max(means))]
        cluster = [j for j in alive if j == p or _similar(p, j, pts, sc, refs[p], prm)]
        alive = [j for j in alive if j not in cluster]
        if max(sc[p]) < prm.score_thresh:
            dropped += cluster
            continue
        xy, s = _merge(p, cluster, pts, sc, min(refs[p], prm.merge_cap))
        xs, ys = [q[0] for q in xy], [q[1] for q in xy]
        if max(s) < prm.score_thresh or 2.25 * (max(xs) - min(xs)) * (max(ys) - min(ys)) < prm.area_thresh:
            dropped += cluster
            continue
        kept.append((p, cluster, xy, s))
    k = np.asarray(poses).shape[1]
    pick = np.array([p for p, *_ in kept], np.int64)
    merged_s = np.array([s for *_, s in kept], np.float64).reshape(-1, k)
    return PoseNMSResult(
        keypoints=np.array([xy for _, _, xy, _ in kept], np.float32).reshape(-1, k, 2),
        keypoint_scores=merged_s.astype(np.float32),
        pick=pick,
        merged=[np.array(c, np.int64) for _, c, _, _ in kept],
        boxes=np.asarray(boxes)[pick],
        box_scores=np.asarray(box_scores)[pick],
        ids=None if ids is None else np.asarray(ids)[pick],
        scores=np.array([sum(s) / k + np.asarray(box_scores)[p] + 1.25 * max(s) for p, _, _, s in kept],
                        np.float32),
        dropped=np.array(sorted(dropped), np.int64),
    )
