/**
 * A training step of a small model in mixed precision on webgpu, the subgroup-matrix builtins
 * emulated where the adapter lacks them (lavapipe): loss and gradients within f16 rounding of fp32,
 * loss-scaled steps through the step gate (exact against unscaled ones in fp32), tensors flat.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { makeConfig } from '../src/model/config.ts';
import { attentionMask, LlamaModel, rotateHalfMatrix } from '../src/model/llama.ts';
import { causalSelfAttention } from '../src/ops/attention.ts';
import { setMatmulPrecision } from '../src/ops/matmul.ts';
import { f16ShaderOverride } from '../src/ops/webgpu/matmul-f16.ts';
import { LossScaler, scaledStep } from '../src/train/loss-scale.ts';
import { languageModelLoss } from '../src/train/loss.ts';
import { AdamW, stepOnMeanGradient } from '../src/train/optimizer.ts';
import { emulateSubgroupMatrices } from './f16-emulation.ts';
import { maxAbsDiff, webgpuUnavailable } from './helpers.ts';

const skip = await webgpuUnavailable({ f16: true });
const features = (): { has(f: string): boolean } => (tf.backend() as unknown as { device: { features: { has(f: string): boolean } } }).device.features;

// Every size a multiple of 16, so every product of the model runs mixed.
const config = makeConfig(null, { vocabSize: 64, dim: 32, layers: 1, heads: 2, kvHeads: 1, hiddenDim: 64, maxSeq: 16, tieEmbeddings: true });
const [batch, seq] = [2, 16];
const tokens = (seed: number): Int32Array => Int32Array.from({ length: batch * seq }, (_, i) => (i * 7 + seed * 13) % config.vocabSize);
const x = tokens(1);
const y = tokens(2);

describe('mixed-precision training step on webgpu', { skip }, () => {
  before(() => {
    if (!features().has('chromium-experimental-subgroup-matrix')) {
      f16ShaderOverride.rewrite = (code) => ({ code: emulateSubgroupMatrices(code), uniforms: [{ type: 'uint32', data: [16] }] });
    }
  });
  after(() => {
    setMatmulPrecision('fp32');
    f16ShaderOverride.rewrite = null;
  });

  const lossAndGrads = (model: LlamaModel) => tf.tidy(() => tf.variableGrads(() => languageModelLoss(model, x, y, batch, seq), model.variables()));

  it('loss and gradients within f16 rounding of fp32', async (t) => {
    if (!features().has('shader-f16') || !features().has('subgroups')) {
      t.skip('the emulated shader still needs shader-f16 and subgroups');
      return;
    }
    const model = new LlamaModel(config, 3);
    setMatmulPrecision('fp32');
    const want = lossAndGrads(model);
    setMatmulPrecision('mixed');
    const got = lossAndGrads(model);
    setMatmulPrecision('fp32');
    const [lossWant, lossGot] = [(await want.value.data())[0], (await got.value.data())[0]];
    assert.ok(Math.abs(lossGot - lossWant) < 2e-3 * Math.abs(lossWant), `loss ${lossGot} vs ${lossWant}`);
    assert.notEqual(lossGot, lossWant, 'identical to fp32: the f16 products did not run');
    for (const name of Object.keys(want.grads)) {
      const [g, w] = [await got.grads[name].data(), await want.grads[name].data()];
      const scale = Math.max(...Array.from(w, Math.abs));
      const diff = Math.max(...Array.from(w, (v, i) => Math.abs(v - g[i])));
      assert.ok(diff < 1e-2 * scale, `${name}: max |diff| ${diff} of ${scale}`);
    }
    tf.dispose([want.value, got.value, ...Object.values(want.grads), ...Object.values(got.grads)]);
    model.dispose();
  });

  it('attention\'s batched products run f16 in mixed precision (value and gradient within f16 rounding of fp32), f32 with ARL_MIXED_ATTENTION=0', async (t) => {
    if (!features().has('shader-f16') || !features().has('subgroups')) {
      t.skip('the emulated shader still needs shader-f16 and subgroups');
      return;
    }
    // G * T, T and the head size multiples of 16, so every product of the materialised path can run f16.
    const [b, tokens, heads, kvHeads, headDim] = [2, 16, 2, 1, 16];
    const qkv = tf.randomNormal([b * tokens, (heads + 2 * kvHeads) * headDim], 0, 1, 'float32', 21) as tf.Tensor2D;
    const dy = tf.randomNormal([b * tokens, heads * headDim], 0, 1, 'float32', 22);
    const cos = tf.randomNormal([tokens, headDim], 0, 1, 'float32', 23) as tf.Tensor2D;
    const sin = tf.randomNormal([tokens, headDim], 0, 1, 'float32', 24) as tf.Tensor2D;
    const spec = { batch: b, seq: tokens, heads, kvHeads, headDim, cos, sin, rotate: rotateHalfMatrix(headDim), mask: attentionMask(tokens, 0, heads / kvHeads, null) };
    const attend = (x: tf.Tensor) => causalSelfAttention(x as tf.Tensor2D, spec);
    const run = async (precision: 'fp32' | 'mixed', mixedAttention = '1'): Promise<Float32Array[]> => {
      setMatmulPrecision(precision);
      process.env.ARL_MIXED_ATTENTION = mixedAttention;
      try {
        const out = tf.tidy(() => [attend(qkv), tf.grad((x: tf.Tensor) => tf.sum(tf.mul(attend(x), dy)))(qkv)]);
        const values = (await Promise.all(out.map((o) => o.data()))) as Float32Array[];
        tf.dispose(out);
        return values;
      } finally {
        setMatmulPrecision('fp32');
        delete process.env.ARL_MIXED_ATTENTION;
      }
    };
    const before = tf.memory().numTensors;
    const want = await run('fp32');
    const mixed = await run('mixed');
    const f32Attention = await run('mixed', '0');
    for (const [i, name] of ['value', 'gradient'].entries()) {
      const scale = Math.max(...Array.from(want[i], Math.abs));
      const diff = maxAbsDiff(mixed[i], want[i]);
      assert.ok(diff < 1e-2 * scale, `${name}: max |diff| ${diff} of ${scale}`);
      assert.ok(diff > 0, `${name}: identical to fp32, so the f16 products did not run`);
      assert.deepEqual(Array.from(f32Attention[i]), Array.from(want[i]), `${name} with ARL_MIXED_ATTENTION=0`);
    }
    assert.equal(tf.memory().numTensors, before, 'no tensor left behind');
    tf.dispose([qkv, dy, cos, sin, spec.rotate, spec.mask]);
  });

  it('a loss-scaled step through the step gate equals an unscaled one in fp32 (powers of two are exact)', async () => {
    setMatmulPrecision('fp32');
    const weights: Float32Array[][] = [];
    for (const lossScale of [1, 2 ** 16]) {
      const model = new LlamaModel(config, 3);
      const optimizer = new AdamW(model.variables(), { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 });
      assert.equal(optimizer.gated, true, 'webgpu updates go through the step gate');
      await stepOnMeanGradient(optimizer, [() => languageModelLoss(model, x, y, batch, seq)], { clip: 0.5, lr: 1e-2, lossScale });
      weights.push(await Promise.all(model.variables().map(async (v) => (await v.data()) as Float32Array)));
      optimizer.dispose();
      model.dispose();
    }
    weights[0].forEach((w, i) => assert.deepEqual(Array.from(weights[1][i]), Array.from(w), `variable ${i}`));
  });

  it('mixed-precision steps at the default loss scale: finite, no overflow, the loss falls, tensors flat', async (t) => {
    if (!features().has('shader-f16') || !features().has('subgroups')) {
      t.skip('the emulated shader still needs shader-f16 and subgroups');
      return;
    }
    const model = new LlamaModel(config, 3);
    const optimizer = new AdamW(model.variables(), { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 });
    const scaler = new LossScaler();
    setMatmulPrecision('mixed');
    const losses: number[] = [];
    let tensors = 0;
    for (let i = 0; i < 4; i++) {
      const r = await scaledStep(scaler, (lossScale) => stepOnMeanGradient(optimizer, [() => languageModelLoss(model, x, y, batch, seq)], { clip: 1, lr: 1e-2, lossScale }));
      assert.equal(r.skipped, false, `step ${i + 1} overflowed at ${r.lossScale}`);
      assert.ok(Number.isFinite(r.loss) && Number.isFinite(r.gradNorm));
      losses.push(r.loss);
      if (i === 0) tensors = tf.memory().numTensors;
      else assert.equal(tf.memory().numTensors, tensors, `tensor count after step ${i + 1}`);
    }
    setMatmulPrecision('fp32');
    assert.ok(losses[3] < losses[0], `losses ${losses}`);
    optimizer.dispose();
    model.dispose();
  });
});
