"""PGPG, the pose-guided proposal generator (DESIGN §1.4): P(box offset | atomic pose).

Poses are normalised (hip midpoint at the origin, torso length 1), clustered with k-means into
atomic poses; per atom a Gaussian mixture models the offsets between detector boxes and the
ground-truth box, as (dx1/w, dy1/h, dx2/w, dy2/h) of the xyxy corners. Sampling draws offsets from
the mixture of a pose's atom to make realistic proposals for training.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

NUM_KEYPOINTS = 17
SHOULDERS, HIPS = (5, 6), (11, 12)
MIN_OFFSETS_PER_ATOM = 10


def normalize_pose(keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(17, 2) pose centred at the hip midpoint and scaled to unit torso length, and its labelled mask.

    Keypoints with v == 0 are missing. Without a shoulder and a hip the torso is unknown: then the
    centre is the labelled points' box centre and the scale a third of their extent. Fewer than two
    labelled keypoints give None.
    """
    kp = np.asarray(keypoints, float).reshape(NUM_KEYPOINTS, 3)
    mask = kp[:, 2] > 0
    if mask.sum() < 2:
        return None
    xy = kp[:, :2]
    sho, hip = [k for k in SHOULDERS if mask[k]], [k for k in HIPS if mask[k]]
    if sho and hip:
        centre = xy[hip].mean(axis=0)
        scale = float(np.linalg.norm(xy[sho].mean(axis=0) - centre))
    else:
        lo, hi = xy[mask].min(axis=0), xy[mask].max(axis=0)
        centre, scale = (lo + hi) / 2, float((hi - lo).max()) / 3
    if scale < 1e-6:
        return None
    return np.where(mask[:, None], (xy - centre) / scale, 0.0), mask


def box_offsets(det_xyxy: np.ndarray, gt_xyxy: np.ndarray) -> np.ndarray:
    """Corner offsets of detections from a ground-truth box, in units of its width and height."""
    gt = np.asarray(gt_xyxy, float)
    w, h = max(gt[2] - gt[0], 1e-6), max(gt[3] - gt[1], 1e-6)
    return (np.asarray(det_xyxy, float) - gt) / np.array([w, h, w, h])


def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xyxy boxes (n, 4) × (m, 4)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def _xyxy(bbox: list[float]) -> np.ndarray:
    """COCO [x, y, w, h] → [x1, y1, x2, y2]."""
    x, y, w, h = (float(v) for v in bbox)
    return np.array([x, y, x + w, y + h])


def match_offsets(coco: dict, detections: list[dict], iou_threshold: float = 0.5) -> tuple[list[np.ndarray], np.ndarray]:
    """Ground-truth keypoints and box offsets for every detection whose best-IoU truth passes the threshold."""
    gts: dict[int, list[dict]] = {}
    for a in coco["annotations"]:
        if not a.get("iscrowd", 0) and "keypoints" in a:
            gts.setdefault(a["image_id"], []).append(a)
    dets: dict[int, list[dict]] = {}
    for d in detections:
        if d.get("category_id", 1) == 1:
            dets.setdefault(d["image_id"], []).append(d)
    poses, offsets = [], []
    for image_id in sorted(gts.keys() & dets.keys()):
        g = np.stack([_xyxy(a["bbox"]) for a in gts[image_id]])
        d = np.stack([_xyxy(x["bbox"]) for x in dets[image_id]])
        iou = _iou_matrix(d, g)
        best = iou.argmax(axis=1)
        for j in np.flatnonzero(iou[np.arange(len(d)), best] >= iou_threshold):
            poses.append(np.asarray(gts[image_id][best[j]]["keypoints"], float))
            offsets.append(box_offsets(d[j], g[best[j]]))
    return poses, np.array(offsets).reshape(-1, 4)


