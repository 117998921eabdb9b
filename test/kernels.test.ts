/**
 * Fused ops and custom kernels against plain tfjs: values and gradients of each fused op (hand-
 * written backward passes) against autodiff of the plain formulation, and the wasm kernels
 * registered over the stock ones against the cpu backend. Runs on the cpu and wasm backends.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { selectBackend } from '../src/backend.ts';
import { causalAttention, type AttentionSpec } from '../src/ops/attention.ts';
import { rmsNorm, rmsNormOps } from '../src/ops/rms-norm.ts';
import { applyRotary } from '../src/ops/rotary.ts';
import { swiglu } from '../src/ops/swiglu.ts';
import { maskedCrossEntropy } from '../src/ops/cross-entropy.ts';
import { AdamW } from '../src/train/optimizer.ts';
import { maxAbsDiff, tf } from './helpers.ts';

const BACKENDS = ['cpu', 'wasm'] as const;

function randn(shape: number[], seed: number, scale = 1): tf.Tensor {
  return tf.tidy(() => tf.mul(tf.randomNormal(shape, 0, 1, 'float32', seed), scale));
}

/** Value and gradients of sum(f(inputs) * probe) w.r.t. every input. */
function valueAndGrads(f: (...xs: tf.Tensor[]) => tf.Tensor, inputs: tf.Tensor[], probe: tf.Tensor): { value: Float32Array; grads: Float32Array[] } {
  return tf.tidy(() => {
    const value = f(...inputs).dataSync() as Float32Array;
    const grads = tf.grads((...xs: tf.Tensor[]) => tf.sum(tf.mul(f(...xs), probe)))(inputs);
    return { value, grads: grads.map((g) => g.dataSync() as Float32Array) };
  });
}

function assertClose(name: string, got: { value: Float32Array; grads: Float32Array[] }, want: { value: Float32Array; grads: Float32Array[] }, tol: number): void {
  const dv = maxAbsDiff(got.value, want.value);
  assert.ok(dv < tol, `${name}: value max abs diff ${dv}`);
  got.grads.forEach((g, i) => {
    const dg = maxAbsDiff(g, want.grads[i]);
    assert.ok(dg < tol, `${name}: gradient ${i} max abs diff ${dg}`);
  });
}

function plainRmsNorm(x: tf.Tensor, w: tf.Tensor, eps: number): tf.Tensor {
  return tf.mul(tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), eps))), w);
}

function rotaryTables(seq: number, hd: number): { cos: tf.Tensor2D; sin: tf.Tensor2D; rotate: tf.Tensor2D } {
  const half = hd / 2;
  const cos = new Float32Array(seq * hd);
  const sin = new Float32Array(seq * hd);
  for (let p = 0; p < seq; p++) {
    for (let i = 0; i < half; i++) {
      const a = p / Math.pow(10000, (2 * i) / hd);
      cos[p * hd + i] = cos[p * hd + half + i] = Math.cos(a);
      sin[p * hd + i] = sin[p * hd + half + i] = Math.sin(a);
    }
  }
  const r = new Float32Array(hd * hd);
  for (let i = 0; i < half; i++) {
    r[(half + i) * hd + i] = -1;
    r[i * hd + half + i] = 1;
  }
  return { cos: tf.tensor2d(cos, [seq, hd]), sin: tf.tensor2d(sin, [seq, hd]), rotate: tf.tensor2d(r, [hd, hd]) };
}

function causalMask(seq: number, groups: number): tf.Tensor2D {
  const m = new Float32Array(groups * seq * seq);
  for (let g = 0; g < groups; g++) for (let t = 0; t < seq; t++) for (let j = t + 1; j < seq; j++) m[(g * seq + t) * seq + j] = -1e9;
  return tf.tensor2d(m, [groups * seq, seq]);
}

/** The plain formulation the fused attention replaces (autodiff differentiates it op by op). */
function plainAttention(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, s: AttentionSpec): tf.Tensor {
  const { batch, seq, heads, kvHeads, headDim } = s;
  const groups = heads / kvHeads;
  const toHeads = (t: tf.Tensor, n: number): tf.Tensor4D => tf.transpose(tf.reshape(t, [batch, seq, n, headDim]), [0, 2, 1, 3]);
  const qh = tf.mul(tf.reshape(applyRotary(toHeads(q, heads), s.cos, s.sin, s.rotate), [batch, kvHeads, groups * seq, headDim]), 1 / Math.sqrt(headDim));
  const kh = applyRotary(toHeads(k, kvHeads), s.cos, s.sin, s.rotate);
  const p = tf.softmax(tf.add(tf.matMul(qh, kh, false, true), s.mask));
  const ctx = tf.reshape(tf.matMul(p, toHeads(v, kvHeads)), [batch, heads, seq, headDim]);
  return tf.reshape(tf.transpose(ctx, [0, 2, 1, 3]), [batch * seq, heads * headDim]);
}

