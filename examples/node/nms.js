// Parametric pose NMS (RMPE §3.3), a port of rmpe's runtime/pose_nms.py with both of its modes:
//
//   "rmpe"      the paper's scale-aware form: lengths are fractions of the reference box size
//               S = max(w, h), the K_sim window is a square of side ksim_window·S, H_sim uses
//               exp(-(d/S)²/delta2), people are scored by the median of their keypoint scores;
//   "alphapose" AlphaPose's rules: pixel distances, a ksim_radius px window, exp(-d/delta2),
//               radii min(alpha·S, cap), person score mean(ŝ) + box score + 1.25·max(ŝ).
//
// The algorithm is specified in docs/onnx-contract.md ("After the graph"). Every pair of
// candidates is tested (rmpe's numpy version skips pairs too far apart to ever be similar, which
// changes no result). Everything is computed in float64 from the graph's float32 outputs; the
// outputs are rounded to float32, as rmpe's are.

import { mean, median } from './numeric.js';

export const ZERO_SCORE = 1e-5; // a keypoint score <= 0 becomes this (AlphaPose replaces exact zeros)
const TINY = 2.2250738585072014e-308; // np.finfo(np.float64).tiny: guards S = 0 in rmpe mode

/** The constants of each mode when the model's metadata has no `pose_nms` entry (RMPEParams, AlphaPoseParams). */
export const NMS_DEFAULTS = Object.freeze({
  rmpe: Object.freeze({
    delta1: 1.0, mu: 1.7, delta2: 0.01, gamma: 22.48, score_thresh: 0.3, match_thresh: 8, area_thresh: 0.0,
    match_radius: 0.05, merge_radius: 0.15, ksim_window: 0.1, person_score: 'median',
  }),
  alphapose: Object.freeze({
    delta1: 1.0, mu: 1.7, delta2: 2.65, gamma: 22.48, score_thresh: 0.3, match_thresh: 5, area_thresh: 0.0,
    alpha: 0.1, match_cap: 7.0, merge_cap: 15.0, ksim_radius: 1.0, person_score: 'alphapose',
  }),
});

export const NMS_MODES = ['rmpe', 'alphapose', 'none'];
export const PERSON_SCORES = ['alphapose', 'median'];

/**
 * The constants of `mode` ("rmpe" or "alphapose"): the defaults above, overridden by the model's
 * metadata entry `pose_nms` = {"default": mode, "modes": {mode: {name: value}}} where it has them.
 * Throws Error (one line) for an unknown mode, constant or person score rule.
 */
export function nmsParams(mode, poseNmsMeta = undefined) {
  if (!(mode in NMS_DEFAULTS)) {
    throw new Error(`unknown pose NMS mode "${mode}"; choose one of ${Object.keys(NMS_DEFAULTS).join(', ')}`);
  }
  const params = { ...NMS_DEFAULTS[mode] };
  const given = poseNmsMeta && poseNmsMeta.modes ? poseNmsMeta.modes[mode] : undefined;
  if (given !== undefined) {
    if (given === null || typeof given !== 'object' || Array.isArray(given)) {
      throw new Error(`metadata pose_nms.modes.${mode} is not an object`);
    }
    for (const [name, value] of Object.entries(given)) {
      if (!(name in params)) throw new Error(`metadata pose_nms.modes.${mode} has an unknown constant "${name}"`);
      const expected = typeof params[name];
      if (typeof value !== expected) {
        throw new Error(`metadata pose_nms.modes.${mode}.${name} should be a ${expected}, got ${JSON.stringify(value)}`);
      }
      params[name] = value;
    }
  }
  if (!PERSON_SCORES.includes(params.person_score)) {
    throw new Error(`unknown person score "${params.person_score}"; choose one of ${PERSON_SCORES.join(', ')}`);
  }
  return Object.freeze({ ...params, mode });
}

/**
 * Person scores of M poses. `keypointScores` is M*K values (row-major), `boxScores` M values.
 * `float32` says the keypoint scores are a float32 array (the candidates of --nms none): numpy then
 * takes the median in float32. Returns a Float32Array, as rmpe's runtime does.
 */
export function personScores(keypointScores, boxScores, rule, k, float32 = false) {
  if (!PERSON_SCORES.includes(rule)) {
    throw new Error(`unknown person score "${rule}"; choose one of ${PERSON_SCORES.join(', ')}`);
  }
  const m = boxScores.length;
  const out = new Float32Array(m);
  for (let i = 0; i < m; i++) {
    const row = keypointScores.subarray(i * k, (i + 1) * k);
    if (rule === 'median') {
      out[i] = median(row, float32);
    } else {
      let best = -Infinity;
      for (const v of row) best = Number.isNaN(v) || Number.isNaN(best) ? NaN : Math.max(best, v);
      out[i] = mean(row) + boxScores[i] + 1.25 * best;
    }
  }
  return out;
}

