"""How the default constants of ``pose_nms(mode="rmpe")`` were chosen: COCO keypoint AP on
simulated scenes, compared with no NMS and with ``mode="alphapose"``, over a small grid.

Run ``python -m rmpe.benchmarks.nms_tuning``. Scenes: 2000 px images with 1–6 people of 20–800
px, each with 1–6 duplicate candidates whose keypoint jitter is proportional to the person's size
(`nms_scenes.make_scene`); AP from pycocotools' COCOeval (iouType="keypoints"). The results are
in BENCHMARKS.md, "Pose NMS". Re-check them on the synthetic data set with a simulated detector
once it lands: these scenes only approximate a real detector's duplicates.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools

import numpy as np

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


def main(argv: list[str] | None = None) -> int:
    """Print AP of the baselines and of every grid point, best first."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=150)
    parser.add_argument("--jitter", type=float, nargs="+", default=[0.01, 0.03])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
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