after(async () => {
  await selectBackend('cpu');
});

for (const backend of BACKENDS) {
  describe(`fused ops on ${backend}`, () => {
    test('rmsNorm: values and gradients match autodiff of the plain formula', async () => {
      await selectBackend(backend);
      const x = randn([6, 16], 1, 2);
      const w = tf.add(1, randn([16], 2, 0.1));
      const probe = randn([6, 16], 3);
      const want = valueAndGrads((a, b) => plainRmsNorm(a, b, 1e-5), [x, w], probe);
      assertClose('rmsNorm', valueAndGrads((a, b) => rmsNorm(a as tf.Tensor2D, b as tf.Tensor1D, 1e-5), [x, w], probe), want, 1e-4);
      assertClose('rmsNormOps', valueAndGrads((a, b) => rmsNormOps(a as tf.Tensor2D, b as tf.Tensor1D, 1e-5), [x, w], probe), want, 1e-4);
      tf.dispose([x, w, probe]);
    });

    test('swiglu: values and gradients match autodiff of silu(gate) * up', async () => {
      await selectBackend(backend);
      const g = randn([5, 12], 4, 3);
      const u = randn([5, 12], 5);
      const probe = randn([5, 12], 6);
      const got = valueAndGrads((a, b) => swiglu(a as tf.Tensor2D, b as tf.Tensor2D), [g, u], probe);
      const want = valueAndGrads((a, b) => tf.mul(tf.mul(a, tf.sigmoid(a)), b), [g, u], probe);
      assertClose('swiglu', got, want, 1e-4);
      tf.dispose([g, u, probe]);
    });

    for (const [heads, kvHeads] of [
      [4, 4],
      [4, 2],
      [3, 1],
    ]) {
      test(`causalAttention (${heads} heads, ${kvHeads} kv heads): values and gradients match autodiff`, async () => {
        await selectBackend(backend);
        const batch = 2;
        const seq = 7;
        const headDim = 8;
        const { cos, sin, rotate } = rotaryTables(seq, headDim);
        const mask = causalMask(seq, heads / kvHeads);
        const spec: AttentionSpec = { batch, seq, heads, kvHeads, headDim, cos, sin, rotate, mask };
        const q = randn([batch * seq, heads * headDim], 7);
        const k = randn([batch * seq, kvHeads * headDim], 8);
        const v = randn([batch * seq, kvHeads * headDim], 9);
        const probe = randn([batch * seq, heads * headDim], 10);
        const got = valueAndGrads((a, b, c) => causalAttention(a as tf.Tensor2D, b as tf.Tensor2D, c as tf.Tensor2D, spec), [q, k, v], probe);
        const want = valueAndGrads((a, b, c) => plainAttention(a, b, c, spec), [q, k, v], probe);
        assertClose('attention', got, want, 1e-4);
        tf.dispose([cos, sin, rotate, mask, q, k, v, probe]);
      });
    }

    test('maskedCrossEntropy: value and gradient match autodiff of -sum(w * log_softmax[target]) / sum(w), for weights as well as 0/1 masks', async () => {
      await selectBackend(backend);
      const rows = 9;
      const vocab = 13;
      const logits = randn([rows, vocab], 12, 4);
      const targets = tf.tensor1d([0, 12, 5, 5, 1, 7, 3, 11, 2], 'int32');
      const mask = tf.tensor1d([1, 5, 0, 2.5, 1, 0, 0.3, 1, 1]);
      const ours = tf.valueAndGrad((x: tf.Tensor) => maskedCrossEntropy(x as tf.Tensor2D, targets, mask))(logits);
      const plain = tf.valueAndGrad((x: tf.Tensor) =>
        tf.div(tf.neg(tf.sum(tf.mul(tf.sum(tf.mul(tf.logSoftmax(x), tf.oneHot(targets, vocab)), 1), mask))), tf.sum(mask)),
      )(logits);
      assert.ok(Math.abs(ours.value.dataSync()[0] - plain.value.dataSync()[0]) < 1e-5);
      assert.ok(maxAbsDiff(ours.grad.dataSync(), plain.grad.dataSync()) < 1e-6);
      // a target whose probability underflows float32 still gets its exact NLL
      const extreme = tf.tensor2d([[0, 200, -200]]);
      const nll = maskedCrossEntropy(extreme, tf.tensor1d([2], 'int32'), tf.ones([1]) as tf.Tensor1D).dataSync()[0];
      assert.ok(Math.abs(nll - 400) < 1e-3, `nll ${nll}`);
      tf.dispose([logits, targets, mask, ours.value, ours.grad, plain.value, plain.grad, extreme]);
    });

    test('AdamW: the JS kernel update equals the tfjs-ops update, and leaks nothing', async () => {
      await selectBackend(backend);
      const shapes = [[5, 3], [4]];
      const make = (): tf.Variable[] => shapes.map((sh, i) => tf.variable(randn(sh, 20 + i)));
      const opts = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 };
      const fusedParams = make();
      const composedParams = make();
      const fused = new AdamW(fusedParams, opts);
      const composed = new AdamW(composedParams, opts);
      composed.composed = true;
      const before = tf.memory().numTensors;
      for (let step = 0; step < 3; step++) {
        const grads = shapes.map((sh, i) => randn(sh, 30 + 10 * step + i));
        fused.apply(grads, 0.01);
        composed.apply(grads, 0.01);
        tf.dispose(grads);
      }
      assert.equal(tf.memory().numTensors, before);
      for (let i = 0; i < shapes.length; i++) {
        assert.ok(maxAbsDiff(fusedParams[i].dataSync(), composedParams[i].dataSync()) < 1e-6);
        assert.ok(maxAbsDiff(fused.m[i].dataSync(), composed.m[i].dataSync()) < 1e-6);
        assert.ok(maxAbsDiff(fused.v[i].dataSync(), composed.v[i].dataSync()) < 1e-6);
      }
      fused.dispose();
      composed.dispose();
      tf.dispose([...fusedParams, ...composedParams]);
    });

    test('fused ops leak no tensors through a gradient computation', async () => {
      await selectBackend(backend);
      const x = randn([4, 8], 11) as tf.Tensor2D;
      const w = tf.variable(tf.ones([8])) as tf.Variable<tf.Rank.R1>;
      const step = (): void => {
        const { value, grads } = tf.variableGrads(() => tf.sum(swiglu(rmsNorm(x, w, 1e-5), x)), [w]);
        tf.dispose([value, ...Object.values(grads)]);
      };
      step();
      const before = tf.memory().numTensors;
      for (let i = 0; i < 3; i++) step();
      assert.equal(tf.memory().numTensors, before);
      tf.dispose([x, w]);
    });
  });
}