/** NaN-propagating max of row[0..k) (np.max). */
function rowMax(a, start, k) {
  let best = -Infinity;
  for (let q = 0; q < k; q++) {
    const v = a[start + q];
    if (Number.isNaN(v)) return NaN;
    if (v > best) best = v;
  }
  return best;
}

/** AlphaPose's area test value 2.25·range(x)·range(y) over the present keypoints (0 when none). */
function poseArea(xs, ys, start, k) {
  let x0 = Infinity; let x1 = -Infinity; let y0 = Infinity; let y1 = -Infinity;
  for (let q = 0; q < k; q++) {
    const x = xs[start + q]; const y = ys[start + q];
    if (!Number.isNaN(x)) { x0 = Math.min(x0, x); x1 = Math.max(x1, x); }
    if (!Number.isNaN(y)) { y0 = Math.min(y0, y); y1 = Math.max(y1, y); }
  }
  const ex = x1 >= x0 ? x1 - x0 : NaN;
  const ey = y1 >= y0 ? y1 - y0 : NaN;
  const product = ex * ey;
  return 2.25 * (Number.isNaN(product) ? 0.0 : Math.max(product, 0.0));
}

/**
 * Pose NMS of N candidates with K keypoints each.
 *
 * candidates: { n, k, boxes: N*4 x1,y1,x2,y2 (px), boxScores: N, keypoints: N*K*2 (x, y px),
 *               scores: N*K } (typed arrays or plain arrays; NaN marks a missing keypoint)
 * params: from nmsParams().
 *
 * Returns the kept poses in pick order: { pick: [input index of each kept pose's reference],
 * merged: [sorted input indices merged into it], dropped: sorted input indices whose cluster the
 * score or area filter removed, keypoints: Float32Array M*K*2, keypointScores: Float32Array M*K,
 * scores: Float32Array M (person scores), boxes: M*4 (the pick's box), boxScores: M }.
 */
