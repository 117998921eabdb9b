/**
 * Our WGSL kernels (src/model/webgpu-kernels.ts) against the plain tfjs ops, values and gradients,
 * on the webgpu backend: in CI through Mesa's lavapipe (CPU Vulkan; .ci/run installs it and sets
 * ARL_REQUIRE_WEBGPU=1 so a missing adapter fails instead of skipping), on the GPU machine on the GPU.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { DecodeSession } from '../src/infer/decode-session.ts';
import { generate } from '../src/infer/generate.ts';
import { makeConfig } from '../src/model/config.ts';
import { softmaxGrad, softmaxMasked } from '../src/ops/attention.ts';
import { addRmsNorm, rmsNorm, rmsNormOps } from '../src/ops/rms-norm.ts';
import { applyRotary } from '../src/ops/rotary.ts';
import { swiglu, swigluOps } from '../src/ops/swiglu.ts';
import { hasKernel } from '../src/ops/registry.ts';
import { randomNormal } from '../src/ops/random-normal.ts';
import { attentionMask, disposeCache, LlamaModel, rotateHalfMatrix } from '../src/model/llama.ts';
import { AdamW, clipByGlobalNorm, stepOnMeanGradient } from '../src/train/optimizer.ts';
import type { CausalHint } from '../src/ops/matmul.ts';
import { formatMatmulTiling, matmulSplitPlan, matmulSplits, matmulThreads, measureMatmulResidency, parseMatmulTiling, type MatmulTiling } from '../src/ops/webgpu/matmul.ts';
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { maxAbsDiff, REPO_ROOT, webgpuUnavailable } from './helpers.ts';

const skip = await webgpuUnavailable();

function randn(shape: number[], seed: number): tf.Tensor {
  return tf.randomNormal(shape, 0, 1, 'float32', seed);
}

/** Values and gradients (w.r.t. every input, for a random upstream gradient) of f at the inputs. */
async function valueAndGrads(f: (...xs: tf.Tensor[]) => tf.Tensor, inputs: tf.Tensor[], seed: number): Promise<Float32Array[]> {
  const out = tf.tidy(() => {
    const y = f(...inputs);
    const dy = randn(y.shape, seed);
    const grads = tf.grads((...xs: tf.Tensor[]) => tf.sum(tf.mul(f(...xs), dy)))(inputs);
    return [y, ...grads];
  });
  const values = await Promise.all(out.map((t) => t.data() as Promise<Float32Array>));
  tf.dispose(out);
  return values;
}

/** How far an f32 product may be from tfjs's `y`: 1e-5 of its largest magnitude (at least 1e-5). */
function productTolerance(y: ArrayLike<number>): number {
  return 1e-5 * Array.from(y).reduce((max, v) => Math.max(max, Math.abs(v)), 1);
}

function assertClose(got: Float32Array[], want: Float32Array[], tol: number, what: string): void {
  assert.equal(got.length, want.length);
  got.forEach((g, i) => {
    const scale = Math.max(1, ...Array.from(want[i], Math.abs));
    const diff = maxAbsDiff(g, want[i]);
    assert.ok(diff <= tol * scale, `${what}, output ${i}: max |diff| ${diff} > ${tol * scale}`);
  });
}

