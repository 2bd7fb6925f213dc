"""Result writers: COCO keypoint results JSON (plus AlphaPose's ``box``/``idx``) and drawn images."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from .boxes import ImageId
from .estimator import Poses


def coco_entries(image_id: ImageId, poses: Poses) -> list[dict]:
    """One COCO results entry per person: keypoints ``[x, y, s] * K``, score, box ``[x, y, w, h]``, idx."""
    flat = np.concatenate([poses.keypoints, poses.keypoint_scores[:, :, None]], axis=2)
    flat = flat.reshape(len(poses), flat.shape[1] * 3)
    flat = np.round(flat.astype(np.float64), 3).tolist()
    boxes = poses.boxes.astype(np.float64)
    xywh = np.round(np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1), 2).tolist()
    scores = np.round(poses.scores.astype(np.float64), 5).tolist()
    return [{"image_id": image_id, "category_id": 1, "keypoints": flat[i], "score": scores[i],
             "box": xywh[i], "idx": i} for i in range(len(poses))]


def write_json_atomic(path: Path, data: object) -> None:
    """Write JSON to a temporary file beside ``path`` and move it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class JsonWriter:
    """Collects entries per image and writes them, in input order, when closed."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._entries: dict[int, list[dict]] = {}

    def add(self, index: int, image_id: ImageId, poses: Poses) -> None:
        """Record the poses of the ``index``-th input image."""
        self._entries[index] = coco_entries(image_id, poses)

    def close(self) -> None:
        """Write the results file."""
        write_json_atomic(self.path, [e for i in sorted(self._entries) for e in self._entries[i]])


class ImageWriter:
    """Saves each image with its poses drawn, under ``folder`` with the input's relative name."""

    def __init__(self, folder: Path, skeleton: list[list[int]], vis_thr: float) -> None:
        self.folder = Path(folder)
        self.skeleton, self.vis_thr = skeleton, vis_thr

    def add(self, name: str, image: np.ndarray, poses: Poses) -> Path:
        """Draw and save; PNG inputs stay PNG, everything else is written as JPEG."""
        from .draw import draw_poses

        target = self.folder / name
        if target.suffix.lower() != ".png":
            target = target.with_suffix(".jpg")
        target.parent.mkdir(parents=True, exist_ok=True)
        drawn = draw_poses(image, poses, self.skeleton, self.vis_thr)
        drawn.save(target, quality=90) if target.suffix == ".jpg" else drawn.save(target)
        return target
