#!/usr/bin/env node
// Decode one image as main.js does (EXIF orientation applied) and report it, for tests.
//
//   node tools/decode.js IMAGE [RAW_OUT]
//
// stdout: {"width", "height", "orientation"}; RAW_OUT (optional) receives the RGB bytes, row by row.

import { writeFileSync } from 'node:fs';
import { ImageError, loadImage } from '../image.js';

const [path, rawOut] = process.argv.slice(2);
if (!path) {
  process.stderr.write('usage: node tools/decode.js IMAGE [RAW_OUT]\n');
  process.exit(2);
}
try {
  const image = loadImage(path);
  if (rawOut) writeFileSync(rawOut, image.data);
  process.stdout.write(`${JSON.stringify({ width: image.width, height: image.height, orientation: image.orientation })}\n`);
} catch (err) {
  if (!(err instanceof ImageError)) throw err;
  process.stderr.write(`decode: ${path}: ${err.message}\n`);
  process.exit(1);
}
