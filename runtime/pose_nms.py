"""Parametric pose NMS (RMPE §3.3, DESIGN §1.3) in numpy.

Two modes share one greedy loop: take the alive candidate with the highest mean keypoint score as
the reference, eliminate every alive candidate that is too similar to it (its *cluster*), repeat;
then merge each cluster into one pose and filter the merged poses.

- ``mode="alphapose"`` reproduces the widely used AlphaPose rules exactly: absolute-pixel
  distances, a 1-pixel K_sim window, unsquared ``exp(-d/σ2)``, match/merge radii
  ``min(alpha·max(w, h), 7 | 15)`` px.
- ``mode="rmpe"`` (rmpe-run's default) is the paper's scale-aware form: every distance is divided
  by the reference box size ``S = max(w, h)``, the K_sim window is a square of side
  ``ksim_window·S`` centred on the reference keypoint, ``H_sim`` uses squared normalised
  distances, and the match/merge radii are fractions of ``S``. Scaling the whole scene leaves
  every decision unchanged (the area filter, which is in px², aside).

The two modes also rank their output differently (``person_score``): AlphaPose's person score
``mean(ŝ) + box score + 1.25·max(ŝ)``, or rmpe's median keypoint score ŝ, which tracks a pose's
OKS better (a few confident keypoints or a confident box do not lift a half-wrong pose) and
raises COCO keypoint AP by ~0.02 on the synthetic set (BENCHMARKS.md "Keypoint AP").

Keypoints with a NaN coordinate or score are *missing*: they never match, never merge, score 0
in rankings, and a merged keypoint with no contributions comes out as NaN with score 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Iterator, Literal, Union

import numpy as np

Mode = Literal["alphapose", "rmpe"]

ZERO_SCORE = 1e-5  # AlphaPose replaces keypoint scores of 0 by this; we do so for any score <= 0 (heatmap peaks can be negative)
_PAIR_CHUNK = 1 << 14  # candidate pairs evaluated per numpy pass
_ROW_CHUNK = 512  # reference candidates whose near pairs are found per pass


@dataclass(frozen=True)
class AlphaPoseParams:
    """AlphaPose's constants; lengths in pixels."""

    delta1: float = 1.0  # σ1: softness of the score product in K_sim
    mu: float = 1.7  # λ: weight of H_sim
    delta2: float = 2.65  # σ2: decay of exp(-d/σ2) in H_sim
    gamma: float = 22.48  # η: eliminate when the similarity exceeds this
    score_thresh: float = 0.3  # drop a pose whose best keypoint score is below this
    match_thresh: int = 5  # eliminate when this many keypoints lie within the match radius
    area_thresh: float = 0.0  # drop a merged pose whose 2.25·range(x)·range(y) (px²) is below this
    alpha: float = 0.1  # match and merge radii as a fraction of max(w, h) of the reference box
    match_cap: float = 7.0  # upper bound of the match radius (px)
    merge_cap: float = 15.0  # upper bound of the merge radius (px)
    ksim_radius: float = 1.0  # K_sim counts keypoints within this Euclidean distance (px)
    person_score: str = "alphapose"  # output ranking: mean(ŝ) + box score + 1.25·max(ŝ)

    def scale(self, box_sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per reference box of size max(w, h): length unit (1 px), match and merge radii (px)."""
        ref = self.alpha * box_sizes
        return np.ones_like(box_sizes), np.minimum(ref, self.match_cap), np.minimum(ref, self.merge_cap)

    def window(self, dx: np.ndarray, dy: np.ndarray, dist: np.ndarray, unit: np.ndarray) -> np.ndarray:
        """K_sim window: within ksim_radius px (Euclidean) of the reference keypoint."""
        return dist <= self.ksim_radius

    def closeness(self, dist: np.ndarray, unit: np.ndarray) -> np.ndarray:
        """H_sim terms exp(-d/σ2) over pixel distances, unsquared as in AlphaPose."""
        return np.exp(dist * (-1.0 / self.delta2))

    def closeness_radius(self, level: float) -> float:
        """Distance (units) at which one H_sim term falls to ``level`` (0 < level < 1)."""
        return float(-self.delta2 * np.log(level))

    def window_radius(self) -> float:
        """Largest distance (units) inside the K_sim window."""
        return self.ksim_radius


@dataclass(frozen=True)
class RMPEParams:
    """Scale-aware constants; lengths are fractions of the reference box size S = max(w, h).

    Chosen with ``python -m rmpe.benchmarks.nms_tuning --model model.onnx --data val...`` (see
    BENCHMARKS.md "Pose NMS"): a grid over match_radius, merge_radius and match_thresh on the
    bundled model's candidates (every simulated detection) on three synthetic validation sets,
    by mean COCO keypoint AP: match radius 0.05 and merge radius 0.15 gave 0.738 against 0.735 for
    the constants before (0.1, 0.25, picked on simulated scenes with ``nms_tuning`` alone), and
    +0.004 / +0.003 on two more sets not used to choose. delta2 and gamma move AP by < 0.001.
    """

    delta1: float = 1.0
    mu: float = 1.7
    delta2: float = 0.01  # σ2 of exp(-(d/S)²/σ2)
    gamma: float = 22.48
    score_thresh: float = 0.3
    match_thresh: int = 8
    area_thresh: float = 0.0  # px², like AlphaPose (not scale-invariant; 0 disables it)
    match_radius: float = 0.05  # match radius / S
    merge_radius: float = 0.15  # merge radius / S
    ksim_window: float = 0.1  # side of the K_sim square window / S (paper: 1/10 of the box)
    person_score: str = "median"  # output ranking: median(ŝ)

    def scale(self, box_sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per reference box: length unit S (guarded against 0), match and merge radii (px)."""
        units = np.maximum(box_sizes, np.finfo(np.float64).tiny)
        return units, self.match_radius * units, self.merge_radius * units

    def window(self, dx: np.ndarray, dy: np.ndarray, dist: np.ndarray, unit: np.ndarray) -> np.ndarray:
        """K_sim window: inside the square of side ksim_window·S centred on the reference keypoint."""
        return np.maximum(np.abs(dx), np.abs(dy)) <= (0.5 * self.ksim_window) * unit

    def closeness(self, dist: np.ndarray, unit: np.ndarray) -> np.ndarray:
        """H_sim terms exp(-(d/S)²/σ2) over normalised distances, as in the paper."""
        return np.exp(np.square(dist) * (-1.0 / self.delta2 / np.square(unit)))

    def closeness_radius(self, level: float) -> float:
        """Distance (units) at which one H_sim term falls to ``level`` (0 < level < 1)."""
        return float(np.sqrt(-self.delta2 * np.log(level)))

    def window_radius(self) -> float:
        """Largest distance (units) inside the K_sim window (half its diagonal)."""
        return float(np.sqrt(0.5) * self.ksim_window)


Params = Union[AlphaPoseParams, RMPEParams]
PERSON_SCORES = ("alphapose", "median")


def _check_person_score(rule: str) -> None:
    if rule not in PERSON_SCORES:
        raise ValueError(f"unknown person score {rule!r}; choose one of {', '.join(PERSON_SCORES)}")


def person_scores(keypoint_scores: np.ndarray, box_scores: np.ndarray, rule: str) -> np.ndarray:
    """(M,) person scores from (M, K) keypoint and (M,) box scores by ``rule`` (module docstring)."""
    _check_person_score(rule)
    if rule == "alphapose":
        return keypoint_scores.mean(axis=1) + box_scores + 1.25 * keypoint_scores.max(axis=1)
    return np.median(keypoint_scores, axis=1)


_PARAMS: dict[str, type] = {"alphapose": AlphaPoseParams, "rmpe": RMPEParams}
_DEFAULTS: dict[str, Params] = {mode: cls() for mode, cls in _PARAMS.items()}  # frozen, so shared


def nms_params(mode: Mode = "alphapose", **overrides: float | str) -> Params:
    """The constants of ``mode`` with ``overrides`` applied; unknown names raise TypeError."""
    if mode not in _PARAMS:
        raise ValueError(f"mode must be one of {sorted(_PARAMS)}, got {mode!r}")
    cls = _PARAMS[mode]
    if not overrides:
        return _DEFAULTS[mode]
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"unknown constant(s) {unknown} for mode {mode!r}; known: {sorted(known)}")
    params = replace(cls(), **overrides)
    _check_person_score(params.person_score)  # before the NMS work, not after it
    return params


