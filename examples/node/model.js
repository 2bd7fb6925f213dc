// The exported graph in ONNX Runtime for Node.js: its metadata, and graph calls over batches of
// images and boxes, as rmpe-run makes them (runtime/estimator.py infer / infer_in_batches).
//
// Graph contract (docs/onnx-contract.md): inputs images uint8 [B, H, W, 3] (RGB, padded
// bottom/right to a common size), image_sizes int32 [B, 2] (height, width of each image's real
// pixels), boxes float32 [N, 4] (x1, y1, x2, y2 px), box_image_index int32 [N]; outputs keypoints
// float32 [N, K, 2] (x, y px) and scores float32 [N, K]. The graph clips boxes to their image; a
// row whose box is invalid comes out with NaN keypoints and score 0.

import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, extname, join } from 'node:path';
import ort from 'onnxruntime-node';

export const INPUTS = ['images', 'image_sizes', 'boxes', 'box_image_index'];
export const OUTPUTS = ['keypoints', 'scores'];

/** A model (or its metadata) that cannot be used; the message is one line naming the file. */
export class ModelError extends Error {}

// ------------------------------------------------------------------------------------ metadata

function readVarint(bytes, pos) {
  let value = 0;
  let scale = 1;
  for (;;) {
    if (pos >= bytes.length) throw new Error('truncated varint');
    const byte = bytes[pos++];
    value += (byte & 0x7f) * scale;
    if (byte < 0x80) return [value, pos];
    scale *= 128;
  }
}

/** The top-level fields of a protobuf message as [field number, wire type, value or bytes]. */
function* protobufFields(bytes) {
  let pos = 0;
  while (pos < bytes.length) {
    let tag;
    [tag, pos] = readVarint(bytes, pos);
    const field = Math.floor(tag / 8);
    const wire = tag % 8;
    if (wire === 0) {
      let value;
      [value, pos] = readVarint(bytes, pos);
      yield [field, wire, value];
    } else if (wire === 1 || wire === 5) {
      pos += wire === 1 ? 8 : 4;
    } else if (wire === 2) {
      let length;
      [length, pos] = readVarint(bytes, pos);
      if (pos + length > bytes.length) throw new Error('truncated field');
      yield [field, wire, bytes.subarray(pos, pos + length)];
      pos += length;
    } else {
      throw new Error(`unsupported wire type ${wire}`);
    }
  }
}

/** ModelProto.metadata_props (field 14: StringStringEntryProto {1: key, 2: value}) of an .onnx file. */
export function onnxMetadataProps(path) {
  const props = {};
  for (const [field, wire, value] of protobufFields(readFileSync(path))) {
    if (field !== 14 || wire !== 2) continue;
    let key = '';
    let text = '';
    for (const [f, w, v] of protobufFields(value)) {
      if (w !== 2) continue;
      if (f === 1) key = v.toString('utf8');
      if (f === 2) text = v.toString('utf8');
    }
    props[key] = text;
  }
  return props;
}

/**
 * The model's metadata (keypoint_names, skeleton, pose_nms, ...): from `metaPath` when given,
 * else the sidecar next to the model (`<name>.json`, then `model.json`), else the ONNX file's own
 * metadata_props (JSON-encoded where structured). Throws ModelError.
 */
export function readMetadata(modelPath, metaPath = undefined) {
  const stem = basename(modelPath, extname(modelPath));
  const candidates = metaPath ? [metaPath] : [join(dirname(modelPath), `${stem}.json`), join(dirname(modelPath), 'model.json')];
  let raw;
  let source;
  for (const path of candidates) {
    if (metaPath || existsSync(path)) {
      try {
        raw = JSON.parse(readFileSync(path, 'utf8'));
      } catch (err) {
        throw new ModelError(`${path}: cannot read model metadata (${err.code || err.message.split('\n')[0]})`);
      }
      if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new ModelError(`${path}: not a model.json object`);
      source = path;
      break;
    }
  }
  if (raw === undefined) {
    try {
      raw = onnxMetadataProps(modelPath);
    } catch (err) {
      throw new ModelError(`${modelPath}: cannot read the model's metadata (${err.code || err.message})`);
    }
    source = modelPath;
  }
  const meta = {};
  for (const [key, value] of Object.entries(raw)) {
    if (typeof value !== 'string') { meta[key] = value; continue; }
    try { meta[key] = JSON.parse(value); } catch { meta[key] = value; }
  }
  const names = meta.keypoint_names;
  if (!Array.isArray(names) || names.length === 0) {
    throw new ModelError(`${source}: model metadata lacks keypoint_names; was it exported by rmpe-export?`);
  }
  if (meta.pose_nms !== undefined && (meta.pose_nms === null || typeof meta.pose_nms !== 'object')) {
    throw new ModelError(`${source}: metadata pose_nms is not an object`);
  }
  return { ...meta, source, numKeypoints: names.length };
}

// ----------------------------------------------------------------------------------- the graph

