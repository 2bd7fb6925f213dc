// COCO keypoint results, written as rmpe-run writes them (runtime/writers.py coco_entries and
// write_json_atomic): one entry per person, {"image_id", "category_id": 1, "keypoints":
// [x, y, s] * K rounded to 3 decimals, "score" rounded to 5, "box": [x, y, w, h] rounded to 2,
// "idx"}, in Python's json.dump form (compact separators, ASCII only, floats as Python's repr), so
// that the two files can be compared byte for byte. As there, no NaN or Infinity is written: a
// keypoint with a non-finite coordinate or score becomes 0, 0, 0 and a person with a non-finite
// score is left out.

import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { IntegerId } from './boxes.js';
import { roundTo } from './numeric.js';

/**
 * The results entries of one image. `people` = { keypoints: Float32Array M*K*2, keypointScores:
 * Float32Array M*K, boxes: M*4 x1, y1, x2, y2 (float32 values), scores: Float32Array M }.
 */
export function cocoEntries(imageId, people, k) {
  const entries = [];
  for (let i = 0; i < people.scores.length; i++) {
    if (!Number.isFinite(people.scores[i])) continue;
    const keypoints = [];
    for (let q = 0; q < k; q++) {
      const [x, y, s] = [people.keypoints[(i * k + q) * 2], people.keypoints[(i * k + q) * 2 + 1], people.keypointScores[i * k + q]];
      const present = Number.isFinite(x) && Number.isFinite(y) && Number.isFinite(s);
      keypoints.push(present ? roundTo(x, 3) : 0, present ? roundTo(y, 3) : 0, present ? roundTo(s, 3) : 0);
    }
    const [x1, y1, x2, y2] = Array.from({ length: 4 }, (_, c) => people.boxes[4 * i + c]);
    entries.push({
      image_id: imageId,
      category_id: 1,
      keypoints,
      score: roundTo(people.scores[i], 5),
      box: [roundTo(x1, 2), roundTo(y1, 2), roundTo(x2 - x1, 2), roundTo(y2 - y1, 2)],
      idx: entries.length,
    });
  }
  return entries;
}

/** Python's repr() of a float: shortest round-trip digits, exponent form below 1e-4 and from 1e16. */
export function pythonFloat(x) {
  if (Number.isNaN(x)) return 'NaN';
  if (x === Infinity) return 'Infinity';
  if (x === -Infinity) return '-Infinity';
  const sign = x < 0 || Object.is(x, -0) ? '-' : '';
  const [mantissa, exponent] = Math.abs(x).toExponential().split('e'); // shortest digits, like repr
  const digits = mantissa.replace('.', '');
  const point = Number(exponent) + 1; // the value is 0.digits × 10^point
  if (point <= -4 || point > 16) {
    const exp = point - 1;
    const body = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    return `${sign}${body}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
  }
  if (point <= 0) return `${sign}0.${'0'.repeat(-point)}${digits}`;
  if (point >= digits.length) return `${sign}${digits}${'0'.repeat(point - digits.length)}.0`;
  return `${sign}${digits.slice(0, point)}.${digits.slice(point)}`;
}

function pythonString(text) {
  let out = '"';
  for (const c of text) {
    const code = c.codePointAt(0);
    if (c === '"') out += '\\"';
    else if (c === '\\') out += '\\\\';
    else if (c === '\n') out += '\\n';
    else if (c === '\r') out += '\\r';
    else if (c === '\t') out += '\\t';
    else if (c === '\b') out += '\\b';
    else if (c === '\f') out += '\\f';
    else if (code >= 0x20 && code <= 0x7e) out += c;
    else {
      for (let i = 0; i < c.length; i++) out += `\\u${c.charCodeAt(i).toString(16).padStart(4, '0')}`;
    }
  }
  return `${out}"`;
}

/**
 * JSON text as Python's json.dumps(value, separators=(",", ":")) writes it. Numbers are floats
 * (every number in results is a float) except integer ids, category ids and idx, written as ints.
 */
export function pythonJson(value, key = '') {
  if (value instanceof IntegerId) return value.toString();
  if (value === null) return 'null';
  if (typeof value === 'string') return pythonString(value);
  if (typeof value === 'number') {
    return key === 'category_id' || key === 'idx' ? String(value) : pythonFloat(value);
  }
  if (Array.isArray(value)) return `[${value.map((v) => pythonJson(v, key)).join(',')}]`;
  return `{${Object.entries(value).map(([k, v]) => `${pythonString(k)}:${pythonJson(v, k)}`).join(',')}}`;
}

/** Write `text` to a temporary file beside `path`, flush it, and move it into place. */
export function writeAtomic(path, text) {
  mkdirSync(dirname(path) || '.', { recursive: true });
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  try {
    const fd = openSync(tmp, 'w');
    try {
      writeSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}
