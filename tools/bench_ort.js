#!/usr/bin/env node
// Times ONNX Runtime (npm package onnxruntime-node, CPU) on MODEL's forward
// pass, for tools/bench to compare with `relprop bench --mode forward`.
//
//   node tools/bench_ort.js MODEL RUNS WARMUP THREADS
//
// Prints one JSON object: median_s, min_s, max_s, peak_rss_mib, ort_version.
// Install: cd tools && npm install --no-save --ignore-scripts onnxruntime-node
'use strict';

const [model, runs, warmup, threads] = process.argv.slice(2);
if (!model || !(Number(runs) >= 1) || !(Number(warmup) >= 0) || !(Number(threads) >= 1)) {
  console.error('usage: bench_ort.js MODEL RUNS WARMUP THREADS');
  process.exit(2);
}

const ort = require('onnxruntime-node');

// Same kind of input as relprop bench's default (uniform in [-1, 1]); the
// values do not change the work of a ViT forward pass, so a simple LCG will do.
function uniformInput(n) {
  const a = new Float32Array(n);
  let s = 12345;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    a[i] = (s / 4294967296) * 2 - 1;
  }
  return a;
}

// The process's own peak (VmHWM): resourceUsage().maxRSS is ru_maxrss, which
// on Linux also holds the peak of the parent this process was forked from.
function peakRssMiB() {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(require('fs').readFileSync('/proc/self/status', 'utf8'));
    if (m) return Number(m[1]) / 1024;
  } catch (e) { /* not Linux */ }
  return process.resourceUsage().maxRSS / 1024;
}

async function main() {
  const session = await ort.InferenceSession.create(model, {
    executionProviders: ['cpu'],
    intraOpNumThreads: Number(threads),
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  const name = session.inputNames[0];
  const meta = session.inputMetadata && session.inputMetadata[0];
  if (!meta || !meta.isTensor || !meta.shape.length) {
    throw new Error(`cannot read the shape of input '${name}' from ${model}`);
  }
  // A symbolic (batch) dimension is run with size 1, as relprop does.
  const shape = meta.shape.map((d) => (typeof d === 'number' && d > 0 ? d : 1));
  const size = shape.reduce((a, b) => a * b, 1);
  const feeds = { [name]: new ort.Tensor('float32', uniformInput(size), shape) };

  for (let i = 0; i < Number(warmup); i++) await session.run(feeds);
  const times = [];
  for (let i = 0; i < Number(runs); i++) {
    const t0 = process.hrtime.bigint();
    await session.run(feeds);
    times.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  times.sort((a, b) => a - b);
  const mid = times.length >> 1;
  const median = times.length % 2 ? times[mid] : (times[mid - 1] + times[mid]) / 2;
  let version = null;
  try {
    version = require('onnxruntime-node/package.json').version;
  } catch (e) { /* older packages do not export package.json */ }
  console.log(JSON.stringify({
    median_s: median,
    min_s: times[0],
    max_s: times[times.length - 1],
    peak_rss_mib: peakRssMiB(),
    input_shape: shape,
    ort_version: version,
  }));
}

main().catch((e) => {
  console.error(`bench_ort.js: ${e && e.message ? e.message : e}`);
  process.exit(1);
});
