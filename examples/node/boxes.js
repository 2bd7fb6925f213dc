// Person boxes: detection files, image ids and the box clean-up before the graph, as rmpe-run
// does them (runtime/boxes.py DetectionFile, image_ids, clean_boxes).
//
// Boxes are { xyxy: Float32Array N*4 (x1, y1, x2, y2 px), scores: Float32Array N }: rmpe keeps
// them in float32, and the clean-up compares the float32 values.

import { readFileSync } from 'node:fs';
import { basename } from 'node:path';

/** A detection file that cannot be used; the message is one line naming the file. */
export class BoxFileError extends Error {}

export function emptyBoxes() {
  return { xyxy: new Float32Array(0), scores: new Float32Array(0) };
}

/** Single-person mode: the whole image is one box with score 1. */
export function wholeImage(height, width) {
  return { xyxy: Float32Array.of(0, 0, width, height), scores: Float32Array.of(1) };
}

/**
 * Drop boxes with a non-finite value or scoring below `thr`, sort by descending score (equal
 * scores keep their order) and keep the `maxPeople` best (0: all). Clipping to the image and the
 * minimum size are the graph's business, not this.
 */
export function cleanBoxes(boxes, thr = 0.0, maxPeople = 0) {
  const threshold = Math.fround(thr); // numpy compares the float32 scores with thr as a float32
  const kept = [];
  for (let i = 0; i < boxes.scores.length; i++) {
    const row = boxes.xyxy.subarray(4 * i, 4 * i + 4);
    const score = boxes.scores[i];
    if (row.every(Number.isFinite) && Number.isFinite(score) && score >= threshold) kept.push(i);
  }
  kept.sort((a, b) => boxes.scores[b] - boxes.scores[a]); // stable (ES2019)
  const order = maxPeople > 0 ? kept.slice(0, maxPeople) : kept;
  const xyxy = new Float32Array(4 * order.length);
  order.forEach((i, r) => xyxy.set(boxes.xyxy.subarray(4 * i, 4 * i + 4), 4 * r));
  return { xyxy, scores: Float32Array.from(order, (i) => boxes.scores[i]) };
}

/** Python's Path(name).stem: the base name without its last suffix (".bashrc" and "a." have none). */
function stemOf(name) {
  const base = basename(name);
  const dot = base.lastIndexOf('.');
  return dot > 0 && dot < base.length - 1 ? base.slice(0, dot) : base;
}

/** JSON text with Python's extra number tokens (NaN, Infinity, -Infinity) outside strings quoted. */
function quotePythonConstants(text) {
  let out = '';
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      out += c;
      if (c === '\\') { out += text[i + 1] ?? ''; i += 1; } else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') { inString = true; out += c; continue; }
    const token = ['-Infinity', 'Infinity', 'NaN'].find((t) => text.startsWith(t, i));
    if (token) { out += `"${token}"`; i += token.length - 1; continue; }
    out += c;
  }
  return out;
}

const isDigits = (text) => /^[0-9]+$/.test(text);

/**
 * An image id, written to results as Python writes it: integers as JSON numbers (kept as
 * digit strings so that long ones stay exact), file names as strings.
 */
export class IntegerId {
  constructor(digits) {
    this.digits = BigInt(digits).toString(); // no leading zeros: "000139" -> "139"
  }

  toString() {
    return this.digits;
  }
}

const idKey = (id) => (id instanceof IntegerId ? `i:${id.digits}` : `s:${id}`);

/**
 * The id written for each input image, from the names alone: the file stem as an integer when it
 * is all digits and no other input has the same integer, otherwise the name itself.
 */
export function imageIds(names) {
  const numbers = names.map((name) => {
    const stem = stemOf(name);
    return isDigits(stem) ? new IntegerId(stem) : null;
  });
  const counts = new Map();
  for (const number of numbers) if (number) counts.set(number.digits, (counts.get(number.digits) || 0) + 1);
  return names.map((name, i) => (numbers[i] && counts.get(numbers[i].digits) === 1 ? numbers[i] : name));
}