describe('f32 matmul tilings', () => {
  it('reads and writes tilings, with the default thread tile left unwritten', () => {
    const t = parseMatmulTiling('128x128/16u4v@8x16') as MatmulTiling;
    assert.deepEqual(t, { tm: 128, tn: 128, rows: 8, cols: 16, k: 16, unrolled: 4, vec4: true, doubleBuffered: false, prefetched: false, grouped: false, warpTiled: false, interiorUnchecked: false, oneAddress: false, swizzled: false });
    assert.equal(matmulThreads(t), 128);
    for (const spec of ['128x128/16uv', '128x64/16', '64x64/16ug', '128x128/16u4v@8x16', '256x128/32vd', '64x64/64uv', '128x128/16uvw', '128x128/16uvwi', '128x128/16uvia', '128x128/16uvias']) assert.equal(formatMatmulTiling(parseMatmulTiling(spec) as MatmulTiling), spec);
    assert.equal(formatMatmulTiling(parseMatmulTiling('128x128/16v@8x8') as MatmulTiling), '128x128/16v');
    assert.equal(matmulThreads(parseMatmulTiling('128x64/16uv') as MatmulTiling), 256);
  });

  it('says what is wrong with a bad tiling', () => {
    assert.match(parseMatmulTiling('128x128') as string, /is not TMxTN\/K/);
    assert.match(parseMatmulTiling('128x128/16u3') as string, /u3 must divide K/);
    assert.match(parseMatmulTiling('128x128/16u4p') as string, /p .* needs u/);
    assert.match(parseMatmulTiling('128x128/16uva') as string, /a .* needs i and v/);
    assert.match(parseMatmulTiling('128x128/16@6x8') as string, /multiples of 4 dividing TM and TN/);
    assert.match(parseMatmulTiling('128x128/16@4x4') as string, /1024 threads/);
    assert.match(parseMatmulTiling('128x128/16@32x32') as string, /16 threads/);
    assert.match(parseMatmulTiling('128x64/16w@8x16') as string, /w .* needs TN\/C a multiple of 8/);
  });

  it('splits K to fill the last wave of workgroups where the residency is known, else below 256 tiles', () => {
    // 320 tiles on 264 slots: one split leaves the second wave 21% full; four fill 97% of five waves.
    assert.equal(matmulSplits(320, 4096, 264), 4);
    assert.equal(matmulSplits(512, 2048, 264), 1); // 97% full already: a split's traffic would cost more
    assert.equal(matmulSplits(40, 8192, 264), 13); // 520 of 528 slots
    assert.equal(matmulSplits(100, 1000, 264), 1); // K too short to split
    // Causal attention's key gradients at 1.1B: 128 tiles doing 72 tiles' work (row tile i of 8 does (8 - i) / 8 of K).
    assert.equal(matmulSplits(128, 8192, 264), 2);
    assert.equal(matmulSplits(72, 8192, 264), 11);
    assert.equal(matmulSplits(40, 8192, undefined), 7);
    assert.equal(matmulSplits(320, 4096, undefined), 1);
  });

  it('splits only the last tile rows where the rows before them fill whole waves', () => {
    // 1.1B's gate and up products: 32 x 44 tiles on 264 slots. Rows 0-29 fill five waves whole; the last two rows'
    // 88 tiles in 3 pieces each fill the sixth. Splitting every tile in two would fill 11 of half length, at 5x the traffic.
    assert.deepEqual(matmulSplitPlan(32, 44, 2048, 264), { splits: 3, tailRow0: 30 });
    assert.deepEqual(matmulSplitPlan(16, 20, 4096, 264), { splits: 4, tailRow0: 13 }); // the q/k/v weight gradient
    assert.deepEqual(matmulSplitPlan(32, 16, 2048, 264), { splits: 1, tailRow0: null }); // 97% full already
    assert.deepEqual(matmulSplitPlan(2, 20, 4096, 264), { splits: matmulSplits(40, 4096, 264), tailRow0: null }); // under a wave: all split
    assert.deepEqual(matmulSplitPlan(16, 20, 4096, undefined), { splits: 1, tailRow0: null }); // residency unknown: the fixed rule
  });
});

