// Decoding JPEG and PNG files to 8-bit RGB without native libraries, and the EXIF orientation
// applied the way rmpe's runtime does it (runtime/images.py load_image: Pillow's
// ImageOps.exif_transpose, then conversion to RGB).
//
// JPEG: libjpeg-turbo compiled to WebAssembly (@cwasm/jpeg-turbo), the library Pillow uses, so
// the pixels are the same as rmpe-run's (pure-JS decoders upsample chroma differently, which moves
// colour edges by tens of grey levels); CMYK/YCCK files, which its RGB output cannot take, go
// through jpeg-js. PNG: pngjs.
//
// Orientation sources, as Pillow reads them: the EXIF IFD0 Orientation tag (0x0112) of a JPEG's
// APP1 "Exif\0\0" segments or of a PNG's eXIf chunk (or its "Raw profile type exif" text);
// failing that, an XMP packet's tiff:Orientation. Values 2-8 flip or rotate the pixels.
//
// Colour conversion, as Pillow + runtime/images.py: grey becomes R = G = B, alpha is dropped
// (not composited), palettes are expanded; 16-bit PNG colour keeps the high byte of each sample,
// and 16-bit grey is divided by 257 (rounded) when any sample is above 255.

import { readFileSync, statSync } from 'node:fs';
import { inflateSync } from 'node:zlib';
import turbo from '@cwasm/jpeg-turbo';
import jpeg from 'jpeg-js';
import pngjs from 'pngjs';

const { PNG } = pngjs;

/** An image that cannot be read or decoded; the message names the problem in a few words. */
export class ImageError extends Error {}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const EXIF_HEADER = Buffer.from('Exif\0\0', 'latin1');
const XMP_HEADER = Buffer.from('http://ns.adobe.com/xap/1.0/\0', 'latin1');
const ORIENTATION_TAG = 0x0112;
const MAX_PIXELS = 2 * 89478485; // Pillow's decompression bomb limit: larger images are refused
const JPEG_LIMITS = { maxResolutionInMP: 180, maxMemoryUsageInMB: 4096 };

/**
 * Decode `path` to { width, height, data } with data an RGB Uint8Array (row-major, 3 bytes a
 * pixel), EXIF orientation applied; `orientation` says which one was found (1: none).
 * Throws ImageError.
 */
export function loadImage(path) {
  let bytes;
  try {
    if (statSync(path).size === 0) throw new ImageError('empty file (0 bytes)');
    bytes = readFileSync(path);
  } catch (err) {
    if (err instanceof ImageError) throw err;
    throw new ImageError(`cannot open (${err.code || err.message})`);
  }
  let decoded;
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) {
    decoded = decodeJpeg(bytes);
  } else if (bytes.length >= 8 && bytes.subarray(0, 8).equals(PNG_SIGNATURE)) {
    decoded = decodePng(bytes);
  } else {
    throw new ImageError('not an image or an unsupported format (this example reads JPEG and PNG)');
  }
  const oriented = applyOrientation(decoded.image, decoded.orientation);
  return { ...oriented, orientation: decoded.orientation };
}

function checkSize(width, height) {
  if (width * height > MAX_PIXELS) throw new ImageError('image too large (decompression bomb guard)');
}

function decodeFailure(err) {
  const text = String(err && err.message ? err.message : err).trim().split('\n')[0];
  return new ImageError(`cannot decode (${text || 'unknown error'})`);
}

// ---------------------------------------------------------------------------------------- JPEG

function decodeJpeg(bytes) {
  const meta = jpegMetadata(bytes);
  checkSize(meta.width, meta.height);
  let image;
  if (meta.components === 4) { // CMYK / YCCK
    let raw;
    try {
      raw = jpeg.decode(bytes, { formatAsRGBA: false, useTArray: true, ...JPEG_LIMITS });
    } catch (err) {
      throw decodeFailure(err);
    }
    image = { width: raw.width, height: raw.height, data: raw.data };
  } else {
    let raw;
    try {
      raw = turbo.decode(bytes); // RGBA
    } catch (err) {
      throw new ImageError(`cannot decode (${err.message === 'Not implemented' ? 'corrupt JPEG data' : err.message})`);
    }
    const rgba = raw.data;
    const data = new Uint8Array(raw.width * raw.height * 3);
    for (let i = 0, j = 0; i < data.length; i += 3, j += 4) {
      data[i] = rgba[j]; data[i + 1] = rgba[j + 1]; data[i + 2] = rgba[j + 2];
    }
    image = { width: raw.width, height: raw.height, data };
  }
  if (!image.width || !image.height) throw new ImageError('cannot decode (no image frame)');
  return { image, orientation: orientationFrom(meta.exif, meta.xmp) };
}

const SOF_MARKERS = new Set([0xc0, 0xc1, 0xc2, 0xc3, 0xc5, 0xc6, 0xc7, 0xc9, 0xca, 0xcb, 0xcd, 0xce, 0xcf]);

/**
 * From the segments before the scan: the Exif payload (all "Exif\0\0" APP1 segments joined, as
 * Pillow does), the last XMP packet, and the frame's size and number of colour components.
 */
