"""How the default constants of ``pose_nms(mode="rmpe")`` were chosen: COCO keypoint AP over a
small grid, compared with no NMS and with ``mode="alphapose"``.

Two sources of candidate poses:

- ``python -m rmpe.benchmarks.nms_tuning``: simulated scenes, 2000 px images with 1–6 people of
  20–800 px, each with 1–6 duplicate candidates whose keypoint jitter is proportional to the
  person's size (`nms_scenes.make_scene`);
- ``python -m rmpe.benchmarks.nms_tuning --model model.onnx --data val1 val2 ...``: an exported
  model's candidates on ``rmpe-data synth`` sets, one per simulated detection (cleaned as
  ``rmpe-run`` cleans boxes), computed once per set and re-used for every grid point; each
  setting's AP is given per set and as the mean, which is what the defaults are chosen by.

AP from pycocotools' COCOeval (iouType="keypoints"). The results are in BENCHMARKS.md, "Pose NMS".
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from rmpe.benchmarks.nms_scenes import Scene, candidates, make_scene
from rmpe.runtime.keypoints import COCO_KEYPOINTS, COCO_SKELETON
from rmpe.runtime.pose_nms import PoseNMSResult, pose_nms

GRID = {
    "delta2": [0.0025, 0.01, 0.04],
    "gamma": [15.0, 22.48],
    "match_radius": [0.05, 0.1, 0.2],
    "merge_radius": [0.1, 0.15, 0.25],
    "match_thresh": [5, 8],
}
# delta2 and gamma moved AP by < 0.001 in the scenes' grid, so the model grid varies only the match and merge rules.
DATA_GRID = {
    "match_radius": [0.05, 0.1, 0.15],
    "merge_radius": [0.15, 0.25, 0.4],
    "match_thresh": [5, 8, 11],
}
SetCandidates = dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]  # image id -> boxes, scores, poses, kp scores


def ground_truth(scenes: list[Scene]) -> dict:
    """A COCO keypoint annotation dict of the scenes' true people."""
    annotations = []
    for image_id, scene in enumerate(scenes):
        for kp, (x0, y0, x1, y1) in zip(scene.true_keypoints, scene.true_boxes):
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                "keypoints": np.c_[kp, np.full(len(kp), 2)].ravel().tolist(),
                "num_keypoints": len(kp), "bbox": [x0, y0, x1 - x0, y1 - y0],
                "area": 0.6 * (x1 - x0) * (y1 - y0)})
    return {"images": [{"id": i, "width": 2000, "height": 2000} for i in range(len(scenes))],
            "annotations": annotations,
            "categories": [{"id": 1, "name": "person", "keypoints": COCO_KEYPOINTS,
                            "skeleton": COCO_SKELETON}]}


def detections(image_id: int, res: PoseNMSResult) -> list[dict]:
    """COCO results entries of one image's NMS output."""
    return [{"image_id": image_id, "category_id": 1, "score": float(score),
             "keypoints": np.c_[kp, s].ravel().tolist()}
            for kp, s, score in zip(res.keypoints, res.keypoint_scores, res.scores)]


def keypoint_ap(gt: dict, results: list[dict]) -> float:
    """COCO keypoint AP (IoU .50:.95) of the results, pycocotools' output silenced."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        evaluator = COCOeval(coco, coco.loadRes(results), "keypoints")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return float(evaluator.stats[0])


def no_nms(scene: Scene) -> PoseNMSResult:
    """Every candidate kept, scored like a singleton cluster: the floor NMS must beat."""
    b, bs, poses, scores = candidates(scene)
    return PoseNMSResult(poses.astype(np.float32), scores.astype(np.float32),
                         np.arange(len(poses)), [np.array([i]) for i in range(len(poses))], b, bs,
                         None, scores.mean(1) + bs + 1.25 * scores.max(1))


def evaluate(scenes: list[Scene], gt: dict, nms) -> float:
    """AP of ``nms`` (a function of a scene) over the scenes."""
    return keypoint_ap(gt, [d for i, sc in enumerate(scenes) for d in detections(i, nms(sc))])


def model_candidates(model: Path, folder: Path) -> tuple[SetCandidates, dict]:
    """Every simulated detection's pose from ``model`` on the data set in ``folder``, and its annotations."""
    from rmpe.benchmarks.ap import read_data_set
    from rmpe.runtime.boxes import DetectionFile, clean_boxes
    from rmpe.runtime.estimator import PoseEstimator
    from rmpe.runtime.images import load_image

    data = read_data_set(folder, None)
    detections = DetectionFile(data.detections)
    out: SetCandidates = {}
    with PoseEstimator(model) as estimator:
        for path, image_id in tqdm(list(zip(data.files, data.ids)), desc=folder.name, unit="img", leave=False):
            image = load_image(path)
            boxes = clean_boxes(detections.lookup(path.name, image_id), thr=estimator.box_thr)
            poses, scores = estimator.infer([image], [boxes.xyxy])
            out[image_id] = (boxes.xyxy, boxes.scores, poses, scores)
    return out, json.loads(data.annotations.read_text())


