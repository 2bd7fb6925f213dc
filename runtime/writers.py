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
    """One COCO results entry per person: keypoints ``[x, y, s] * K``, score, box ``[x, y, w, h]``, idx.

    Strict JSON readers reject NaN and Infinity, so none is written: a keypoint with a non-finite
    coordinate or score is written as ``0, 0, 0`` (COCO's "not there"), and a person whose score is
    not finite is left out.
    """
    kept = np.isfinite(poses.scores)
    keypoints, scores = poses.keypoints[kept], poses.keypoint_scores[kept]
    missing = ~(np.isfinite(keypoints).all(axis=2) & np.isfinite(scores))
    flat = np.concatenate([np.where(missing[:, :, None], 0.0, keypoints), np.where(missing, 0.0, scores)[:, :, None]], axis=2)
    flat = flat.reshape(len(flat), flat.shape[1] * 3)
    flat = np.round(flat.astype(np.float64), 3).tolist()
    boxes = poses.boxes[kept].astype(np.float64)
    xywh = np.round(np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1), 2).tolist()
    person = np.round(poses.scores[kept].astype(np.float64), 5).tolist()
    return [{"image_id": image_id, "category_id": 1, "keypoints": flat[i], "score": person[i],
             "box": xywh[i], "idx": i} for i in range(len(flat))]


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


JOURNAL_SUFFIX = ".partial"  # results.json.partial: one JSON line per finished image


def journal_path(path: Path) -> Path:
    """Where the results of ``path`` are journalled while a run is under way."""
    return Path(path).with_name(Path(path).name + JOURNAL_SUFFIX)


def read_journal(path: Path) -> list[dict]:
    """The image records of a journal; a last line cut short by a kill is ignored."""
    records = []
    for line in journal_path(path).read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            break  # only the last line can be torn: it was being written when the run died
        if isinstance(record, dict) and "name" in record and isinstance(record.get("entries"), list):
            records.append(record)
    return records


class JsonWriter:
    """COCO results that survive interruption: each finished image's entries are appended to a
    journal (``results.json.partial``, JSON lines, flushed to disk per image), and the results file
    is assembled from it atomically, in input order, when the run ends or is interrupted.

    The journal stays after an interruption so that ``--resume`` can skip the images it holds
    (people or none); it is removed when the run completes.
    """

    def __init__(self, path: Path, order: list[str], resume: bool = False) -> None:
        self.path, self.journal = Path(path), journal_path(path)
        self.rank = {name: i for i, name in enumerate(order)}  # input order of every image name
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.done = {r["name"] for r in read_journal(self.path)} if resume and self.journal.is_file() else set()
        self._file = open(self.journal, "a" if self.done else "w", encoding="utf-8")

    def add(self, name: str, image_id: ImageId, poses: Poses) -> None:
        """Journal the poses of the image ``name`` (durably: flushed and fsynced)."""
        self.add_entries(name, image_id, coco_entries(image_id, poses))

    def add_entries(self, name: str, image_id: ImageId, entries: list[dict]) -> None:
        """Journal results entries made elsewhere (a video frame's, with its track ids) for ``name``."""
        record = {"name": name, "image_id": image_id, "entries": entries}
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self, complete: bool = True) -> None:
        """Write the results file from the journal; keep the journal unless the run is ``complete``."""
        self._file.close()
        records = read_journal(self.path)
        records.sort(key=lambda r: self.rank.get(r["name"], len(self.rank)))
        write_json_atomic(self.path, [e for r in records for e in r["entries"]])
        if complete:
            self.journal.unlink(missing_ok=True)


def drawing_path(folder: Path, name: str) -> Path:
    """Where the drawing of the input ``name`` goes: PNG inputs stay PNG, everything else becomes JPEG."""
    target = Path(folder) / name
    return target if target.suffix.lower() == ".png" else target.with_suffix(".jpg")


class ImageWriter:
    """Saves each image with its poses drawn, under ``folder`` with the input's relative name."""

    def __init__(self, folder: Path, skeleton: list[list[int]], vis_thr: float) -> None:
        self.folder = Path(folder)
        self.skeleton, self.vis_thr = skeleton, vis_thr

    def add(self, name: str, image: np.ndarray, poses: Poses, ids: np.ndarray | None = None) -> Path:
        """Draw the poses (with their track ``ids``, if any) on ``image`` and save it at :func:`drawing_path`."""
        from .draw import draw_poses

        target = drawing_path(self.folder, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        drawn = draw_poses(image, poses, self.skeleton, self.vis_thr, ids)
        drawn.save(target, quality=90) if target.suffix == ".jpg" else drawn.save(target)
        return target