export function poseNms(candidates, params) {
  const { n, k, boxes, boxScores } = candidates;
  const rmpe = params.mode === 'rmpe';
  if (!rmpe && params.mode !== 'alphapose') throw new Error(`pose NMS needs mode rmpe or alphapose, got ${params.mode}`);

  // 2. Inputs: missing keypoints (NaN x, y or score) score 0 and lie nowhere; scores <= 0 become 1e-5.
  const xs = new Float64Array(n * k);
  const ys = new Float64Array(n * k);
  const s = new Float64Array(n * k);
  for (let i = 0; i < n * k; i++) {
    const x = candidates.keypoints[2 * i]; const y = candidates.keypoints[2 * i + 1]; const c = candidates.scores[i];
    const missing = Number.isNaN(x) || Number.isNaN(y) || Number.isNaN(c);
    s[i] = missing ? 0.0 : (c <= 0 ? ZERO_SCORE : c);
    xs[i] = missing ? NaN : x;
    ys[i] = missing ? NaN : y;
  }
  // Per reference box: the length unit, match and merge radii (px).
  const unit = new Float64Array(n);
  const matchPx = new Float64Array(n);
  const mergePx = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const size = Math.max(boxes[4 * i + 2] - boxes[4 * i], boxes[4 * i + 3] - boxes[4 * i + 1]);
    if (rmpe) {
      unit[i] = Math.max(size, TINY);
      matchPx[i] = params.match_radius * unit[i];
      mergePx[i] = params.merge_radius * unit[i];
    } else {
      const ref = params.alpha * size;
      unit[i] = 1.0;
      matchPx[i] = Math.min(ref, params.match_cap);
      mergePx[i] = Math.min(ref, params.merge_cap);
    }
  }
  const tanhS = s.map((v) => Math.tanh(v / params.delta1));

  // 3. similar[p * n + j]: j is in p's cluster when p is the reference.
  const similar = new Uint8Array(n * n);
  const negInvDelta2 = -1.0 / params.delta2;
  for (let p = 0; p < n; p++) {
    similar[p * n + p] = 1;
    const halfWindow = (0.5 * params.ksim_window) * unit[p];
    const coef = negInvDelta2 / (unit[p] * unit[p]);
    for (let j = 0; j < n; j++) {
      if (j === p) continue;
      let ksim = 0.0; let hsim = 0.0; let matches = 0;
      for (let q = 0; q < k; q++) {
        const a = p * k + q; const b = j * k + q;
        const dx = xs[b] - xs[a]; const dy = ys[b] - ys[a];
        let dist = Math.sqrt(dx * dx + dy * dy);
        if (Number.isNaN(dist)) dist = Infinity;
        const inWindow = rmpe ? Math.max(Math.abs(dx), Math.abs(dy)) <= halfWindow : dist <= params.ksim_radius;
        if (inWindow) ksim += tanhS[b] * tanhS[a];
        hsim += rmpe ? Math.exp(dist * dist * coef) : Math.exp(dist * negInvDelta2);
        if (dist <= matchPx[p]) matches += 1;
      }
      if (ksim + params.mu * hsim > params.gamma || matches >= params.match_thresh) similar[p * n + j] = 1;
    }
  }

  // 4. Greedy: visit by descending mean score (ties: lower index first), pick each one still alive.
  const rank = new Float64Array(n);
  for (let i = 0; i < n; i++) rank[i] = mean(s.subarray(i * k, (i + 1) * k));
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => (rank[b] - rank[a]) || (a - b));
  const alive = new Uint8Array(n).fill(1);
  const picks = [];
  for (const p of order) {
    if (!alive[p]) continue;
    picks.push(p);
    for (let j = 0; j < n; j++) if (similar[p * n + j]) alive[j] = 0;
  }
  // A candidate belongs to the first pick similar to it (it was alive until then).
  const clusters = picks.map(() => []);
  for (let j = 0; j < n; j++) {
    const t = picks.findIndex((p) => similar[p * n + j]);
    clusters[t].push(j);
  }

  // 5. Merge each cluster around its pick's keypoints: w = s·[d <= R_merge], x̂ = Σw·x/Σw, ŝ = Σw²/Σw.
  const m = picks.length;
  const mx = new Float64Array(m * k);
  const my = new Float64Array(m * k);
  const ms = new Float64Array(m * k);
  for (let t = 0; t < m; t++) {
    const p = picks[t];
    for (let q = 0; q < k; q++) {
      let sw = 0; let sww = 0; let swx = 0; let swy = 0;
      clusters[t].forEach((j, idx) => {
        const a = p * k + q; const b = j * k + q;
        const dx = xs[b] - xs[a]; const dy = ys[b] - ys[a];
        let dist = Math.sqrt(dx * dx + dy * dy);
        if (Number.isNaN(dist)) dist = Infinity;
        const inside = dist <= mergePx[p];
        const w = inside ? s[b] : 0.0;
        const wx = w * (inside ? xs[b] : 0.0);
        const wy = w * (inside ? ys[b] : 0.0);
        if (idx === 0) { sw = w; sww = w * w; swx = wx; swy = wy; } else { sw += w; sww += w * w; swx += wx; swy += wy; }
      });
      const has = sw > 0;
      mx[t * k + q] = has ? swx / sw : NaN;
      my[t * k + q] = has ? swy / sw : NaN;
      ms[t * k + q] = has ? sww / sw : 0.0;
    }
  }

  // Filters: the pick's own best keypoint, the merged best keypoint, the area.
  const kept = [];
  const dropped = [];
  for (let t = 0; t < m; t++) {
    const keep = rowMax(s, picks[t] * k, k) >= params.score_thresh
      && rowMax(ms, t * k, k) >= params.score_thresh
      && poseArea(mx, my, t * k, k) >= params.area_thresh;
    if (keep) kept.push(t); else dropped.push(...clusters[t]);
  }
  dropped.sort((a, b) => a - b);

  const outKeypoints = new Float32Array(kept.length * k * 2);
  const outScores64 = new Float64Array(kept.length * k);
  const outBoxes = [];
  const outBoxScores = [];
  kept.forEach((t, r) => {
    for (let q = 0; q < k; q++) {
      outKeypoints[(r * k + q) * 2] = mx[t * k + q];
      outKeypoints[(r * k + q) * 2 + 1] = my[t * k + q];
      outScores64[r * k + q] = ms[t * k + q];
    }
    const p = picks[t];
    outBoxes.push(boxes[4 * p], boxes[4 * p + 1], boxes[4 * p + 2], boxes[4 * p + 3]);
    outBoxScores.push(boxScores[p]);
  });
  return {
    pick: kept.map((t) => picks[t]),
    merged: kept.map((t) => clusters[t]),
    dropped,
    keypoints: outKeypoints,
    keypointScores: Float32Array.from(outScores64),
    scores: personScores(outScores64, outBoxScores, params.person_score, k),
    boxes: outBoxes,
    boxScores: outBoxScores,
  };
}