def candidates_ap(cands: SetCandidates, gt: dict, nms) -> float:
    """AP of ``nms`` (boxes, box scores, poses, scores → PoseNMSResult) over one set's candidates."""
    from rmpe.benchmarks.ap import evaluate

    results = [d for image_id, c in cands.items() if len(c[0]) for d in detections(image_id, nms(*c))]
    return evaluate(results, gt)["AP"]


def tune_on_data(model: Path, folders: list[Path]) -> None:
    """Print AP per data set and its mean for the baselines and every point of DATA_GRID, in grid order."""
    sets = [model_candidates(model, folder) for folder in folders]
    names = " | ".join(f"AP {f.name}" for f in folders)
    print(f"| setting | {names} | mean |\n|---|" + "---:|" * (len(folders) + 1))

    def row(label: str, nms) -> None:
        aps = [candidates_ap(c, gt, nms) for c, gt in sets]
        print(f"| {label} | " + " | ".join(f"{a:.4f}" for a in aps) + f" | {np.mean(aps):.4f} |", flush=True)

    row("alphapose defaults", lambda *c: pose_nms(*c, mode="alphapose"))
    row("rmpe defaults", lambda *c: pose_nms(*c, mode="rmpe"))
    for values in itertools.product(*DATA_GRID.values()):
        constants = dict(zip(DATA_GRID, values))
        row(f"rmpe {constants}", lambda *c, k=constants: pose_nms(*c, mode="rmpe", **k))


def main(argv: list[str] | None = None) -> int:
    """Print AP of the baselines and of every grid point (scenes: best first; data sets: grid order)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=150, help="simulated scenes (default 150)")
    parser.add_argument("--jitter", type=float, nargs="+", default=[0.01, 0.03],
                        help="keypoint jitter of the scenes' candidates, as fractions of the person's size")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated scenes")
    parser.add_argument("--model", type=Path, help="an exported model: tune on its candidates on --data instead")
    parser.add_argument("--data", type=Path, nargs="+", default=[], metavar="DIR",
                        help="rmpe-data synth sets for --model (images/, person_keypoints.json, detections.json)")
    args = parser.parse_args(argv)
    if (args.model is None) != (not args.data):
        parser.error("--model and --data go together")
    if args.model is not None:
        from rmpe.benchmarks.ap import InputError
        from rmpe.runtime.backends import BackendError

        try:
            tune_on_data(args.model, args.data)
        except (InputError, BackendError) as exc:
            print(f"nms_tuning: error: {exc}", file=sys.stderr)
            return 2
        return 0
    rng = np.random.default_rng(args.seed)
    scenes = [make_scene(rng, int(rng.integers(1, 7)), jitter_rel=float(rng.choice(args.jitter)))
              for _ in range(args.images)]
    gt = ground_truth(scenes)
    print(f"| setting | AP ({args.images} images, jitter {args.jitter} × size) |\n|---|---:|")
    print(f"| no NMS | {evaluate(scenes, gt, no_nms):.3f} |")
    print(f"| alphapose defaults | {evaluate(scenes, gt, lambda s: pose_nms(*candidates(s))):.3f} |")
    rows = []
    for values in itertools.product(*GRID.values()):
        constants = dict(zip(GRID, values))
        ap = evaluate(scenes, gt, lambda s: pose_nms(*candidates(s), mode="rmpe", **constants))
        rows.append((ap, constants))
    for ap, constants in sorted(rows, key=lambda r: -r[0]):
        print(f"| rmpe {constants} | {ap:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
