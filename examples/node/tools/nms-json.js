#!/usr/bin/env node
// Pose NMS from the command line, for tests and for checking another port against this one.
//
// stdin:  a JSON list of problems {"mode": "rmpe" | "alphapose", "pose_nms": {...} (optional, the
//         model metadata entry), "boxes": [[x1, y1, x2, y2]], "box_scores": [b],
//         "poses": [[[x, y]] * K], "pose_scores": [[c] * K]} (null stands for NaN)
// stdout: a JSON list of results {"pick", "merged", "dropped", "keypoints", "keypoint_scores",
//         "scores", "boxes", "box_scores"} (NaN written as null)

import { readFileSync } from 'node:fs';
import { nmsParams, poseNms } from '../nms.js';

const nan = (v) => (v === null ? NaN : v);
const json = (v) => (Number.isNaN(v) ? null : v);

function solve(problem) {
  const n = problem.poses.length;
  const k = n ? problem.poses[0].length : 0;
  const result = poseNms({
    n,
    k,
    boxes: Float64Array.from(problem.boxes.flat(), nan),
    boxScores: Float64Array.from(problem.box_scores, nan),
    keypoints: Float64Array.from(problem.poses.flat(2), nan),
    scores: Float64Array.from(problem.pose_scores.flat(), nan),
  }, nmsParams(problem.mode, problem.pose_nms));
  const rows = (flat, width) => Array.from({ length: flat.length / width },
    (_, i) => Array.from(flat.subarray(i * width, (i + 1) * width), json));
  return {
    pick: result.pick,
    merged: result.merged,
    dropped: result.dropped,
    keypoints: rows(result.keypoints, 2 * k).map((row) => Array.from({ length: k }, (_, q) => row.slice(2 * q, 2 * q + 2))),
    keypoint_scores: rows(result.keypointScores, k),
    scores: Array.from(result.scores, json),
    boxes: Array.from({ length: result.pick.length }, (_, i) => result.boxes.slice(4 * i, 4 * i + 4).map(json)),
    box_scores: result.boxScores.map(json),
  };
}

try {
  const problems = JSON.parse(readFileSync(0, 'utf8'));
  process.stdout.write(JSON.stringify(problems.map(solve)));
} catch (err) {
  process.stderr.write(`nms-json: ${err.message}\n`);
  process.exit(2);
}
