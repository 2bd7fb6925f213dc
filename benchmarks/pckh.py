"""PCKh@0.5 of MPII-layout results, and MPII's ``.mat`` annotations as the COCO-style file it reads.

The metric follows MPII's evaluation as ported in bearpaw/pytorch-pose ``evaluation/eval_PCKh.py``:
a joint is correct when its distance to the annotation is below 0.5 × the person's head size, the
head size is 0.6 × the diagonal of the annotated head box, only annotated joints count, the
per-joint figure is correct / annotated, and the mean is the plain mean of the per-joint figures
over all joints except pelvis and thorax (14 joints). The columns Head … Ankle are bearpaw's: head
top, then the mean of the left and right joint.

MPII's own evaluation places one prediction per annotated person; rmpe's results are people found
in boxes, so each image's predicted people are first assigned one-to-one to its annotated people
(scipy's ``linear_sum_assignment``) by the mean over a person's annotated joints of
min(distance / head size, 1). An annotated person left without a prediction has every joint wrong.

Annotations (docs/runtime.md, "PCKh annotations"): a COCO keypoint file whose category lists 16
keypoints in MPII order and whose every annotation has ``head_box`` [x1, y1, x2, y2].
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

from rmpe.runtime.keypoints import MPII_KEYPOINTS, MPII_SKELETON

THRESHOLD = 0.5
HEAD_SIZE_FACTOR = 0.6  # MPII's SC_BIAS: head size = 0.6 × head box diagonal
EXCLUDED_FROM_MEAN = ("pelvis", "thorax")
COLUMNS = {  # table column → joints averaged (bearpaw's grouping)
    "Head": ("head_top",), "Shoulder": ("left_shoulder", "right_shoulder"),
    "Elbow": ("left_elbow", "right_elbow"), "Wrist": ("left_wrist", "right_wrist"),
    "Hip": ("left_hip", "right_hip"), "Knee": ("left_knee", "right_knee"), "Ankle": ("left_ankle", "right_ankle"),
}
BOX_SIZE = 200.0  # MPII's person scale is the person's height / 200 px
BOX_SHIFT = 15.0  # the crop centre lies 15 × scale px below objpos (bearpaw's and princeton-vl's MPII loaders)


class AnnotationError(ValueError):
    """An annotation file that PCKh cannot use: one line naming the file and the problem."""


def has_head_boxes(gt: dict) -> bool:
    """Whether a COCO-style annotation dict carries a ``head_box`` on every annotation (PCKh applies)."""
    anns = gt.get("annotations") if isinstance(gt, dict) else None
    return bool(anns) and all(isinstance(a, dict) and "head_box" in a for a in anns)


def _people(gt: dict, source: str) -> dict[object, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """image_id → (G, 16, 2) joints, (G, 16) annotated mask, (G,) head sizes; people with no joints left out."""
    try:
        k = len(gt["categories"][0]["keypoints"])
        anns = gt["annotations"]
    except (KeyError, IndexError, TypeError):
        raise AnnotationError(f"{source}: not a COCO keypoint annotation file") from None
    if k != len(MPII_KEYPOINTS):
        raise AnnotationError(f"{source}: PCKh needs the 16 MPII keypoints, the file has {k}")
    by_image: dict[object, list] = {}
    for n, ann in enumerate(anns):
        try:
            kps = np.asarray(ann["keypoints"], np.float64).reshape(k, 3)
            x1, y1, x2, y2 = (float(v) for v in ann["head_box"])
            image_id = ann["image_id"]
        except (KeyError, TypeError, ValueError):
            raise AnnotationError(f"{source}: annotation {n} lacks 48 keypoint values, "
                                  "a head_box [x1, y1, x2, y2] or an image_id") from None
        head = HEAD_SIZE_FACTOR * float(np.hypot(x2 - x1, y2 - y1))
        if not np.isfinite(head) or head <= 0:
            raise AnnotationError(f"{source}: annotation {n} has an empty head_box")
        annotated = kps[:, 2] > 0
        if annotated.any():
            by_image.setdefault(image_id, []).append((kps[:, :2], annotated, head))
    return {i: tuple(np.array(v) for v in zip(*people)) for i, people in by_image.items()}


def _predictions(results: list[dict]) -> dict[object, np.ndarray]:
    """image_id → (P, 16, 2) predicted joints, NaN where a keypoint is missing (non-finite or 0, 0, 0)."""
    by_image: dict[object, list] = {}
    for r in results:
        kps = np.asarray(r["keypoints"], np.float64).reshape(-1, 3)
        missing = ~np.isfinite(kps).all(axis=1) | (kps == 0).all(axis=1)
        by_image.setdefault(r["image_id"], []).append(np.where(missing[:, None], np.nan, kps[:, :2]))
    return {i: np.array(v) for i, v in by_image.items()}


def normalised_errors(truth: np.ndarray, head: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """(G, P, 16) distances between annotated and predicted joints in head sizes (inf: missing)."""
    dist = np.linalg.norm(truth[:, None] - pred[None], axis=3) / head[:, None, None]
    return np.where(np.isnan(dist), np.inf, dist)


def assign(errors: np.ndarray, annotated: np.ndarray) -> np.ndarray:
    """(G,) index of the prediction assigned to each annotated person, -1 for none."""
    from scipy.optimize import linear_sum_assignment

    chosen = np.full(errors.shape[0], -1)
    if errors.shape[1] == 0:
        return chosen
    cost = (np.minimum(errors, 1.0) * annotated[:, None]).sum(axis=2) / annotated.sum(axis=1)[:, None]
    rows, cols = linear_sum_assignment(cost)
    chosen[rows] = cols
    return chosen


def evaluate_pckh(results: list[dict], gt: dict, image_ids: list | None = None, threshold: float = THRESHOLD,
                  source: str = "annotations") -> dict[str, float]:
    """PCKh (fractions) of COCO-style results against MPII-style annotations: ``PCKh`` (the mean over
    14 joints), the ``COLUMNS``, one ``PCKh_<joint>`` per joint (-1: no annotated joint), and
    ``people`` / ``matched`` counts."""
    people, preds = _people(gt, source), _predictions(results)
    wanted = set(people) if image_ids is None else set(image_ids) & set(people)
    correct, counted = np.zeros(len(MPII_KEYPOINTS)), np.zeros(len(MPII_KEYPOINTS))
    n_people = n_matched = 0
    for image_id in wanted:
        truth, annotated, head = people[image_id]
        pred = preds.get(image_id, np.zeros((0, len(MPII_KEYPOINTS), 2)))
        errors = normalised_errors(truth, head, pred)
        chosen = assign(errors, annotated)
        hit = np.zeros(annotated.shape, bool)
        for g in np.flatnonzero(chosen >= 0):
            hit[g] = errors[g, chosen[g]] < threshold
        correct += (hit & annotated).sum(axis=0)
        counted += annotated.sum(axis=0)
        n_people, n_matched = n_people + len(truth), n_matched + int((chosen >= 0).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        per_joint = np.where(counted > 0, correct / counted, np.nan)
    index = {name: i for i, name in enumerate(MPII_KEYPOINTS)}
    in_mean = [index[n] for n in MPII_KEYPOINTS if n not in EXCLUDED_FROM_MEAN]
    stats = {"PCKh": _mean(per_joint[in_mean])}
    stats |= {col: _mean(per_joint[[index[n] for n in joints]]) for col, joints in COLUMNS.items()}
    stats |= {f"PCKh_{name}": _mean(per_joint[[i]]) for i, name in enumerate(MPII_KEYPOINTS)}
    return stats | {"people": float(n_people), "matched": float(n_matched)}


def _mean(values: np.ndarray) -> float:
    """Mean of the defined values, -1 when none is (pycocotools' "no such people")."""
    defined = values[np.isfinite(values)]
    return float(defined.mean()) if len(defined) else -1.0


def _items(value: object) -> list:
    """A MATLAB struct array or cell array, loaded by scipy with ``squeeze_me``, as a list."""
    if isinstance(value, np.ndarray):
        return list(value.ravel())
    return [] if value is None else [value]


def _number(value: object) -> float | None:
    """A MATLAB scalar (possibly a 0/1-element array or a digit string) as a float, None when empty."""
    items = _items(value)
    if len(items) != 1:
        return None
    try:
        return float(items[0])
    except (TypeError, ValueError):
        return None


def _person(rect: object) -> tuple[list[float], list[float], list[float]] | None:
    """(48 keypoint values, head box, person box xywh) of one MPII ``annorect``, None without joints,
    head box or scale."""
    head = [_number(getattr(rect, f, None)) for f in ("x1", "y1", "x2", "y2")]
    scale = _number(getattr(rect, "scale", None))
    objpos = getattr(rect, "objpos", None)
    centre = [_number(getattr(o, c, None)) for o in _items(objpos)[:1] for c in ("x", "y")]
    points = [p for a in _items(getattr(rect, "annopoints", None))[:1] for p in _items(getattr(a, "point", None))]
    if None in head or scale is None or len(centre) != 2 or None in centre or not points:
        return None
    kps = np.zeros((len(MPII_KEYPOINTS), 3))
    for p in points:
        j, x, y = (_number(getattr(p, f, None)) for f in ("id", "x", "y"))
        if j is None or x is None or y is None or not 0 <= j < len(kps):
            continue
        visible = _number(getattr(p, "is_visible", None))
        kps[int(j)] = (x, y, 1 if visible == 0 else 2)  # annotated: 2 visible (or unmarked), 1 occluded
    if not (kps[:, 2] > 0).any():
        return None
    side = BOX_SIZE * scale
    cx, cy = centre[0], centre[1] + BOX_SHIFT * scale
    return kps.ravel().tolist(), head, [cx - side / 2, cy - side / 2, side, side]


def convert_mpii(mat_path: Path, only: set[str] | None = None) -> tuple[dict, list[dict], int]:
    """MPII's ``mpii_human_pose_v1_u12_1.mat`` as (COCO-style annotations with head boxes, detection
    results holding each person's box, count of people skipped for lacking joints, head box or scale).

    Image ids are the 1-based positions in ``annolist`` (MPII's ``RELEASE_img_index``); only training
    images (``img_train`` 1: the test set has no joints) are read, and only those named in ``only``
    when given. A person's box is a square of side 200 × scale centred 15 × scale below ``objpos``,
    so rmpe's ×1.25 box enlargement gives the hourglass projects' crop.
    """
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        release = loadmat(str(mat_path), struct_as_record=False, squeeze_me=True)["RELEASE"]
        annolist, train = _items(release.annolist), _items(release.img_train)
    except (OSError, MatReadError, ValueError, KeyError, AttributeError, NotImplementedError, TypeError) as exc:
        raise AnnotationError(f"{mat_path}: not MPII's annotation .mat (RELEASE.annolist, "
                              f"RELEASE.img_train): {exc.__class__.__name__}") from None
    if len(train) != len(annolist):
        raise AnnotationError(f"{mat_path}: img_train has {len(train)} entries, annolist {len(annolist)}")
    images, annotations, detections, skipped = [], [], [], 0
    for index, (entry, is_train) in enumerate(zip(annolist, train), start=1):
        name = next((str(getattr(i, "name", "")) for i in _items(getattr(entry, "image", None))), "")
        if _number(is_train) != 1 or not name or (only is not None and name not in only):
            continue
        people = [_person(r) for r in _items(getattr(entry, "annorect", None))]
        skipped += sum(p is None for p in people)
        kept = [p for p in people if p is not None]
        if not kept:
            continue
        images.append({"id": index, "file_name": name})
        for kps, head, box in kept:
            annotations.append({"id": len(annotations) + 1, "image_id": index, "category_id": 1, "iscrowd": 0,
                                "keypoints": kps, "num_keypoints": int(sum(v > 0 for v in kps[2::3])),
                                "bbox": box, "area": box[2] * box[3], "head_box": head})
            detections.append({"image_id": index, "category_id": 1, "bbox": box, "score": 1.0})
    gt = {"images": images, "annotations": annotations,
          "categories": [{"id": 1, "name": "person", "keypoints": list(MPII_KEYPOINTS),
                          "skeleton": [list(p) for p in MPII_SKELETON]}]}
    return gt, detections, skipped


def add_image_sizes(gt: dict, folder: Path) -> list[str]:
    """Give each image entry its ``width`` and ``height`` from the file's header; returns the names not found."""
    from PIL import Image

    missing = []
    for img in gt["images"]:
        try:
            with Image.open(folder / img["file_name"]) as im:
                img["width"], img["height"] = im.size
        except OSError:
            missing.append(img["file_name"])
    return missing


def write_data_set(mat_path: Path, out: Path, images: Path | None, only: Path | None) -> str:
    """Write ``out``/person_keypoints.json and detections.json (and link ``out``/images to ``images``),
    the folder ``rmpe-bench ap --data`` reads; returns a one-line summary."""
    names = None
    if only is not None:
        try:
            names = {line.strip() for line in only.read_text().splitlines() if line.strip()}
        except OSError as exc:
            raise AnnotationError(f"{only}: cannot read ({exc.strerror})") from None
    gt, detections, skipped = convert_mpii(mat_path, names)
    if not gt["images"]:
        raise AnnotationError(f"{mat_path}: no annotated person" + (f" in the images {only} names" if only else ""))
    out.mkdir(parents=True, exist_ok=True)
    missing = add_image_sizes(gt, images) if images is not None else []
    if images is not None and not (out / "images").exists():
        os.symlink(images.resolve(), out / "images", target_is_directory=True)
    (out / "person_keypoints.json").write_text(json.dumps(gt))
    (out / "detections.json").write_text(json.dumps(detections))
    return (f"{len(gt['images'])} images, {len(gt['annotations'])} people ({skipped} skipped: no joints, head box "
            f"or scale)" + (f"; {len(missing)} images not found in {images}" if missing else ""))


def run(args) -> int:
    """``rmpe-bench mpii``: write the data set folder; one-line errors, exit status 2."""
    try:
        print(f"rmpe-bench mpii: {write_data_set(args.mat, args.out, args.images, args.only)}")
    except (AnnotationError, OSError) as exc:
        print(f"rmpe-bench mpii: error: {exc}", file=sys.stderr)
        return 2
    return 0


def add_parser(sub) -> None:
    """Register the ``mpii`` subcommand."""
    parser = sub.add_parser("mpii", help="MPII's annotation .mat as a data set folder for rmpe-bench ap (PCKh)",
                            description="Convert MPII's mpii_human_pose_v1_u12_1.mat into DIR/person_keypoints.json "
                            "(COCO-style, 16 keypoints and a head_box per person) and DIR/detections.json (each "
                            "person's box from MPII's objpos and scale), the folder rmpe-bench ap --data reads.")
    parser.add_argument("mat", type=Path, help="mpii_human_pose_v1_u12_1.mat")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="the data set folder to write")
    parser.add_argument("--images", type=Path, metavar="DIR",
                        help="MPII's images folder: linked as DIR/images, image sizes read from the files")
    parser.add_argument("--only", type=Path, metavar="FILE",
                        help="a text file of image names, one a line (e.g. a validation split): convert these only")
    parser.set_defaults(func=run)