describe('webgpu kernels', { skip }, () => {
  before(() => {
    assert.ok(hasKernel('ArlRmsNorm'), 'our kernels are registered on webgpu');
  });

  it('a WebGPU validation error ends the process with the error', async () => {
    const script = join(mkdtempSync(join(tmpdir(), 'arl-webgpu-')), 'invalid-shader.mts');
    writeFileSync(
      script,
      [
        // the same tfjs module backend.ts loads (a bare specifier would not resolve from the temp dir)
        `import * as tf from ${JSON.stringify(pathToFileURL(createRequire(import.meta.url).resolve('@tensorflow/tfjs')).href)};`,
        `import { selectBackend } from ${JSON.stringify(pathToFileURL(join(REPO_ROOT, 'src', 'backend.ts')).href)};`,
        `await selectBackend('webgpu');`,
        `(tf.backend() as any).device.createShaderModule({ code: 'fn broken( {' });`,
        `await new Promise((resolve) => setTimeout(resolve, 2000));`,
        `console.log('survived');`,
      ].join('\n'),
    );
    const run = promisify(execFile)(process.execPath, ['--import', 'tsx', script], { cwd: REPO_ROOT });
    const failure = (await run.then(() => null, (err: unknown) => err)) as { code: number; stdout: string; stderr: string } | null;
    assert.ok(failure, 'the process exited with an error');
    assert.notEqual(failure.code, 0);
    assert.match(failure.stderr, /WebGPU error \(fatal\): .*WGSL/);
    assert.doesNotMatch(failure.stdout, /survived/);
  });

  it('RMSNorm: values and gradients equal the tfjs ops (odd width, more rows than a workgroup)', async () => {
    const x = randn([300, 37], 1);
    const w = tf.add(1, randn([37], 2));
    const want = await valueAndGrads((a, b) => rmsNormOps(a as tf.Tensor2D, b as tf.Tensor1D, 1e-5), [x, w], 3);
    const got = await valueAndGrads((a, b) => rmsNorm(a as tf.Tensor2D, b as tf.Tensor1D, 1e-5), [x, w], 3);
    assertClose(got, want, 2e-5, 'rmsNorm');
    tf.dispose([x, w]);
  });

  it('residual add + RMSNorm (decoding): the sum and its norm equal the tfjs ops', async () => {
    const [x, r] = [randn([300, 37], 4), randn([300, 37], 5)];
    const w = tf.add(1, randn([37], 6)) as tf.Tensor1D;
    const sum = tf.add(x, r) as tf.Tensor2D;
    const normed = rmsNormOps(sum, w, 1e-5);
    const want = [await sum.data(), await normed.data()] as Float32Array[];
    const fused = addRmsNorm(x as tf.Tensor2D, r as tf.Tensor2D, w, 1e-5);
    assertClose([await fused[0].data(), await fused[1].data()] as Float32Array[], want, 2e-5, 'addRmsNorm');
    tf.dispose([x, r, w, sum, normed, ...fused]);
  });

  it('attention softmax: mask add + softmax and its gradient equal the tfjs ops (odd widths, causal mask)', async () => {
    // 42 rows: not a multiple of the kernel's 4 rows per workgroup; widths below and above the 64 invocations of a row.
    for (const [cols, seed] of [[37, 7], [150, 17]]) {
      const scores = randn([2, 3, 7, cols], seed);
      const mask = tf.tidy(() => tf.mul(tf.sub(1, tf.linalg.bandPart(tf.ones([7, cols]), -1, cols - 6)), -1e9)) as tf.Tensor2D;
      const dy = randn([2, 3, 7, cols], seed + 1);
      const reference = tf.grad((x: tf.Tensor) => tf.mul(tf.softmax(tf.add(x, mask)), dy).sum());
      const [wantP, wantGrad] = [tf.softmax(tf.add(scores, mask)), reference(scores)];
      const gotP = softmaxMasked(scores, mask);
      const gotGrad = softmaxGrad(gotP, dy);
      const values = async (ts: tf.Tensor[]) => (await Promise.all(ts.map((t) => t.data()))) as Float32Array[];
      assertClose(await values([gotP, gotGrad]), await values([wantP, wantGrad]), 2e-5, `softmax, width ${cols}`);
      tf.dispose([scores, mask, dy, wantP, wantGrad, gotP, gotGrad]);
    }
  });

  it('attention softmax of causal attention (attr causal): what follows each row\'s token is not read', async () => {
    for (const seq of [37, 150]) {
      const rows = 2 * seq; // two query heads per key head
      const mask = attentionMask(seq, 0, 2, null);
      const future = tf.tensor2d(Array.from({ length: rows * seq }, (_, i) => Number(i % seq > Math.floor(i / seq) % seq)), [rows, seq]);
      // NaN where a row's token does not see the key: read, it would make the row NaN.
      const poisoned = (x: tf.Tensor): tf.Tensor => tf.where(tf.cast(future, 'bool'), tf.fill(x.shape, NaN), x);
      const [scores, dy] = [tf.mul(randn([2, rows, seq], 3), tf.sub(1, future)), tf.mul(randn([2, rows, seq], 4), tf.sub(1, future))];
      const wantP = softmaxMasked(scores, mask);
      const want = [wantP, softmaxGrad(wantP, dy)];
      const [scoresRead, dyRead] = [poisoned(scores), poisoned(dy)];
      const gotP = softmaxMasked(scoresRead, mask, true);
      const got = [gotP, softmaxGrad(gotP, dyRead, true)];
      const values = async (ts: tf.Tensor[]) => (await Promise.all(ts.map((t) => t.data()))) as Float32Array[];
      assertClose(await values(got), await values(want), 1e-6, `causal softmax, width ${seq}`);
      tf.dispose([mask, future, scores, dy, scoresRead, dyRead, ...want, ...got]);
    }
  });

  it('attention softmax with f16 output (mixed precision): the f32 probabilities unchanged, the f16 words those of ArlToF16', async () => {
    // Width 150: even (a pair fills a word), not a multiple of the 128 a row's invocations hold per pass.
    const cols = 150;
    const scores = tf.tidy(() => tf.mul(randn([2, 3, 7, cols], 27), 4));
    const mask = tf.tidy(() => tf.mul(tf.sub(1, tf.linalg.bandPart(tf.ones([7, cols]), -1, cols - 6)), -1e9)) as tf.Tensor2D;
    // Large enough that some of the gradient overflows f16: written as infinity, which loss scaling watches for.
    const dp = tf.tidy(() => tf.mul(randn([2, 3, 7, cols], 28), 3e5));
    const run = (name: string, inputs: tf.NamedTensorMap, half: boolean) => tf.engine().runKernel(name, inputs, { half }) as tf.Tensor | tf.Tensor[];
    const p = run('ArlSoftmaxMasked', { scores, mask }, false) as tf.Tensor;
    const [pHalfRun, p16] = run('ArlSoftmaxMasked', { scores, mask }, true) as tf.Tensor[];
    const ds = run('ArlSoftmaxGrad', { p, dp }, false) as tf.Tensor;
    const ds16 = run('ArlSoftmaxGrad', { p, dp }, true) as tf.Tensor;
    const [pWant, dsWant] = [p, ds].map((x) => tf.engine().runKernel('ArlToF16', { x }) as tf.Tensor);
    assert.deepEqual(p16.shape, [2, 3, 7, cols / 2]);
    assert.deepEqual(Array.from(await pHalfRun.data()), Array.from(await p.data()));
    assert.deepEqual(Array.from(await p16.data()), Array.from(await pWant.data()));
    const words = await ds16.data();
    assert.deepEqual(Array.from(words), Array.from(await dsWant.data()));
    const halves = Array.from(new Uint16Array(new Int32Array(words).buffer));
    assert.ok(halves.some((h) => (h & 0x7fff) === 0x7c00), 'some of the gradient overflowed to infinity');
    const odd = tf.ones([3, 5]);
    assert.throws(() => run('ArlSoftmaxGrad', { p: odd, dp: odd }, true), /even width/);
    tf.dispose([scores, mask, dp, p, pHalfRun, p16, ds, ds16, pWant, dsWant, odd]);
  });

  it('attention heads: the layout kernel and its gradient equal the tfjs ops (rotary, scale, query groups); f16 output that of ArlToF16', async () => {
    const [batch, seq, heads, kvHeads, headDim] = [2, 5, 4, 2, 8];
    const n = heads + 2 * kvHeads;
    const scale = 1 / Math.sqrt(headDim);
    const qkv = randn([batch * seq, n * headDim], 31);
    const [cos, sin] = [randn([seq, headDim], 32) as tf.Tensor2D, randn([seq, headDim], 33) as tf.Tensor2D];
    const rotate = rotateHalfMatrix(headDim);
    const rotary = (t: tf.Tensor) => tf.add(tf.mul(t, cos), tf.mul(tf.reshape(tf.matMul(tf.reshape(t, [-1, headDim]), rotate), t.shape), sin));
    const reference = (x: tf.Tensor): tf.Tensor[] => {
      const all = tf.transpose(tf.reshape(x, [batch, seq, n, headDim]), [0, 2, 1, 3]);
      const part = (from: number, count: number) => tf.slice(all, [0, from, 0, 0], [batch, count, seq, headDim]);
      return [
        tf.reshape(tf.mul(rotary(part(0, heads)), scale), [batch, kvHeads, (heads / kvHeads) * seq, headDim]),
        rotary(part(heads, kvHeads)),
        part(heads + kvHeads, kvHeads),
      ];
    };
    const attrs = { batch, seq, heads, kvHeads, headDim, scale };
    const got = tf.engine().runKernel('ArlAttentionHeads', { qkv, cos, sin }, { ...attrs, half: false }) as tf.Tensor[];
    const want = reference(qkv);
    const values = async (ts: tf.Tensor[]) => (await Promise.all(ts.map((t) => t.data()))) as Float32Array[];
    assert.deepEqual(got.map((t) => t.shape), want.map((t) => t.shape));
    assertClose(await values(got), await values(want), 2e-5, 'attention heads');

    const halves = tf.engine().runKernel('ArlAttentionHeads', { qkv, cos, sin }, { ...attrs, half: true }) as tf.Tensor[];
    const cast = got.map((x) => tf.engine().runKernel('ArlToF16', { x }) as tf.Tensor);
    for (const [i, h] of halves.entries()) assert.deepEqual(Array.from(await h.data()), Array.from(await cast[i].data()), `f16 output ${i}`);

    const upstream = want.map((t, i) => randn(t.shape, 40 + i));
    const gradWant = tf.grad((x: tf.Tensor) => tf.addN(reference(x).map((t, i) => tf.sum(tf.mul(t, upstream[i])))))(qkv);
    const gradGot = tf.engine().runKernel('ArlAttentionHeadsGrad', { dq: upstream[0], dk: upstream[1], dv: upstream[2], cos, sin }, { ...attrs, half: false }) as tf.Tensor;
    assert.deepEqual(gradGot.shape, [batch * seq, n * headDim]);
    assertClose(await values([gradGot]), await values([gradWant]), 2e-5, 'attention heads gradient');
    tf.dispose([qkv, cos, sin, rotate, ...got, ...want, ...halves, ...cast, ...upstream, gradWant, gradGot]);
  });

  it('rotary positions: the kernel and its transpose equal the tfjs ops (matmul by rotate-half) and their gradient', async () => {
    const [seq, headDim] = [5, 8];
    const x = randn([2, 3, seq, headDim], 9) as tf.Tensor4D;
    const dy = randn([2, 3, seq, headDim], 10) as tf.Tensor4D;
    const [cos, sin] = [randn([seq, headDim], 11) as tf.Tensor2D, randn([seq, headDim], 12) as tf.Tensor2D];
    const rotate = rotateHalfMatrix(headDim);
    const reference = (t: tf.Tensor) => tf.add(tf.mul(t, cos), tf.mul(tf.reshape(tf.matMul(tf.reshape(t, [-1, headDim]), rotate), t.shape), sin));
    const want = [reference(x), tf.grad((t: tf.Tensor) => tf.mul(reference(t), dy).sum())(x)];
    const got = [applyRotary(x, cos, sin, rotate), applyRotary(dy, cos, sin, rotate, true)];
    const values = async (ts: tf.Tensor[]) => (await Promise.all(ts.map((t) => t.data()))) as Float32Array[];
    assertClose(await values(got), await values(want), 2e-5, 'rotary');
    tf.dispose([x, dy, cos, sin, rotate, ...want, ...got]);
  });

  it('normal initial weights drawn on the GPU: N(0, std), one stream per seed, odd sizes filled, used by the model', async () => {
    assert.ok(hasKernel('ArlRandomNormal'));
    const draw = async (shape: number[], seed: number) => {
      const t = randomNormal(shape, 0.5, seed);
      const values = (await t.data()) as Float32Array;
      t.dispose();
      return values;
    };
    const a = await draw([401, 251], 7);
    const n = a.length;
    const mean = a.reduce((s, v) => s + v, 0) / n;
    const std = Math.sqrt(a.reduce((s, v) => s + (v - mean) ** 2, 0) / n);
    const within = (k: number) => a.filter((v) => Math.abs(v) < k * 0.5).length / n;
    assert.ok(Math.abs(mean) < 0.005 && Math.abs(std - 0.5) < 0.005, `mean ${mean}, std ${std}`);
    assert.ok(Math.abs(within(1) - 0.6827) < 0.005 && Math.abs(within(2) - 0.9545) < 0.003, `${within(1)}, ${within(2)}`);
    assert.ok(a.every(Number.isFinite) && a[n - 1] !== 0, 'the last (odd) element is drawn');
    assert.deepEqual(await draw([401, 251], 7), a);
    assert.ok(maxAbsDiff(await draw([401, 251], 8), a) > 0.1, 'another seed, other values');
    const profile = await tf.profile(() => new LlamaModel(makeConfig(null, { vocabSize: 61, dim: 32, layers: 1, heads: 2, kvHeads: 1, maxSeq: 8 }), 3).dispose());
    assert.ok(profile.kernelNames.includes('ArlRandomNormal'), 'the model draws its weights on the GPU');
  });

  it('SwiGLU: values and gradients equal the tfjs ops', async () => {
    const gate = tf.mul(3, randn([33, 70], 4));
    const up = randn([33, 70], 5);
    const want = await valueAndGrads((a, b) => swigluOps(a as tf.Tensor2D, b as tf.Tensor2D), [gate, up], 6);
    const got = await valueAndGrads((a, b) => swiglu(a as tf.Tensor2D, b as tf.Tensor2D), [gate, up], 6);
    assertClose(got, want, 1e-5, 'swiglu');
    tf.dispose([gate, up]);
  });

  it('BatchMatMul: our tiled kernel equals tfjs\'s, every tiling, every transpose, broadcast batch, ragged edges, grouped tiles, 8 x 4 threads a subgroup', async () => {
    // Odd sizes take the scalar reads; multiples of 4 the vec4 ones where a tiling asks for them.
    const [m, n, k] = [259, 261, 37];
    const [m4, n4, k4] = [260, 264, 36];
    const cases: [number[], number[], boolean, boolean][] = [
      [[2, m, k], [2, k, n], false, false],
      [[2, k, m], [1, k, n], true, false],
      [[1, m, k], [2, n, k], false, true],
      [[k, m], [n, k], true, true],
      [[2, m4, k4], [2, k4, n4], false, false],
      [[k4, m4], [1, k4, n4], true, false],
      [[m4, k4], [n4, k4], false, true],
      [[1100, m4], [1100, n4], true, false], // few output tiles, long K: split along K
      [[2, 600, k4], [2, k4, 200], false, false], // 10 rows of 64-row tiles: two groups under g
    ];
    // Loops written out (u) only on small tiles: lavapipe compiles them slowly. After @, a thread's outputs (128 threads here).
    const tilings = ['', '128x128/16d', '128x256/16v', '256x128/32vd', '128x64/16uvp', '64x64/16ug', '128x128/16u4v@8x16', '64x128/8vg@8x8', '32x64/16u2@4x4', '128x64/16vw', '64x128/16w', '128x64/16vi', '64x64/16dwi', '128x128/16via', '64x64/32dvia', '128x128/16vias', '64x64/32dvs', '64x128/8s@8x8', '64x64/64vs', '64x64/16u2vws'];
    for (const tiling of tilings) {
      process.env.ARL_MATMUL_TILING = tiling;
      for (const [shapeA, shapeB, ta, tb] of cases) {
        const a = randn(shapeA, 12);
        const b = randn(shapeB, 13);
        const ours = tf.matMul(a, b, ta, tb);
        process.env.ARL_STOCK_MATMUL = '1';
        const stock = tf.matMul(a, b, ta, tb);
        delete process.env.ARL_STOCK_MATMUL;
        assert.deepEqual(ours.shape, stock.shape);
        const [x, y] = await Promise.all([ours.data(), stock.data()]);
        const tol = productTolerance(y);
        assert.ok(maxAbsDiff(x, y) < tol, `tiling "${tiling}", ${shapeA} x ${shapeB}, transposeA ${ta} transposeB ${tb}: max |diff| ${maxAbsDiff(x, y)}`);
        tf.dispose([a, b, ours, stock]);
      }
    }
    delete process.env.ARL_MATMUL_TILING;
  });

  it('BatchMatMul: causal attention\'s products skip the tiles causality zeroes (split K too), equal to tfjs\'s on the rest', async () => {
    const [seq, rows, hd] = [256, 5 * 256, 64]; // 5 query heads of 256 tokens on one key head
    /** [rows, seq] of 1 where row r's token t and key j satisfy keep(t, j), else 0. */
    const where = (keep: (t: number, j: number) => boolean): tf.Tensor2D =>
      tf.tensor2d(Array.from({ length: rows * seq }, (_, i) => Number(keep(Math.floor(i / seq) % seq, i % seq))), [rows, seq]);
    // Not zero above the diagonal, as probabilities would be: a product told it is causal reads only the tiles it needs.
    const p = randn([2, rows, seq], 16);
    const [q, keys, x] = [randn([2, rows, hd], 17), randn([2, seq, hd], 18), randn([2, rows, hd], 19)];
    const product = (a: tf.Tensor, b: tf.Tensor, transposeA: boolean, transposeB: boolean, hint?: CausalHint): tf.Tensor =>
      tf.engine().runKernel('BatchMatMul', { a, b }, { transposeA, transposeB, ...hint }) as tf.Tensor;
    const stock = (a: tf.Tensor, b: tf.Tensor, transposeA: boolean, transposeB: boolean): tf.Tensor => {
      process.env.ARL_STOCK_MATMUL = '1';
      const out = tf.matMul(a, b, transposeA, transposeB);
      delete process.env.ARL_STOCK_MATMUL;
      return out;
    };
    const check = async (got: tf.Tensor, want: tf.Tensor, what: string): Promise<void> => {
      const [x, y] = await Promise.all([got.data(), want.data()]);
      const tol = productTolerance(y);
      assert.ok(maxAbsDiff(x, y) < tol, `${what}: max |diff| ${maxAbsDiff(x, y)}`);
      tf.dispose([got, want]);
    };
    // Each tiling with the tile rows (tm) and columns (tn) its products take (the default's 64-wide products: 128 x 64).
    for (const [tiling, tm, tn] of [['', 128, 128], ['64x64/16vg', 64, 64], ['32x64/16d@4x4', 32, 64], ['64x64/64v', 64, 64], ['64x64/16vi', 64, 64], ['64x64/32via', 64, 64], ['64x64/32vias', 64, 64]] as const) {
      process.env.ARL_MATMUL_TILING = tiling;
      // Products over p read only the keys of row tiles up to the row's own: key j of the tile of t or an earlier one.
      const read = where((t, j) => Math.floor(j / tm) <= Math.floor(t / tm));
      const pRead = tf.mul(p, read);
      await check(product(p, keys, false, false, { causal: 'queries', seq }), stock(pRead, keys, false, false), `"${tiling}" queries`);
      // K = 1,280 rows over few output tiles: split in two at row 640, inside a head; each split resumes at its tiles' first key.
      await check(product(p, x, true, false, { causal: 'keys', seq }), stock(pRead, x, true, false), `"${tiling}" keys`);
      // Score tiles wholly above the diagonal are left zero.
      const computed = where((t, j) => Math.floor(j / tn) * tn < (Math.floor(t / tm) + 1) * tm);
      const full = stock(q, keys, false, true);
      await check(product(q, keys, false, true, { causal: 'scores', seq }), tf.mul(full, computed), `"${tiling}" scores`);
      tf.dispose([read, pRead, computed, full]);
    }
    delete process.env.ARL_MATMUL_TILING;
    tf.dispose([p, q, keys, x]);
  });

  it('BatchMatMul: the measured residency of a tiling, and a product split to fill its waves, equal to tfjs\'s', async () => {
    process.env.ARL_MATMUL_TILING = '32x64/16u2@4x4';
    const slots = (await measureMatmulResidency()).get('32x64/16u2@4x4')!;
    assert.ok(slots >= 1 && slots <= 1024, `residency ${slots}`);
    // slots + 1 output tiles and a K of 4,096: the wave rule splits it (one split would leave a wave almost empty).
    const [m, n, k] = [32 * (slots + 1), 64, 4096];
    assert.ok(slots === 1 || matmulSplits(slots + 1, k, slots) > 1); // one slot: every wave is full, nothing to split
    const a = randn([k, m], 14);
    const b = randn([k, n], 15);
    const ours = tf.matMul(a, b, true, false);
    process.env.ARL_STOCK_MATMUL = '1';
    const stock = tf.matMul(a, b, true, false);
    delete process.env.ARL_STOCK_MATMUL;
    delete process.env.ARL_MATMUL_TILING;
    const [x, y] = await Promise.all([ours.data(), stock.data()]);
    assert.ok(maxAbsDiff(x, y) < productTolerance(y), `max |diff| ${maxAbsDiff(x, y)}`);
    tf.dispose([a, b, ours, stock]);
    // Tile rows filling whole waves take their whole K, the rest are split, with scalar, checked vec4 and unchecked vec4 access.
    for (const tiling of ['32x64/16u2@4x4', '32x64/16u2v@4x4', '32x64/16u2vi@4x4']) {
      process.env.ARL_MATMUL_TILING = tiling;
      const tilingSlots = (await measureMatmulResidency()).get(tiling)!;
      // (slots + 1) x 3 tiles, a whole number of waves but one row (x 2 where 3 tiles a row would fill the waves).
      const [tilesM, tilesN] = [tilingSlots + 1, tilingSlots % 3 === 0 ? 2 : 3];
      const plan = matmulSplitPlan(tilesM, tilesN, 4096, tilingSlots);
      if (plan.tailRow0 === null) {
        assert.equal(tilingSlots, 1, `${tilingSlots} slots: ${tilesM} x ${tilesN} tiles should split their tail`);
        continue;
      }
      const [c, d] = [randn([32 * tilesM - 28, 4096], 20), randn([4096, 64 * tilesN], 21)]; // the last tile row 4 rows deep
      const tailed = tf.matMul(c, d);
      process.env.ARL_MATMUL_SPLIT_TAIL = '0';
      const whole = tf.matMul(c, d);
      process.env.ARL_STOCK_MATMUL = '1';
      const want = tf.matMul(c, d);
      delete process.env.ARL_MATMUL_SPLIT_TAIL;
      delete process.env.ARL_STOCK_MATMUL;
      const [x, w, y] = await Promise.all([tailed.data(), whole.data(), want.data()]);
      const tol = productTolerance(y);
      assert.ok(maxAbsDiff(x, y) < tol && maxAbsDiff(w, y) < tol, `"${tiling}" tail split: max |diff| ${maxAbsDiff(x, y)}, whole split ${maxAbsDiff(w, y)}`);
      tf.dispose([c, d, tailed, whole, want]);
    }
    delete process.env.ARL_MATMUL_TILING;
    // A tiling staging more than the device's workgroup memory is never measured (its shader would not compile), nor taken.
    const huge = '256x256/64v';
    process.env.ARL_MATMUL_TILING = huge;
    assert.equal((await measureMatmulResidency()).has(huge), false);
    delete process.env.ARL_MATMUL_TILING;
  });

  it('Transpose: ours (last axis kept, a multiple of 4) and tfjs\'s for the rest equal tfjs\'s, bit for bit', async () => {
    const cases: [number[], number[]][] = [
      [[2, 5, 3, 8], [0, 2, 1, 3]], // attention's heads <-> tokens
      [[3, 4, 7, 12], [2, 0, 1, 3]],
      [[6, 5, 4], [1, 0, 2]],
      [[7, 4], [0, 1]],
      [[2, 3, 5], [0, 2, 1]], // the last axis moves: tfjs's
      [[2, 3, 6], [1, 0, 2]], // 6 wide: tfjs's
    ];
    for (const [shape, perm] of cases) {
      const x = randn(shape, 30);
      const ours = tf.transpose(x, perm);
      process.env.ARL_STOCK_WEBGPU = '1';
      const stock = tf.transpose(x, perm);
      delete process.env.ARL_STOCK_WEBGPU;
      assert.deepEqual(ours.shape, stock.shape);
      assert.deepEqual(await ours.data(), await stock.data(), `[${shape}] by [${perm}]`);
      tf.dispose([x, ours, stock]);
    }
  });

  it('global gradient norm and clipping equal the tfjs ops (vec4 and scalar loads, a tensor past the workgroup cap)', async () => {
    const grads = [randn([70000], 7), randn([3, 5], 8), randn([1], 9), randn([70001], 10), randn([3000, 3001], 11)];
    const want = tf.tidy(() => tf.sqrt(tf.addN(grads.map((g) => tf.sum(tf.square(g))))));
    const { clipped, norm } = clipByGlobalNorm(grads, 1);
    const [n, w] = await Promise.all([norm.data(), want.data()]);
    assert.ok(Math.abs(n[0] - w[0]) <= 1e-4 * w[0], `norm ${n[0]} vs ${w[0]}`);
    const total = tf.tidy(() => tf.sqrt(tf.addN(clipped.map((g) => tf.sum(tf.square(g))))));
    assert.ok(Math.abs((await total.data())[0] - 1) < 1e-4, 'clipped to norm 1');
    tf.dispose([...grads, ...clipped, norm, want, total]);
  });

  it('AdamW: the in-place kernel takes the same steps as the tfjs ops (vec4 and scalar), and leaks nothing', async () => {
    const init = [randn([300, 7], 10), randn([7], 11)]; // 2,100 elements: vec4; 7: scalar
    const run = async (composed: boolean): Promise<Float32Array[]> => {
      const params = init.map((t) => tf.variable(t.clone()));
      const opt = new AdamW(params, { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 });
      opt.composed = composed;
      const before = tf.memory().numTensors;
      for (let step = 0; step < 3; step++) {
        const grads = params.map((p, i) => randn(p.shape, 20 + 2 * step + i));
        opt.apply(grads, 1e-2);
        tf.dispose(grads);
      }
      assert.equal(tf.memory().numTensors, before, 'no tensors left behind by the steps');
      const out = await Promise.all([...params, ...opt.m, ...opt.v].map((t) => t.data() as Promise<Float32Array>));
      opt.dispose();
      tf.dispose(params);
      return out;
    };
    assertClose(await run(false), await run(true), 2e-6, 'adamw');
    tf.dispose(init);
  });

  it('a training step with the clip scale and the finite check on the GPU equals the tfjs-ops step, and skips a non-finite one', async () => {
    const init = [randn([300, 7], 14), randn([7], 15)];
    const run = async (composed: boolean, poisonStep: number): Promise<{ values: Float32Array[]; results: { loss: number; gradNorm: number }[]; steps: number }> => {
      const params = init.map((t) => tf.variable(t.clone()));
      const opt = new AdamW(params, { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 });
      opt.composed = composed;
      const before = tf.memory().numTensors;
      const results = [];
      for (let step = 0; step < 3; step++) {
        // Two micro-batches; gradient norm ~100, so the clip to 0.5 is active.
        const scale = step === poisonStep ? NaN : 3;
        const micro = [1, 2].map((c) => () => tf.add(tf.mul(tf.sum(tf.square(params[0])), scale), tf.sum(tf.mul(params[1], c))) as tf.Scalar);
        results.push(await stepOnMeanGradient(opt, micro, { clip: 0.5, lr: 1e-2 }));
      }
      assert.equal(tf.memory().numTensors, before, 'no tensors left behind by the steps');
      const values = await Promise.all([...params, ...opt.m, ...opt.v].map((t) => t.data() as Promise<Float32Array>));
      const steps = opt.step;
      opt.dispose();
      tf.dispose(params);
      return { values, results, steps };
    };
    for (const poisonStep of [-1, 1]) {
      const [gpu, ops] = [await run(false, poisonStep), await run(true, poisonStep)];
      assert.ok(gpu.results[0].gradNorm > 1, `the clip is active (norm ${gpu.results[0].gradNorm})`);
      assertClose(gpu.values, ops.values, 2e-5, `adamw step, non-finite step ${poisonStep}`);
      assert.equal(gpu.steps, ops.steps, 'skipped steps are not counted');
      gpu.results.forEach((r, i) => {
        const o = ops.results[i];
        if (i === poisonStep) assert.ok(!Number.isFinite(r.loss) && !Number.isFinite(o.loss), 'the non-finite loss is reported');
        else assert.ok(Math.abs(r.loss - o.loss) <= 1e-4 * Math.abs(o.loss) && Math.abs(r.gradNorm - o.gradNorm) <= 1e-4 * o.gradNorm, `step ${i}: ${JSON.stringify(r)} vs ${JSON.stringify(o)}`);
      });
    }
    tf.dispose(init);
  });

  for (const attentionWindow of [null, 6]) {
    it(`KV-cached decoding (preallocated cache, one attention kernel) matches the full forward, window ${attentionWindow}`, async () => {
      const config = makeConfig(null, { vocabSize: 61, dim: 48, layers: 2, heads: 6, kvHeads: 2, maxSeq: 24, attentionWindow });
      const model = new LlamaModel(config, 3);
      const ids = Array.from({ length: 15 }, (_, i) => (i * 17 + 3) % config.vocabSize);
      const full = tf.tidy(() => model.logits(tf.tensor2d([ids], [1, ids.length], 'int32')));
      const fullValues = (await full.data()) as Float32Array;
      full.dispose();
      const probe = model.emptyCache(1);
      assert.equal(probe.layers[0].capacity, config.maxSeq, 'the webgpu cache is preallocated');
      disposeCache(probe);
      const before = tf.memory().numTensors;
      const session = new DecodeSession(model);
      const got: number[] = [];
      // a 10-token prefill (the many-token kernel), then one token at a time (the decoding kernel)
      const prefill = await session.append(ids.slice(0, 10)); // logits after position 9
      got.push(...prefill);
      for (const id of ids.slice(10)) got.push(...(await session.append([id])));
      session.dispose();
      assert.equal(tf.memory().numTensors, before, 'the session leaves no tensors behind');
      const want = Array.from(fullValues.slice(9 * config.vocabSize));
      assert.ok(maxAbsDiff(got, want) < 1e-4, `max |diff| ${maxAbsDiff(got, want)}`);
      // and generation through it is the same, token for token, as without the cache
      const withCache = await generate(model, ids.slice(0, 8), { maxNewTokens: 6, greedy: true, useCache: true });
      const without = await generate(model, ids.slice(0, 8), { maxNewTokens: 6, greedy: true, useCache: false });
      assert.deepEqual(withCache, without);
      model.dispose();
    });
  }
});
