#!/usr/bin/env node
// rmpe-node: run an rmpe-exported pose model on JPEG/PNG images from Node.js and write COCO
// keypoint results, the way `rmpe-run` does (see README.md in this folder).

import { readdirSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';
import { BoxFileError, DetectionFile, cleanBoxes, imageIds, wholeImage } from './boxes.js';
import { ImageError, loadImage } from './image.js';
import { ModelError, PoseModel } from './model.js';
import { NMS_MODES, nmsParams, personScores, poseNms } from './nms.js';
import { cocoEntries, pythonJson, writeAtomic } from './results.js';

const PROG = 'rmpe-node';
const IMAGE_SUFFIXES = ['.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff']; // what rmpe-run lists in folders

const USAGE = `usage: node main.js MODEL.onnx INPUT [INPUT ...] [options]

Run an rmpe-exported pose model (ONNX Runtime, CPU) on JPEG and PNG images and write COCO keypoint
results as rmpe-run does. INPUT: image files or folders (their images, not sub-folders).

options:
  --boxes FILE, --detfile FILE  detections JSON: COCO results (integer image_id) or AlphaPose detfile
                                (file-name image_id); without it, each whole image is one person
  --out FILE             results JSON to write (default: print it to stdout)
  --nms MODE             pose NMS: rmpe, alphapose or none (default: the model's pose_nms.default, rmpe)
  --box-thr T            drop boxes scoring below T (default 0.05)
  --max-people N         keep the N best boxes per image (default 0: all)
  --batch N              most boxes per graph call (default 16)
  --threads N            ONNX Runtime intra-op threads (default 0: its own choice)
  --meta FILE            model metadata JSON (default: the model.json next to the model, else the
                         metadata inside the .onnx)
  --quiet                no summary line
  -h, --help             this help

exit status: 0 done (unreadable images are reported and skipped), 1 every image failed,
2 bad arguments, model, box file or no images.`;

class UsageError extends Error {}

function say(message) {
  process.stderr.write(`${PROG}: ${message}\n`);
}

function number(text, name, { integer = false, min = -Infinity } = {}) {
  const value = Number(text);
  if (text === undefined || text.trim() === '' || !Number.isFinite(value) || (integer && !Number.isInteger(value)) || value < min) {
    throw new UsageError(`${name} needs ${integer ? 'an integer' : 'a number'}${min > -Infinity ? ` >= ${min}` : ''}, got ${JSON.stringify(text)}`);
  }
  return value;
}

function parseCommandLine(argv) {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        boxes: { type: 'string' },
        detfile: { type: 'string' },
        out: { type: 'string' },
        nms: { type: 'string' },
        'box-thr': { type: 'string' },
        'max-people': { type: 'string' },
        batch: { type: 'string' },
        threads: { type: 'string' },
        meta: { type: 'string' },
        quiet: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    throw new UsageError(err.message.split('\n')[0]);
  }
  const { values, positionals } = parsed;
  if (values.help) return { help: true };
  if (positionals.length < 2) throw new UsageError('needs a model and at least one image (see --help)');
  if (values.boxes && values.detfile) throw new UsageError('give --boxes or --detfile, not both');
  if (values.nms !== undefined && !NMS_MODES.includes(values.nms)) {
    throw new UsageError(`--nms must be one of ${NMS_MODES.join(', ')}, got ${JSON.stringify(values.nms)}`);
  }
  return {
    model: positionals[0],
    inputs: positionals.slice(1),
    boxes: values.boxes ?? values.detfile,
    out: values.out,
    nms: values.nms,
    boxThr: values['box-thr'] === undefined ? 0.05 : number(values['box-thr'], '--box-thr'),
    maxPeople: values['max-people'] === undefined ? 0 : number(values['max-people'], '--max-people', { integer: true }),
    batch: values.batch === undefined ? 16 : number(values.batch, '--batch', { integer: true, min: 1 }),
    threads: values.threads === undefined ? 0 : number(values.threads, '--threads', { integer: true, min: 0 }),
    meta: values.meta,
    quiet: Boolean(values.quiet),
  };
}

/** Image files from the inputs: files as given (named by their file name), folders' images (sorted, no hidden files). */
function findInputs(specs) {
  const items = [];
  const problems = [];
  const skipped = [];
  for (const spec of specs) {
    let stat;
    try {
      stat = statSync(spec);
    } catch {
      problems.push(`${spec}: no such file or folder`);
      continue;
    }
    if (stat.isDirectory()) {
      for (const name of readdirSync(spec).sort()) {
        const path = join(spec, name);
        if (name.startsWith('.') || !statSync(path).isFile()) continue;
        if (IMAGE_SUFFIXES.some((s) => name.toLowerCase().endsWith(s))) items.push({ path, name });
        else skipped.push(name);
      }
    } else {
      items.push({ path: spec, name: basename(spec) });
    }
  }
  return { items, problems, skipped };
}