@dataclass
class PoseNMSResult:
    """Kept poses in greedy order (M of them) and where every input went."""

    keypoints: np.ndarray  # (M, K, 2) float32 merged keypoints
    keypoint_scores: np.ndarray  # (M, K) float32 merged keypoint scores ŝ
    pick: np.ndarray  # (M,) int64 input index of each kept pose's reference
    merged: list[np.ndarray]  # M int64 arrays: input indices merged into each kept pose
    boxes: np.ndarray  # (M, 4) the pick's box
    box_scores: np.ndarray  # (M,) the pick's box score
    ids: np.ndarray | None  # (M,) the pick's id, or None when no ids were given
    scores: np.ndarray  # (M,) float32 person scores by the mode's ``person_score`` rule
    dropped: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    """int64 input indices whose cluster was removed by the score or area filter (sorted)."""


def _check_inputs(
    boxes: np.ndarray, box_scores: np.ndarray, poses: np.ndarray, pose_scores: np.ndarray,
    ids: np.ndarray | None,
) -> None:
    """Raise ValueError unless the arrays have the documented, mutually consistent shapes."""
    if poses.ndim != 3 or poses.shape[2] != 2 or poses.shape[1] < 1:
        raise ValueError(f"poses must have shape (N, K, 2) with K >= 1, got {poses.shape}")
    n, k = poses.shape[:2]
    expected = {"boxes": (boxes, (n, 4)), "box_scores": (box_scores, (n,)),
                "pose_scores": (pose_scores, (n, k))}
    if ids is not None:
        expected["ids"] = (ids, (n,))
    for name, (array, shape) in expected.items():
        if array.shape != shape:
            raise ValueError(f"{name} must have shape {shape} to match poses {poses.shape}, "
                             f"got {array.shape}")


