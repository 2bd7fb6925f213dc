"""Training samples: people of a keypoints data set with proposal boxes and augmentation.

A batch holds whole images (padded) plus, per person, a proposal box (from PGPG, else the
ground-truth box jittered), the ground-truth box and keypoints, and an augmentation affine in
normalised crop coordinates (rotation, scale, mirror) that the graph composes with the crop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from rmpe.training.pgpg import PGPG, load_json

MIN_LABELLED = 3  # people with fewer labelled keypoints teach little


@dataclass
class Person:
    image: int  # index into PersonSet.images
    keypoints: np.ndarray  # (K, 3) x, y, v
    box: np.ndarray  # (4,) ground-truth xyxy


@dataclass
class Augment:
    """Ranges of the random augmentation."""

    rotate_deg: float = 30.0
    rotate_prob: float = 0.5
    scale: tuple[float, float] = (0.8, 1.25)
    flip_prob: float = 0.5
    gt_box_prob: float = 0.2  # otherwise a PGPG proposal


@dataclass
class Batch:
    images: torch.Tensor  # (B, H, W, 3) uint8, padded bottom/right
    boxes: torch.Tensor  # (B, 4) proposal boxes
    gt_boxes: torch.Tensor  # (B, 4)
    keypoints: torch.Tensor  # (B, K, 3), left/right already swapped for mirrored samples
    augment: torch.Tensor  # (B, 2, 3) affine in normalised crop coordinates

    def to(self, device: torch.device) -> "Batch":
        """The same batch with every tensor on ``device``."""
        return Batch(*(getattr(self, f).to(device, non_blocking=True) for f in self.__dataclass_fields__))


class PersonSet:
    """Images of a COCO keypoints data set held decoded in memory, and its people."""

    def __init__(self, root: Path, progress: bool = True) -> None:
        root = Path(root)
        coco = load_json(str(root / "person_keypoints.json"))
        by_id = {img["id"]: i for i, img in enumerate(coco["images"])}
        files = [root / "images" / img["file_name"] for img in coco["images"]]
        self.images = [np.asarray(Image.open(f).convert("RGB")) for f in tqdm(files, desc="loading images", disable=not progress)]
        self.people: list[Person] = []
        for ann in coco["annotations"]:
            kp = np.asarray(ann["keypoints"], np.float32).reshape(-1, 3)
            if ann.get("iscrowd", 0) or (kp[:, 2] > 0).sum() < MIN_LABELLED:
                continue
            x, y, w, h = ann["bbox"]
            self.people.append(Person(by_id[ann["image_id"]], kp, np.array([x, y, x + w, y + h], np.float32)))
        if not self.people:
            raise ValueError(f"{root}: no people with {MIN_LABELLED} or more labelled keypoints")


def augment_affine(rng: np.random.Generator, aug: Augment, aspect: float) -> tuple[np.ndarray, bool]:
    """A random rotation/scale (in pixel space) and mirror, as a 2×3 affine on normalised crop coordinates."""
    angle = math.radians(rng.uniform(-aug.rotate_deg, aug.rotate_deg)) if rng.random() < aug.rotate_prob else 0.0
    s = rng.uniform(*aug.scale)
    c, si = math.cos(angle) * s, math.sin(angle) * s
    # normalised → pixel-proportional (x scaled by the aspect), rotate, and back
    linear = np.array([[c, -si / aspect], [si * aspect, c]], np.float32)
    mirror = rng.random() < aug.flip_prob
    if mirror:
        linear[:, 0] *= -1
    return np.concatenate([linear, np.zeros((2, 1), np.float32)], 1), mirror


def proposal(rng: np.random.Generator, person: Person, pgpg: PGPG | None, aug: Augment) -> np.ndarray:
    """A detector-like box for ``person``: a PGPG sample, or the truth with a little jitter."""
    if pgpg is not None and rng.random() >= aug.gt_box_prob:
        return pgpg.sample(person.keypoints, person.box, 1, rng)[0].astype(np.float32)
    w, h = person.box[2] - person.box[0], person.box[3] - person.box[1]
    return person.box + rng.normal(0, 0.05, 4).astype(np.float32) * np.array([w, h, w, h], np.float32)


def make_batch(data: PersonSet, rng: np.random.Generator, size: int, pgpg: PGPG | None, aug: Augment,
               aspect: float, flip_perm: np.ndarray) -> Batch:
    """``size`` random people, each with its own (padded) image."""
    picks = rng.integers(0, len(data.people), size)
    people = [data.people[i] for i in picks]
    images = [data.images[p.image] for p in people]
    h = max(im.shape[0] for im in images)
    w = max(im.shape[1] for im in images)
    padded = np.zeros((size, h, w, 3), np.uint8)
    for i, im in enumerate(images):
        padded[i, : im.shape[0], : im.shape[1]] = im
    affines, keypoints = [], []
    for p in people:
        affine, mirror = augment_affine(rng, aug, aspect)
        affines.append(affine)
        keypoints.append(p.keypoints[flip_perm] if mirror else p.keypoints)
    return Batch(
        images=torch.from_numpy(padded),
        boxes=torch.from_numpy(np.stack([proposal(rng, p, pgpg, aug) for p in people])),
        gt_boxes=torch.from_numpy(np.stack([p.box for p in people])),
        keypoints=torch.from_numpy(np.stack(keypoints)),
        augment=torch.from_numpy(np.stack(affines)),
    )