describe('wasm kernels against the cpu backend', () => {
  const cases: [number[], number[], boolean, boolean][] = [
    [[5, 7], [7, 3], false, false],
    [[7, 5], [7, 3], true, false],
    [[5, 7], [3, 7], false, true],
    [[7, 5], [3, 7], true, true],
    [[2, 3, 5, 7], [2, 3, 7, 4], false, false],
    [[2, 3, 5, 7], [2, 3, 4, 7], false, true],
    [[2, 3, 7, 5], [2, 3, 7, 4], true, false],
    [[2, 3, 7, 5], [2, 3, 4, 7], true, true],
    [[2, 5, 7], [7, 4], false, false],
    [[5, 7], [3, 7, 4], false, false],
    [[2, 7, 5], [4, 7], true, true],
    [[1, 1, 5, 7], [2, 3, 7, 4], false, false],
    [[3, 1, 5, 7], [1, 2, 7, 4], false, false],
    [[1, 7], [7, 1], false, false],
    [[7, 3], [7, 5], true, false],
    [[1, 7, 3], [7, 5], true, false],
    [[7, 3], [5, 7], true, true],
  ];
  for (const [sa, sb, ta, tb] of cases) {
    test(`BatchMatMul ${JSON.stringify(sa)} x ${JSON.stringify(sb)} transposeA=${ta} transposeB=${tb}`, async () => {
      await selectBackend('cpu');
      const av = tf.randomNormal(sa, 0, 1, 'float32', 1).dataSync();
      const bv = tf.randomNormal(sb, 0, 1, 'float32', 2).dataSync();
      const want = tf.tidy(() => tf.matMul(tf.tensor(av, sa), tf.tensor(bv, sb), ta, tb));
      const wantShape = want.shape;
      const wantValues = want.dataSync();
      want.dispose();
      await selectBackend('wasm');
      const got = tf.tidy(() => tf.matMul(tf.tensor(av, sa), tf.tensor(bv, sb), ta, tb));
      assert.deepEqual(got.shape, wantShape);
      assert.ok(maxAbsDiff(got.dataSync(), wantValues) < 1e-5);
      got.dispose();
    });
  }

  test('GatherV2 rows (the embedding lookup) match the cpu backend, and out-of-range ids throw', async () => {
    await selectBackend('cpu');
    const table = tf.randomNormal([11, 6], 0, 1, 'float32', 3).dataSync();
    const ids = [[3, 0, 10], [7, 7, 1]];
    const want = tf.tidy(() => tf.gather(tf.tensor2d(table, [11, 6]), tf.tensor2d(ids, [2, 3], 'int32')).dataSync());
    await selectBackend('wasm');
    const got = tf.tidy(() => tf.gather(tf.tensor2d(table, [11, 6]), tf.tensor2d(ids, [2, 3], 'int32')));
    assert.deepEqual(got.shape, [2, 3, 6]);
    assert.ok(maxAbsDiff(got.dataSync(), want) === 0);
    got.dispose();
    assert.throws(() => tf.tidy(() => tf.gather(tf.tensor2d(table, [11, 6]), tf.tensor1d([11], 'int32'))));
  });

  const slices: [number[], number[], number[]][] = [
    [[8, 12, 5, 4], [0, 4, 0, 0], [8, 8, 5, 4]],
    [[8, 12, 5, 4], [1, 4, 2, 0], [3, 4, 2, 4]],
    [[6, 7], [2, 3], [3, -1]],
    [[6, 7], [2, 0], [3, 7]],
    [[2, 3, 4, 5, 6], [1, 0, 1, 2, 3], [1, 3, 2, 2, 3]],
    [[4, 5], [1, 1], [0, 2]],
  ];
  for (const [shape, begin, size] of slices) {
    test(`Slice ${JSON.stringify(shape)} from ${JSON.stringify(begin)} size ${JSON.stringify(size)} matches the cpu backend (float32 and int32)`, async () => {
      for (const dtype of ['float32', 'int32'] as const) {
        await selectBackend('cpu');
        const values = Array.from({ length: tf.util.sizeFromShape(shape) }, (_, i) => i * 3 - 7);
        const want = tf.tidy(() => tf.slice(tf.tensor(values, shape, dtype), begin, size));
        const wantShape = want.shape;
        const wantValues = Array.from(want.dataSync());
        want.dispose();
        await selectBackend('wasm');
        const got = tf.tidy(() => tf.slice(tf.tensor(values, shape, dtype), begin, size));
        assert.deepEqual(got.shape, wantShape);
        assert.equal(got.dtype, dtype);
        assert.deepEqual(Array.from(got.dataSync()), wantValues);
        got.dispose();
      }
    });
  }

  const transposes: [number[], number[]][] = [
    [[13, 9], [1, 0]],
    [[16, 24], [1, 0]],
    [[3, 17, 10], [0, 2, 1]],
    [[1, 17, 10], [0, 2, 1]],
    [[2, 3, 4, 5], [0, 1, 3, 2]],
    [[2, 3, 4, 5], [2, 3, 0, 1]],
    [[2, 3, 4, 5], [0, 2, 1, 3]],
    [[2, 1, 4, 5], [1, 0, 3, 2]],
    [[4, 5], [0, 1]],
  ];
  for (const [shape, perm] of transposes) {
    test(`Transpose ${JSON.stringify(shape)} by ${JSON.stringify(perm)} matches the cpu backend (float32 and int32)`, async () => {
      for (const dtype of ['float32', 'int32'] as const) {
        await selectBackend('cpu');
        const values = Array.from({ length: tf.util.sizeFromShape(shape) }, (_, i) => i * 5 - 11);
        const want = tf.tidy(() => tf.transpose(tf.tensor(values, shape, dtype), perm));
        const wantShape = want.shape;
        const wantValues = Array.from(want.dataSync());
        want.dispose();
        await selectBackend('wasm');
        const got = tf.tidy(() => tf.transpose(tf.tensor(values, shape, dtype), perm));
        assert.deepEqual(got.shape, wantShape);
        assert.deepEqual(Array.from(got.dataSync()), wantValues);
        got.dispose();
      }
    });
  }

  test('Identity and same-dtype Cast share data safely', async () => {
    await selectBackend('wasm');
    const x = tf.tensor1d([1, 2, 3]);
    const y = tf.clone(x);
    const z = tf.cast(x, 'float32');
    const w = tf.cast(x, 'int32');
    x.dispose();
    assert.deepEqual(Array.from(y.dataSync()), [1, 2, 3]);
    assert.deepEqual(Array.from(z.dataSync()), [1, 2, 3]);
    assert.equal(w.dtype, 'int32');
    tf.dispose([y, z, w]);
  });
});