function jpegMetadata(bytes) {
  let exif = null;
  let xmp = null;
  let width = 0;
  let height = 0;
  let components = 0;
  let pos = 2;
  while (pos + 1 < bytes.length) {
    if (bytes[pos] !== 0xff) { pos += 1; continue; } // junk between segments: look for the next marker
    const marker = bytes[pos + 1];
    if (marker === 0xff) { pos += 1; continue; } // fill byte
    pos += 2;
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd8)) continue; // no length
    if (marker === 0xda || marker === 0xd9) break; // start of scan / end of image: metadata is before
    if (pos + 2 > bytes.length) break;
    const length = bytes.readUInt16BE(pos);
    const payload = bytes.subarray(pos + 2, Math.min(pos + length, bytes.length));
    if (SOF_MARKERS.has(marker) && payload.length >= 6) {
      height = payload.readUInt16BE(1);
      width = payload.readUInt16BE(3);
      components = payload[5];
    } else if (marker === 0xe1) {
      if (startsWith(payload, EXIF_HEADER)) {
        exif = exif === null ? payload : Buffer.concat([exif, payload.subarray(6)]);
      } else if (startsWith(payload, XMP_HEADER)) {
        xmp = payload.subarray(XMP_HEADER.length).toString('latin1');
      }
    }
    pos += length;
  }
  return { exif, xmp, width, height, components };
}

// ----------------------------------------------------------------------------------------- PNG

function decodePng(bytes) {
  const chunks = pngChunks(bytes);
  const header = chunks.find((c) => c.type === 'IHDR');
  if (!header || header.data.length < 13) throw new ImageError('cannot decode (PNG without an IHDR chunk)');
  checkSize(header.data.readUInt32BE(0), header.data.readUInt32BE(4));
  const depth = header.data[8];
  const colorType = header.data[9];
  // pngjs blackens pixels of a grey/RGB image that equal its tRNS colour; Pillow keeps them (the
  // alpha is dropped anyway), so the tRNS chunk of those images is left out before decoding.
  let input = bytes;
  const trns = chunks.find((c) => c.type === 'tRNS');
  if (trns && (colorType === 0 || colorType === 2)) {
    input = Buffer.concat([bytes.subarray(0, trns.start), bytes.subarray(trns.end)]);
  }
  let raw;
  try {
    raw = PNG.sync.read(input, { skipRescale: depth === 16 });
  } catch (err) {
    throw decodeFailure(err);
  }
  const { width, height } = raw;
  const rgba = raw.data; // RGBA, Uint16Array for 16-bit images
  const data = new Uint8Array(width * height * 3);
  if (depth === 16 && colorType === 0) {
    // Pillow's mode I;16; runtime/images.py: divided by 257 and rounded when the peak is above 255.
    let peak = 0;
    for (let i = 0; i < width * height; i++) peak = Math.max(peak, rgba[4 * i]);
    for (let i = 0; i < width * height; i++) {
      const v = rgba[4 * i];
      const grey = peak > 255 ? Math.round(v / 257) : v;
      data[3 * i] = grey; data[3 * i + 1] = grey; data[3 * i + 2] = grey;
    }
  } else {
    const shift = depth === 16 ? 8 : 0; // 16-bit colour: Pillow keeps the high byte
    for (let i = 0; i < width * height; i++) {
      data[3 * i] = rgba[4 * i] >> shift;
      data[3 * i + 1] = rgba[4 * i + 1] >> shift;
      data[3 * i + 2] = rgba[4 * i + 2] >> shift;
    }
  }
  return { image: { width, height, data }, orientation: pngOrientation(chunks) };
}

/** The chunks of a PNG file: { type, data, start, end } (start/end: the whole chunk's byte range). */
function pngChunks(bytes) {
  const chunks = [];
  let pos = 8;
  while (pos + 8 <= bytes.length) {
    const length = bytes.readUInt32BE(pos);
    const type = bytes.toString('latin1', pos + 4, pos + 8);
    const end = pos + 12 + length;
    if (end > bytes.length) break; // truncated: let the decoder report it
    chunks.push({ type, data: bytes.subarray(pos + 8, pos + 8 + length), start: pos, end });
    if (type === 'IEND') break;
    pos = end;
  }
  return chunks;
}

/** A PNG text chunk (tEXt, zTXt, iTXt) as { key, text }, or null. */
function pngText(chunk) {
  try {
    const zero = chunk.data.indexOf(0);
    if (zero < 0) return null;
    const key = chunk.data.toString('latin1', 0, zero);
    const rest = chunk.data.subarray(zero + 1);
    if (chunk.type === 'tEXt') return { key, text: rest.toString('latin1') };
    if (chunk.type === 'zTXt') return { key, text: inflateSync(rest.subarray(1)).toString('latin1') };
    if (chunk.type === 'iTXt') {
      const compressed = rest[0] === 1;
      let body = rest.subarray(2);
      for (let skip = 0; skip < 2; skip++) body = body.subarray(body.indexOf(0) + 1); // language, translated key
      return { key, text: (compressed ? inflateSync(body) : body).toString('utf8') };
    }
  } catch {
    return null;
  }
  return null;
}

