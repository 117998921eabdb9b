/**
 * The fused sparse cross-entropy on webgpu (src/model/webgpu-cross-entropy.ts, taken by
 * maskedCrossEntropy and targetLogProbs when our kernels are active) against the plain tfjs
 * formulation, values and gradients: in CI through Mesa's lavapipe, on the GPU machine on the GPU.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { hasKernel } from '../src/ops/registry.ts';
import { composedCrossEntropy, maskedCrossEntropy, targetLogProbs } from '../src/ops/cross-entropy.ts';
import { maxAbsDiff, webgpuUnavailable } from './helpers.ts';

const skip = await webgpuUnavailable();

type Loss = (logits: tf.Tensor2D, targets: tf.Tensor1D, mask: tf.Tensor1D) => tf.Scalar;

/** Deterministic inputs: logits N(0, scale), targets over the whole vocabulary (both ends included), a mask with zeros. */
function inputs(rows: number, vocab: number, scale: number, seed: number, maskAll = 1): [tf.Tensor2D, tf.Tensor1D, tf.Tensor1D] {
  const targets = Int32Array.from({ length: rows }, (_, i) => (i === 0 ? 0 : i === 1 ? vocab - 1 : (i * 7919 + seed * 104729) % vocab));
  // Loss weights, not only a 0/1 mask (task rows weigh their answers).
  const mask = Float32Array.from({ length: rows }, (_, i) => (i % 5 === 2 ? 0 : maskAll * (1 + (i % 3) * 2.5)));
  return [tf.mul(tf.randomNormal([rows, vocab], 0, 1, 'float32', seed), scale) as tf.Tensor2D, tf.tensor1d(targets, 'int32'), tf.tensor1d(mask)];
}

/** The loss and its gradient w.r.t. the logits for an upstream gradient of 1.7. */
async function lossAndGrad(loss: Loss, logits: tf.Tensor2D, targets: tf.Tensor1D, mask: tf.Tensor1D): Promise<[number, Float32Array]> {
  const [value, grad] = tf.tidy(() => {
    const { value: v, grads } = tf.valueAndGrads((x: tf.Tensor) => tf.mul(loss(x as tf.Tensor2D, targets, mask), 1.7))([logits]);
    return [v, grads[0]];
  });
  const out: [number, Float32Array] = [(await value.data())[0], (await grad.data()) as Float32Array];
  tf.dispose([value, grad]);
  return out;
}

async function assertMatchesComposed(rows: number, vocab: number, scale: number, seed: number, maskAll = 1): Promise<void> {
  const [logits, targets, mask] = inputs(rows, vocab, scale, seed, maskAll);
  const [gotValue, gotGrad] = await lossAndGrad(maskedCrossEntropy, logits, targets, mask);
  const [wantValue, wantGrad] = await lossAndGrad(composedCrossEntropy, logits, targets, mask);
  tf.dispose([logits, targets, mask]);
  assert.ok(Number.isFinite(gotValue), `loss ${gotValue}`);
  assert.ok(Math.abs(gotValue - wantValue) <= 1e-4 * Math.max(1, Math.abs(wantValue)), `loss ${gotValue} vs ${wantValue}`);
  const diff = maxAbsDiff(gotGrad, wantGrad);
  assert.ok(diff <= 1e-6, `gradient max |diff| ${diff}`);
  if (maskAll === 0) assert.ok(gotValue === 0 && gotGrad.every((g) => g === 0), 'no masked rows: loss and gradient 0');
  else assert.ok(gotGrad.some((g) => g !== 0), 'a nonzero gradient');
}

describe('webgpu fused cross-entropy', { skip }, () => {
  before(() => {
    assert.ok(hasKernel('ArlCrossEntropy'), 'our kernels are registered on webgpu');
  });

  it('value and gradient equal the tfjs ops (N 37, V 300: vocab not a multiple of the workgroup, masked rows)', async () => {
    await assertMatchesComposed(37, 300, 3, 1);
  });

  it('value and gradient equal the tfjs ops at logits of +-80 (N 64, V 4096)', async () => {
    await assertMatchesComposed(64, 4096, 80, 2);
  });

  it('every row masked out: loss and gradient 0 (the mean divides by max(sum(mask), 1))', async () => {
    await assertMatchesComposed(37, 300, 3, 3, 0);
  });

  it('targetLogProbs equals the log-softmax at the targets', async () => {
    const [logits, targets, mask] = inputs(37, 300, 20, 4);
    const got = targetLogProbs(logits, targets);
    const want = tf.tidy(() => tf.sum(tf.mul(tf.logSoftmax(logits), tf.oneHot(targets, 300)), 1));
    const diff = maxAbsDiff(await got.data(), await want.data());
    tf.dispose([logits, targets, mask, got, want]);
    assert.ok(diff <= 1e-4, `max |diff| ${diff}`);
  });

  it('tensor count stays flat across loss and gradient calls', async () => {
    const [logits, targets, mask] = inputs(37, 300, 3, 5);
    await lossAndGrad(maskedCrossEntropy, logits, targets, mask);
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) await lossAndGrad(maskedCrossEntropy, logits, targets, mask);
    tf.dispose(targetLogProbs(logits, targets));
    assert.equal(tf.memory().numTensors, before);
    tf.dispose([logits, targets, mask]);
  });
});
