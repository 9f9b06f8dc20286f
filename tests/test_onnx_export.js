// tests/test_onnx_export.js — runs ONNX models with ONNX Runtime (npm
// onnxruntime-node) for tests/test_onnx_export.c.
//
//   node test_onnx_export.js ORT_PACKAGE_DIR JOBS_FILE
//   node test_onnx_export.js ORT_PACKAGE_DIR --version
//
// JOBS_FILE has one job a line: MODEL.onnx INPUT.bin N C H W OUTPUT.bin.
// INPUT.bin holds N*C*H*W little-endian float32 values (NCHW); the model's
// single output (float32) is written to OUTPUT.bin as it is (runs of at
// most 256 samples). One session
// per model, one intra-op thread, default graph optimizations (what a user
// of ONNX Runtime gets, QDQ fusion included). Any failure prints the
// model's name and ONNX Runtime's message and exits 1.
'use strict';
const fs = require('fs');
const path = require('path');

async function main() {
  const [pkg, jobs] = process.argv.slice(2);
  const ort = require(path.resolve(pkg));
  if (jobs === '--version') {
    console.log(ort.env.versions.node || ort.env.versions.common);
    return;
  }
  const lines = fs.readFileSync(jobs, 'utf8').split('\n').filter((l) => l.trim());
  for (const line of lines) {
    const [model, input, n, c, h, w, output] = line.trim().split(/\s+/);
    try {
      const dims = [n, c, h, w].map(Number);
      const buf = fs.readFileSync(input);
      const x = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length));
      const s = await ort.InferenceSession.create(model, {
        intraOpNumThreads: 1, interOpNumThreads: 1,
        graphOptimizationLevel: process.env.QUALM_ORT_OPT || 'all',
      });
      // batches of at most 256 samples: bounded memory for a whole test split
      const per = dims[1] * dims[2] * dims[3];
      const fd = fs.openSync(output, 'w');
      for (let s0 = 0; s0 < dims[0]; s0 += 256) {
        const m = Math.min(256, dims[0] - s0);
        const feeds = {};
        feeds[s.inputNames[0]] = new ort.Tensor('float32', x.subarray(s0 * per, (s0 + m) * per),
          [m, dims[1], dims[2], dims[3]]);
        const res = await s.run(feeds);
        const y = res[s.outputNames[0]];
        if (y.type !== 'float32') throw new Error(`output type ${y.type}`);
        fs.writeSync(fd, Buffer.from(y.data.buffer, y.data.byteOffset, y.data.byteLength));
      }
      fs.closeSync(fd);
      if (s.release) await s.release();
    } catch (e) {
      console.error(`onnxruntime: ${model}: ${e.message}`);
      process.exit(1);
    }
  }
}

main().catch((e) => {
  console.error(`onnxruntime: ${e.message}`);
  process.exit(1);
});