@dataclass
class PGPG:
    """Atomic poses (k-means centres) and one Gaussian mixture of box offsets per atom."""

    centres: np.ndarray      # (A, 34) normalised poses
    weights: np.ndarray      # (A, C) mixture weights (0 for unused components)
    means: np.ndarray        # (A, C, 4)
    covariances: np.ndarray  # (A, C, 4, 4)
    counts: np.ndarray       # (A,) training offsets per atom

    @classmethod
    def fit(cls, poses: list[np.ndarray], offsets: np.ndarray, atoms: int = 16, components: int = 3,
            seed: int = 0) -> "PGPG":
        """Cluster normalised poses with KMeans, then fit a GaussianMixture to each atom's offsets.

        Runs single-threaded: the data are small, and OpenMP threads on a busy machine cost seconds.
        """
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):
            return cls._fit(poses, offsets, atoms, components, seed)

    @classmethod
    def _fit(cls, poses: list[np.ndarray], offsets: np.ndarray, atoms: int, components: int, seed: int) -> "PGPG":
        """The body of fit()."""
        from sklearn.cluster import KMeans
        from sklearn.mixture import GaussianMixture

        norm = [normalize_pose(p) for p in poses]
        keep = [i for i, n in enumerate(norm) if n is not None]
        if len(keep) < atoms:
            raise ValueError(f"need at least {atoms} matched poses to fit {atoms} atoms, got {len(keep)}")
        xy = np.stack([norm[i][0] for i in keep]).reshape(len(keep), -1)
        mask = np.repeat(np.stack([norm[i][1] for i in keep]), 2, axis=1)
        mean = np.where(mask, xy, 0).sum(0) / np.maximum(mask.sum(0), 1)
        filled = np.where(mask, xy, mean)  # missing keypoints take the average pose's position
        labels = KMeans(atoms, n_init=4, random_state=seed).fit_predict(filled)
        centres = np.stack([filled[labels == a].mean(0) for a in range(atoms)])
        offsets = np.asarray(offsets, float)[keep]
        shared = GaussianMixture(components, random_state=seed, reg_covar=1e-5, init_params="k-means++").fit(offsets)
        weights = np.zeros((atoms, components))
        means = np.zeros((atoms, components, 4))
        covs = np.tile(np.eye(4) * 1e-4, (atoms, components, 1, 1))
        counts = np.bincount(labels, minlength=atoms)
        for a in range(atoms):
            sel = offsets[labels == a]
            k = min(components, max(1, len(sel) // MIN_OFFSETS_PER_ATOM))
            gm = shared
            if len(sel) >= MIN_OFFSETS_PER_ATOM:
                gm = GaussianMixture(k, random_state=seed, reg_covar=1e-5, init_params="k-means++").fit(sel)
            n = gm.n_components
            weights[a, :n], means[a, :n], covs[a, :n] = gm.weights_, gm.means_, gm.covariances_
        return cls(centres, weights, means, covs, counts)

    def atom_of(self, pose: np.ndarray) -> int:
        """Nearest atomic pose, compared on the pose's labelled keypoints only (the most common if unknown)."""
        norm = normalize_pose(pose)
        if norm is None:
            return int(self.counts.argmax())
        xy, mask = norm
        m = np.repeat(mask, 2)
        d = (((self.centres - xy.reshape(-1)) ** 2) * m).sum(axis=1)
        return int(d.argmin())

    def sample(self, pose_or_atom: np.ndarray | int, gt_box: np.ndarray, n: int,
               rng: np.random.Generator) -> np.ndarray:
        """n proposal boxes (xyxy) around a ground-truth xyxy box, offsets drawn from the atom's mixture."""
        atom = pose_or_atom if isinstance(pose_or_atom, (int, np.integer)) else self.atom_of(pose_or_atom)
        w = self.weights[atom] / self.weights[atom].sum()
        comp = rng.choice(len(w), size=n, p=w)
        z = rng.standard_normal((n, 4))
        chol = np.linalg.cholesky(self.covariances[atom] + np.eye(4) * 1e-9)
        off = self.means[atom][comp] + np.einsum("nij,nj->ni", chol[comp], z)
        gt = np.asarray(gt_box, float)
        wh = np.array([gt[2] - gt[0], gt[3] - gt[1]] * 2)
        boxes = gt + off * wh
        x1, x2 = np.minimum(boxes[:, 0], boxes[:, 2]), np.maximum(boxes[:, 0], boxes[:, 2])
        y1, y2 = np.minimum(boxes[:, 1], boxes[:, 3]), np.maximum(boxes[:, 1], boxes[:, 3])
        return np.stack([x1, y1, np.maximum(x2, x1 + 1), np.maximum(y2, y1 + 1)], axis=1)

    def save(self, path: str) -> None:
        """Write the model as a small .npz file."""
        np.savez(path, centres=self.centres, weights=self.weights, means=self.means,
                 covariances=self.covariances, counts=self.counts)

    @classmethod
    def load(cls, path: str) -> "PGPG":
        """Read a model written by save()."""
        with np.load(path) as z:
            return cls(z["centres"], z["weights"], z["means"], z["covariances"], z["counts"])


def load_json(path: str) -> object:
    """Parse a JSON file; a malformed one raises ValueError naming the file."""
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: malformed JSON ({e.msg}, line {e.lineno})") from None


def fit_files(keypoints_json: str, detections_json: str, atoms: int = 16, components: int = 3,
              iou_threshold: float = 0.5, seed: int = 0) -> PGPG:
    """Fit from a COCO keypoints file and a COCO detection-results file."""
    coco, dets = load_json(keypoints_json), load_json(detections_json)
    try:
        poses, offsets = match_offsets(coco, dets, iou_threshold)
    except (KeyError, TypeError, IndexError, AttributeError) as e:
        raise ValueError(f"{keypoints_json} / {detections_json}: not COCO keypoints / detection results ({e!r})") from None
    return PGPG.fit(poses, offsets, atoms, components, seed)