/** The poses kept for one image: pose NMS over its candidates, or every candidate with --nms none. */
function selectPoses(candidates, mode, params, k) {
  const { n, keypoints, scores, boxes } = candidates;
  if (mode === 'none' || n === 0) {
    // scored like rmpe mode (median keypoint score), in float32 as numpy does for float32 scores
    return { keypoints, keypointScores: scores, boxes: boxes.xyxy, scores: personScores(scores, boxes.scores, 'median', k, true) };
  }
  return poseNms({ n, k, boxes: boxes.xyxy, boxScores: boxes.scores, keypoints, scores }, params);
}

/**
 * Boxes of consecutive images wait here for a shared graph call, as rmpe-run batches them: a call
 * takes at most `batch` boxes, and an image with more boxes than that is split over several calls.
 */
class Batcher {
  constructor(model, batch, onPoses) {
    Object.assign(this, { model, batch, onPoses, pending: [] });
  }

  async add(index, image, boxes) {
    const waiting = this.pending.reduce((sum, p) => sum + p.boxes.scores.length, 0);
    if (this.pending.length && waiting + boxes.scores.length > this.batch) await this.flush();
    this.pending.push({ index, image, boxes });
    if (boxes.scores.length >= this.batch) await this.flush();
  }

  async flush() {
    const group = this.pending;
    this.pending = [];
    if (!group.length) return;
    const candidates = await this.model.candidates(group.map((p) => p.image), group.map((p) => p.boxes), this.batch);
    group.forEach((p, i) => this.onPoses(p.index, candidates[i]));
  }
}

/** Detections, model and pose NMS constants; throws BoxFileError or ModelError. */
async function openInputs(args) {
  const detections = args.boxes ? new DetectionFile(args.boxes) : null;
  const model = await PoseModel.open(args.model, { metaPath: args.meta, threads: args.threads });
  const poseNmsMeta = model.metadata.pose_nms;
  const mode = args.nms ?? (poseNmsMeta && poseNmsMeta.default) ?? 'rmpe';
  if (!NMS_MODES.includes(mode)) {
    throw new ModelError(`${model.metadata.source}: unknown pose_nms.default ${JSON.stringify(mode)}`);
  }
  let params = null;
  if (mode !== 'none') {
    try {
      params = nmsParams(mode, poseNmsMeta);
    } catch (err) {
      throw new ModelError(`${model.metadata.source}: ${err.message}`);
    }
  }
  return { detections, model, mode, params };
}

async function run(args) {
  const started = process.hrtime.bigint();
  const found = findInputs(args.inputs);
  for (const problem of found.problems) say(problem);
  if (found.skipped.length) {
    const shown = found.skipped.slice(0, 5).join(', ') + (found.skipped.length > 5 ? ', ...' : '');
    say(`skipped ${found.skipped.length} file(s) that are not images: ${shown}`);
  }
  if (!found.items.length) {
    say(`error: no images found in ${args.inputs.join(', ')}`);
    return 2;
  }
  let opened;
  try {
    opened = await openInputs(args);
  } catch (err) {
    if (!(err instanceof BoxFileError || err instanceof ModelError)) throw err;
    say(`error: ${err.message}`);
    return 2;
  }
  const { detections, model, mode, params } = opened;

  const ids = imageIds(found.items.map((item) => item.name));
  const entries = new Map(); // input index -> its results entries
  let people = 0;
  let failures = 0;
  const batcher = new Batcher(model, args.batch, (index, candidates) => {
    const poses = selectPoses(candidates, mode, params, model.k);
    entries.set(index, cocoEntries(ids[index], poses, model.k));
    people += poses.scores.length;
  });
  try {
    for (const [index, item] of found.items.entries()) {
      let image;
      try {
        image = loadImage(item.path);
      } catch (err) {
        if (!(err instanceof ImageError)) throw err;
        say(`skipped ${item.path}: ${err.message}`);
        failures += 1;
        continue;
      }
      const raw = detections ? detections.lookup(item.name, ids[index]) : wholeImage(image.height, image.width);
      await batcher.add(index, image, cleanBoxes(raw, args.boxThr, args.maxPeople));
    }
    await batcher.flush();
  } catch (err) {
    if (!(err instanceof ModelError)) throw err;
    say(`error: ${err.message}`);
    return 2;
  } finally {
    await model.close();
  }

  const text = pythonJson([...entries.keys()].sort((a, b) => a - b).flatMap((i) => entries.get(i)));
  if (args.out) {
    try {
      writeAtomic(args.out, text);
    } catch (err) {
      say(`error: ${args.out}: cannot write results (${err.code || err.message})`);
      return 2;
    }
  } else {
    process.stdout.write(`${text}\n`);
  }
  if (!args.quiet) {
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    say(`${entries.size} images, ${people} people, ${failures} failures in ${seconds.toFixed(2)} s `
      + `(${model.calls} graph calls, pose NMS ${mode})${args.out ? `; results in ${args.out}` : ''}`);
  }
  return entries.size === 0 && failures ? 1 : 0;
}

async function main() {
  let args;
  try {
    args = parseCommandLine(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    say(`error: ${err.message}`);
    return 2;
  }
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  return run(args);
}

main().then((status) => { process.exitCode = status; }, (err) => {
  say(`internal error: ${err && err.stack ? err.stack : err}`);
  process.exitCode = 3;
});