function pyInt(value) {
  // Python's int() of a JSON number or bool: truncation toward zero; strings are not accepted here.
  if (typeof value === 'boolean') return new IntegerId(value ? 1 : 0);
  if (typeof value === 'number' && Number.isFinite(value)) return new IntegerId(BigInt(Math.trunc(value)));
  return null;
}

function pyFloat(value) {
  // Python's float() of a JSON value: numbers, bools and numeric strings ("nan", "inf" included).
  if (typeof value === 'number') return value;
  if (typeof value === 'boolean') return value ? 1 : 0;
  if (typeof value === 'string') {
    const text = value.trim().toLowerCase().replace(/_/g, '');
    if (/^[+-]?(nan|inf|infinity)$/.test(text)) {
      return text.includes('nan') ? NaN : (text.startsWith('-') ? -Infinity : Infinity);
    }
    if (/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/.test(text)) return Number(text);
  }
  return null;
}

/**
 * Boxes per image from a JSON list of detections: COCO results (integer `image_id`) or
 * AlphaPose's detfile (`image_id` the image's file name). `bbox` is [x, y, w, h]; entries of a
 * category other than 1 are ignored. Throws BoxFileError.
 */
export class DetectionFile {
  constructor(path) {
    let data;
    let text;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      throw new BoxFileError(`${path}: cannot read detections (${err.code || err.message})`);
    }
    try {
      data = JSON.parse(text);
    } catch (err) {
      try {
        data = JSON.parse(quotePythonConstants(text)); // Python's json also reads NaN and Infinity
      } catch {
        throw new BoxFileError(`${path}: not valid JSON (${err.message.split('\n')[0]})`);
      }
    }
    if (data && typeof data === 'object' && !Array.isArray(data) && 'annotations' in data) {
      throw new BoxFileError(`${path}: this is an annotation file, not detection results`);
    }
    if (!Array.isArray(data)) throw new BoxFileError(`${path}: expected a JSON list of detections`);
    const rows = new Map(); // id key -> [x1, y1, x2, y2, score] rows
    this.stems = new Map(); // file stem -> id key, for file-name ids
    data.forEach((det, n) => {
      const bad = () => new BoxFileError(`${path}: entry ${n} needs image_id, bbox [x, y, w, h] and score`);
      if (det === null || typeof det !== 'object' || Array.isArray(det)) throw bad();
      const category = 'category_id' in det ? det.category_id : 1;
      if (!(category === 1 || category === true)) return; // Python: category_id != 1 is skipped
      if (!Array.isArray(det.bbox) || det.bbox.length !== 4) throw bad();
      const [x, y, w, h] = det.bbox.map(pyFloat);
      const score = 'score' in det ? pyFloat(det.score) : 1.0;
      if ([x, y, w, h, score].some((v) => v === null) || !('image_id' in det)) throw bad();
      let key;
      if (typeof det.image_id === 'string') {
        key = `s:${basename(det.image_id)}`;
        if (!rows.has(key)) this.stems.set(stemOf(det.image_id), key); // later file names win, as in Python
      } else {
        const id = pyInt(det.image_id);
        if (id === null) throw bad();
        key = idKey(id);
      }
      if (!rows.has(key)) rows.set(key, []);
      rows.get(key).push([x, y, x + w, y + h, score]);
    });
    this.path = path;
    this.rows = rows;
  }

  /** Boxes for an image, matched by its id, its name, its base name, its stem, or its numeric stem. */
  lookup(name, imageId) {
    const base = basename(name);
    const stem = stemOf(base);
    const keys = [idKey(imageId), `s:${name}`, `s:${base}`, this.stems.get(stem)];
    if (isDigits(stem)) keys.push(idKey(new IntegerId(stem)));
    for (const key of keys) {
      if (key !== undefined && this.rows.has(key)) {
        const rows = this.rows.get(key);
        return {
          xyxy: Float32Array.from(rows.flatMap((r) => r.slice(0, 4))),
          scores: Float32Array.from(rows, (r) => r[4]),
        };
      }
    }
    return emptyBoxes();
  }
}
