/**
 * A training step of a small model in mixed precision on webgpu, the subgroup-matrix builtins
 * emulated where the adapter lacks them (lavapipe): loss and gradients within f16 rounding of fp32,
 * loss-scaled steps through the step gate (exact against unscaled ones in fp32), tensors flat.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { makeConfig } from '../src/model/config.ts';
import { LlamaModel } from '../src/model/llama.ts';
import { setMatmulPrecision } from '../src/ops/matmul.ts';
import { f16ShaderOverride } from '../src/ops/webgpu/matmul-f16.ts';
import { LossScaler, scaledStep } from '../src/train/loss-scale.ts';
import { languageModelLoss } from '../src/train/loss.ts';
import { AdamW, stepOnMeanGradient } from '../src/train/optimizer.ts';
import { emulateSubgroupMatrices } from './f16-emulation.ts';
import { webgpuUnavailable } from './helpers.ts';

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