def _offsets(
    xs: np.ndarray, ys: np.ndarray, j: np.ndarray, p: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel offsets of candidates j from references p and their lengths (missing: inf)."""
    dx = np.take(xs, j, axis=0) - np.take(xs, p, axis=0)
    dy = np.take(ys, j, axis=0) - np.take(ys, p, axis=0)
    return dx, dy, np.fmin(np.sqrt(dx * dx + dy * dy), np.inf)


def _row_sums(a: np.ndarray) -> np.ndarray:
    """Sum over keypoints as a matrix-vector product (much faster than .sum(axis=1) here)."""
    return a @ np.ones(a.shape[1])


def _reach(params: Params, k: int) -> float:
    """Distance (in units) beyond which keypoint pairs add nothing that can make p and j similar.

    If every keypoint pair of (p, j) is farther apart than this, j is outside the K_sim window,
    and K·μ·closeness(reach) <= γ bounds the similarity, so only matches can put j in p's cluster.
    Degenerate constants (γ <= 0, match_thresh <= 0) make everything reachable.
    """
    if params.gamma <= 0 or params.match_thresh <= 0:
        return np.inf
    level = params.gamma / (k * params.mu) if params.mu > 0 else np.inf
    closeness = params.closeness_radius(level) if level < 1 else 0.0
    return max(params.window_radius(), closeness)


def _extent(coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N,) lowest and highest keypoint coordinate of each candidate along one axis (NaN if none)."""
    return np.fmin.reduce(coords, axis=1), np.fmax.reduce(coords, axis=1)


def _gaps(lo: np.ndarray, hi: np.ndarray, rows: slice) -> np.ndarray:
    """(rows, N) gap along one axis between the extents of candidates ``rows`` and every candidate."""
    gap = np.maximum(lo[None, :] - hi[rows, None], lo[rows, None] - hi[None, :])
    return np.maximum(gap, 0.0, out=gap)


def _near_pairs(xs: np.ndarray, ys: np.ndarray, reach: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Pairs p != j whose keypoint extents are within p's reach (px); others cannot be similar.

    Yielded ``_ROW_CHUNK`` references at a time, so 10,000 candidates need (512, 10,000) matrices
    and pair lists, not (10,000, 10,000) ones (2.3 GB of them at once before).
    """
    n = len(xs)
    (lx, hx), (ly, hy) = _extent(xs), _extent(ys)
    for lo in range(0, n, _ROW_CHUNK):
        rows = slice(lo, min(lo + _ROW_CHUNK, n))
        gx, gy = _gaps(lx, hx, rows), _gaps(ly, hy, rows)
        gx *= gx
        gy *= gy
        gx += gy
        near = ~(gx > np.square(reach[rows])[:, None])  # NaN (no keypoints): near
        own = np.arange(rows.stop - lo)
        near[own, lo + own] = False
        p, j = near.nonzero()
        yield p + lo, j


def _similar(
    xs: np.ndarray, ys: np.ndarray, tanh_scores: np.ndarray, units: np.ndarray,
    match_px: np.ndarray, params: Params,
) -> np.ndarray:
    """(N, N) bool: j is in p's cluster when p is the reference (p itself always); all pairs at once."""
    n, k = tanh_scores.shape
    reach = np.maximum(_reach(params, k) * units, match_px) * (1 + 1e-6)
    similar = np.eye(n, dtype=bool)
    for pairs_p, pairs_j in _near_pairs(xs, ys, reach):
        for lo in range(0, len(pairs_p), _PAIR_CHUNK):  # bounds memory in crowded scenes
            p, j = pairs_p[lo:lo + _PAIR_CHUNK], pairs_j[lo:lo + _PAIR_CHUNK]
            dx, dy, dist = _offsets(xs, ys, j, p)
            unit = units[p, None]
            both = np.take(tanh_scores, j, axis=0) * np.take(tanh_scores, p, axis=0)
            ksim = _row_sums(params.window(dx, dy, dist, unit) * both)
            simi = ksim + params.mu * _row_sums(params.closeness(dist, unit))
            matches = np.count_nonzero(dist <= match_px[p, None], axis=1)
            similar[p, j] = (simi > params.gamma) | (matches >= params.match_thresh)
    return similar


def _greedy_clusters(similar: np.ndarray, rank: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Greedy elimination: the picks and their clusters (sorted input indices).

    Visiting candidates by descending rank (ties: lower index first) and taking each one still
    alive is the same as repeatedly taking numpy's argmax among the alive. A candidate belongs to
    the first pick similar to it (it was alive until then), so the clusters come from one argmax.
    """
    dissimilar = ~similar
    alive = np.ones(len(rank), bool)
    picks: list[int] = []
    for p in np.argsort(-rank, kind="stable").tolist():
        if alive[p]:
            picks.append(p)
            alive &= dissimilar[p]
    if not picks:
        return np.zeros(0, np.int64), []
    owner = similar[picks].argmax(axis=0)  # index into ``picks`` of each candidate's first similar pick
    members = np.argsort(owner, kind="stable")
    ends = np.cumsum(np.bincount(owner, minlength=len(picks))).tolist()
    return np.asarray(picks, np.int64), [members[a:b] for a, b in zip([0, *ends], ends)]


def _merge_clusters(
    xs: np.ndarray, ys: np.ndarray, scores: np.ndarray, picks: np.ndarray,
    clusters: list[np.ndarray], merge_px: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Score-weighted merge of every cluster at once: x̂ = Σw·x/Σw, ŝ = Σw²/Σw, w = s·[d ≤ r]."""
    sizes = [len(c) for c in clusters]
    members = np.concatenate([picks[:0], *clusters])
    ref = np.repeat(picks, sizes)  # each member's reference
    _, _, dist = _offsets(xs, ys, members, ref)
    inside = dist <= merge_px[ref, None]  # False for missing keypoints
    w = np.where(inside, scores[members], 0.0)
    terms = np.stack([w, w * w, w * np.where(inside, xs[members], 0.0),
                      w * np.where(inside, ys[members], 0.0)])
    starts = np.cumsum([0, *sizes[:-1]])[:len(sizes)]
    sum_w, sum_ww, sum_wx, sum_wy = np.add.reduceat(terms, starts, axis=1) if sizes else terms
    has = sum_w > 0
    safe = np.where(has, sum_w, 1.0)
    return (np.where(has, sum_wx / safe, np.nan), np.where(has, sum_wy / safe, np.nan),
            np.where(has, sum_ww / safe, 0.0))


def _area(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """AlphaPose's area test value 2.25·range(x)·range(y) over present keypoints (0 if none)."""
    extent_x = np.fmax.reduce(xs, axis=1) - np.fmin.reduce(xs, axis=1)
    extent_y = np.fmax.reduce(ys, axis=1) - np.fmin.reduce(ys, axis=1)
    return 2.25 * np.fmax(extent_x * extent_y, 0.0)  # fmax: NaN (no keypoints) -> 0


def pose_nms(
    boxes: np.ndarray,
    box_scores: np.ndarray,
    poses: np.ndarray,
    pose_scores: np.ndarray,
    ids: np.ndarray | None = None,
    *,
    mode: Mode = "alphapose",
    **overrides: float | str,
) -> PoseNMSResult:
    """Parametric pose NMS of N candidate poses (see the module docstring for the two modes).

    ``boxes`` (N, 4) xyxy px, ``box_scores`` (N,), ``poses`` (N, K, 2) px, ``pose_scores`` (N, K),
    ``ids`` (N,) optional; any constant of ``AlphaPoseParams`` / ``RMPEParams`` by keyword.
    """
    params = nms_params(mode, **overrides)
    boxes, box_scores = np.asarray(boxes), np.asarray(box_scores)
    poses = np.asarray(poses, np.float64)
    scores = np.asarray(pose_scores, np.float64)
    ids = None if ids is None else np.asarray(ids)
    _check_inputs(boxes, box_scores, poses, scores, ids)

    missing = np.isnan(poses[..., 0]) | np.isnan(poses[..., 1]) | np.isnan(scores)
    scores = np.where(missing, 0.0, np.where(scores <= 0, ZERO_SCORE, scores))
    xs = np.where(missing, np.nan, poses[..., 0])  # C-contiguous (N, K) planes: fast numpy loops
    ys = np.where(missing, np.nan, poses[..., 1])
    box_sizes = (boxes[:, 2:4].astype(np.float64) - boxes[:, 0:2]).max(axis=1)
    units, match_px, merge_px = params.scale(box_sizes)

    similar = _similar(xs, ys, np.tanh(scores / params.delta1), units, match_px, params)
    picks, clusters = _greedy_clusters(similar, scores.mean(axis=1))
    mx, my, merged_s = _merge_clusters(xs, ys, scores, picks, clusters, merge_px)
    keep = ((scores[picks].max(axis=1) >= params.score_thresh)
            & (merged_s.max(axis=1) >= params.score_thresh)
            & (_area(mx, my) >= params.area_thresh))
    kept_picks, out_s = picks[keep], merged_s[keep]
    return PoseNMSResult(
        keypoints=np.stack([mx[keep], my[keep]], axis=2).astype(np.float32),
        keypoint_scores=out_s.astype(np.float32),
        pick=kept_picks,
        merged=[c for c, k in zip(clusters, keep) if k],
        boxes=boxes[kept_picks],
        box_scores=box_scores[kept_picks],
        ids=None if ids is None else ids[kept_picks],
        scores=person_scores(out_s, box_scores[kept_picks], params.person_score).astype(np.float32),
        dropped=np.sort(np.concatenate([picks[:0], *(c for c, k in zip(clusters, keep) if not k)])),
    )