function pngOrientation(chunks) {
  let exif = null;
  let rawProfile = null;
  let xmp = null;
  for (const chunk of chunks) {
    if (chunk.type === 'eXIf') {
      exif = Buffer.concat([EXIF_HEADER, chunk.data]);
    } else if (chunk.type === 'tEXt' || chunk.type === 'zTXt' || chunk.type === 'iTXt') {
      const entry = pngText(chunk);
      if (entry && entry.key === 'Raw profile type exif') rawProfile = entry.text;
      if (entry && entry.key === 'XML:com.adobe.xmp') xmp = entry.text;
    }
  }
  if (exif === null && rawProfile !== null) {
    // ImageMagick's form: "\nexif\n   length\nhex digits..." (Pillow joins the lines after the third)
    const hex = rawProfile.split('\n').slice(3).join('');
    if (/^[0-9a-fA-F]*$/.test(hex) && hex.length % 2 === 0) exif = Buffer.from(hex, 'hex');
  }
  return orientationFrom(exif, xmp);
}

// -------------------------------------------------------------------------------- orientation

function startsWith(buffer, prefix) {
  return buffer.length >= prefix.length && buffer.subarray(0, prefix.length).equals(prefix);
}

/** Orientation 1-8 from an EXIF payload, else from XMP's tiff:Orientation, else 1. */
function orientationFrom(exif, xmp) {
  const fromExif = exif === null ? undefined : exifOrientation(exif);
  if (fromExif !== undefined) return fromExif;
  if (xmp) {
    const match = /tiff:Orientation(="|>)([0-9])/.exec(xmp);
    if (match) return Number(match[2]);
  }
  return 1;
}

/**
 * The IFD0 Orientation tag of an EXIF payload (TIFF data, after up to two "Exif\0\0" prefixes),
 * or undefined when there is none. A tag that is not one integer counts as present but no
 * orientation (0), as in Pillow. Damaged data: whatever was read before the damage.
 */
export function exifOrientation(payload) {
  let tiff = payload;
  for (let i = 0; i < 2 && startsWith(tiff, EXIF_HEADER); i++) tiff = tiff.subarray(EXIF_HEADER.length);
  if (tiff.length < 8) return undefined;
  const order = tiff.toString('latin1', 0, 2);
  if (order !== 'II' && order !== 'MM') return undefined;
  const le = order === 'II';
  const u16 = (at) => (le ? tiff.readUInt16LE(at) : tiff.readUInt16BE(at));
  const u32 = (at) => (le ? tiff.readUInt32LE(at) : tiff.readUInt32BE(at));
  if (u16(2) !== 42) return undefined;
  const ifd = u32(4);
  if (ifd + 2 > tiff.length) return undefined;
  const entries = u16(ifd);
  let orientation;
  for (let e = 0; e < entries; e++) {
    const at = ifd + 2 + 12 * e;
    if (at + 12 > tiff.length) break;
    if (u16(at) !== ORIENTATION_TAG) continue;
    const type = u16(at + 2);
    const count = u32(at + 4);
    const value = at + 8;
    if (count !== 1) orientation = 0;
    else if (type === 3) orientation = u16(value); // SHORT
    else if (type === 8) orientation = le ? tiff.readInt16LE(value) : tiff.readInt16BE(value); // SSHORT
    else if (type === 4) orientation = u32(value); // LONG
    else if (type === 9) orientation = le ? tiff.readInt32LE(value) : tiff.readInt32BE(value); // SLONG
    else if (type === 6) orientation = tiff.readInt8(value); // SBYTE
    else orientation = 0;
  }
  return orientation;
}

/**
 * The pixels of `image` turned upright for EXIF orientation `o` (Pillow's transposes:
 * 2 mirror, 3 rotate 180°, 4 flip, 5 transpose, 6 rotate 90° clockwise, 7 transverse,
 * 8 rotate 90° anticlockwise). Other values leave the image as it is.
 */
export function applyOrientation(image, o) {
  if (!(o >= 2 && o <= 8)) return image;
  const { width: w, height: h, data } = image;
  const swap = o >= 5;
  const outW = swap ? h : w;
  const outH = swap ? w : h;
  const out = new Uint8Array(data.length);
  for (let y = 0; y < outH; y++) {
    for (let x = 0; x < outW; x++) {
      let sx; let sy; // the source pixel of output pixel (x, y)
      switch (o) {
        case 2: sx = w - 1 - x; sy = y; break;
        case 3: sx = w - 1 - x; sy = h - 1 - y; break;
        case 4: sx = x; sy = h - 1 - y; break;
        case 5: sx = y; sy = x; break;
        case 6: sx = y; sy = h - 1 - x; break;
        case 7: sx = w - 1 - y; sy = h - 1 - x; break;
        default: sx = w - 1 - y; sy = x; break; // 8
      }
      const src = 3 * (sy * w + sx);
      const dst = 3 * (y * outW + x);
      out[dst] = data[src]; out[dst + 1] = data[src + 1]; out[dst + 2] = data[src + 2];
    }
  }
  return { width: outW, height: outH, data: out };
}