/** An exported rmpe pose model in ONNX Runtime (CPU). */
export class PoseModel {
  static async open(path, { metaPath = undefined, threads = 0 } = {}) {
    if (!existsSync(path)) throw new ModelError(`${path}: no such file`);
    const options = { executionProviders: ['cpu'], graphOptimizationLevel: 'all' };
    if (threads > 0) Object.assign(options, { intraOpNumThreads: threads, interOpNumThreads: 1 });
    let session;
    try {
      session = await ort.InferenceSession.create(path, options);
    } catch (err) {
      throw new ModelError(`${path}: ONNX Runtime cannot load it (${String(err.message).split('\n')[0]})`);
    }
    const inputs = new Set(session.inputNames);
    const outputs = new Set(session.outputNames);
    const hasOutputs = OUTPUTS.every((name) => outputs.has(name));
    if (!inputs.has('image_sizes') && hasOutputs && ['images', 'boxes', 'box_image_index'].every((n) => inputs.has(n))) {
      throw new ModelError(`${path}: exported by an older rmpe-export (no image_sizes input); export it again`);
    }
    if (!INPUTS.every((name) => inputs.has(name)) || !hasOutputs) {
      throw new ModelError(`${path}: not an rmpe pose model (inputs ${[...inputs].join(', ')}; outputs ${[...outputs].join(', ')})`);
    }
    return new PoseModel(session, readMetadata(path, metaPath));
  }

  constructor(session, metadata) {
    this.session = session;
    this.metadata = metadata;
    this.k = metadata.numKeypoints;
    this.calls = 0;
  }

  /**
   * One graph call. images: [{ width, height, data: RGB Uint8Array }]; boxes: one Float32Array
   * (n_i * 4) per image. Returns { keypoints: Float32Array (sum n_i)*K*2, scores: Float32Array (sum n_i)*K }.
   */
  async infer(images, boxes) {
    const counts = boxes.map((b) => b.length / 4);
    const n = counts.reduce((a, b) => a + b, 0);
    if (n === 0) return { keypoints: new Float32Array(0), scores: new Float32Array(0) };
    const height = Math.max(...images.map((im) => im.height));
    const width = Math.max(...images.map((im) => im.width));
    let pixels;
    if (images.length === 1) {
      pixels = images[0].data;
    } else { // pad bottom/right with black to a common size
      pixels = new Uint8Array(images.length * height * width * 3);
      images.forEach((im, b) => {
        for (let y = 0; y < im.height; y++) {
          pixels.set(im.data.subarray(y * im.width * 3, (y + 1) * im.width * 3), ((b * height + y) * width) * 3);
        }
      });
    }
    const flat = new Float32Array(4 * n);
    const index = new Int32Array(n);
    let row = 0;
    boxes.forEach((b, i) => {
      flat.set(b, 4 * row);
      index.fill(i, row, row + counts[i]);
      row += counts[i];
    });
    const feeds = {
      images: new ort.Tensor('uint8', pixels, [images.length, height, width, 3]),
      image_sizes: new ort.Tensor('int32', Int32Array.from(images.flatMap((im) => [im.height, im.width])), [images.length, 2]),
      boxes: new ort.Tensor('float32', flat, [n, 4]),
      box_image_index: new ort.Tensor('int32', index, [n]),
    };
    this.calls += 1;
    let out;
    try {
      out = await this.session.run(feeds);
    } catch (err) {
      throw new ModelError(`graph call failed (${String(err.message).split('\n')[0]})`);
    }
    return { keypoints: out.keypoints.data, scores: out.scores.data };
  }

  /**
   * Every image's candidates from graph calls of at most `batch` boxes (an image may span
   * several calls; consecutive images share one). Rows the graph marks invalid (no finite
   * keypoint coordinate) are not candidates. Returns per image { n, keypoints, scores, boxes }.
   */
  async candidates(images, boxes, batch) {
    const owner = boxes.flatMap((b, i) => Array(b.scores.length).fill(i));
    const k = this.k;
    const allKeypoints = new Float32Array(owner.length * k * 2);
    const allScores = new Float32Array(owner.length * k);
    const flat = new Float32Array(owner.length * 4);
    let at = 0;
    for (const b of boxes) { flat.set(b.xyxy, at); at += b.xyxy.length; }
    for (let lo = 0; lo < owner.length; lo += batch) {
      const hi = Math.min(lo + batch, owner.length);
      const used = [...new Set(owner.slice(lo, hi))].sort((a, b) => a - b);
      const parts = used.map((i) => {
        const rows = [];
        for (let r = lo; r < hi; r++) if (owner[r] === i) rows.push(...flat.subarray(4 * r, 4 * r + 4));
        return Float32Array.from(rows);
      });
      const out = await this.infer(used.map((i) => images[i]), parts);
      allKeypoints.set(out.keypoints, lo * k * 2);
      allScores.set(out.scores, lo * k);
    }
    const result = [];
    let start = 0;
    boxes.forEach((b) => {
      const rows = [];
      for (let r = start; r < start + b.scores.length; r++) {
        const kp = allKeypoints.subarray(r * k * 2, (r + 1) * k * 2);
        if (kp.some(Number.isFinite)) rows.push(r);
      }
      const local = rows.map((r) => r - start);
      result.push({
        n: rows.length,
        keypoints: Float32Array.from(rows.flatMap((r) => [...allKeypoints.subarray(r * k * 2, (r + 1) * k * 2)])),
        scores: Float32Array.from(rows.flatMap((r) => [...allScores.subarray(r * k, (r + 1) * k)])),
        boxes: {
          xyxy: Float32Array.from(local.flatMap((i) => [...b.xyxy.subarray(4 * i, 4 * i + 4)])),
          scores: Float32Array.from(local, (i) => b.scores[i]),
        },
      });
      start += b.scores.length;
    });
    return result;
  }

  async close() {
    await this.session.release();
  }
}
