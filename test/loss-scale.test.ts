/**
 * Dynamic loss scaling (mixed precision) on the cpu backend: the scaler's halving and growth, and
 * steps taken through it: an overflowed step is skipped and halves the scale, a scaled step
 * updates the weights exactly as an unscaled one, and tensors stay flat across steps.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { AdamW, stepOnMeanGradient } from '../src/train/optimizer.ts';
import { LossScaler, scaledStep } from '../src/train/loss-scale.ts';
import { DEFAULT_TRAIN, train } from '../src/train/trainer.ts';
import { UserError } from '../src/io/errors.ts';
import { tf, useCpu } from './helpers.ts';

before(useCpu);

describe('LossScaler', () => {
  it('halves on overflow and resets the count of good steps', () => {
    const s = new LossScaler({ initial: 1024, growthInterval: 3 });
    s.update(true, 1024);
    s.update(true, 1024);
    s.update(false, 1024);
    assert.equal(s.scale, 512);
    assert.equal(s.goodSteps, 0);
  });

  it('halves once per scale used: a step recorded before the halving that also overflowed does not halve again', () => {
    const s = new LossScaler({ initial: 1024, growthInterval: 3 });
    s.update(false, 1024);
    s.update(false, 1024); // the overlapped next step, recorded at 1024 too
    assert.equal(s.scale, 512);
    s.update(false, 512);
    assert.equal(s.scale, 256);
  });

  it('doubles after growthInterval good steps at the current scale', () => {
    const s = new LossScaler({ initial: 8, growthInterval: 3 });
    for (let i = 0; i < 2; i++) s.update(true, 8);
    assert.equal(s.scale, 8);
    s.update(true, 8);
    assert.equal(s.scale, 16);
    s.update(true, 8); // recorded before the growth: not counted for 16
    assert.equal(s.goodSteps, 0);
    for (let i = 0; i < 3; i++) s.update(true, 16);
    assert.equal(s.scale, 32);
  });
});

describe('--precision mixed off webgpu', () => {
  it('is refused with one line before anything is read or written', async () => {
    const run = train({ ...DEFAULT_TRAIN, data: '/nonexistent/data', out: '/nonexistent/out', precision: 'mixed' }, { tokenizerPath: null });
    await assert.rejects(run, (err: Error) => {
      assert.ok(err instanceof UserError, String(err));
      assert.equal(err.message, '--precision mixed: mixed precision unavailable: the f16 matmul needs the webgpu backend (this run uses cpu)');
      return true;
    });
  });
});

describe('loss-scaled steps (cpu)', () => {
  /** A small least-squares problem: the loss is mean((x w - y)^2), its gradient about unit size. */
  const problem = () => {
    const w = tf.variable(tf.randomNormal([4, 3], 0, 1, 'float32', 5), true, `w${Math.random()}`);
    const x = tf.randomNormal([8, 4], 0, 1, 'float32', 6);
    const y = tf.randomNormal([8, 3], 0, 1, 'float32', 7);
    const loss = (): tf.Scalar => tf.mean(tf.square(tf.sub(tf.matMul(x, w), y))) as tf.Scalar;
    const optimizer = new AdamW([w], { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 });
    return { w, loss, optimizer, dispose: () => { optimizer.dispose(); tf.dispose([w, x, y]); } };
  };

  it('a scaled step updates the weights exactly as an unscaled one (powers of two are exact)', async () => {
    const plain = problem();
    const scaled = problem();
    assert.equal(plain.optimizer.gated, false);
    const a = await stepOnMeanGradient(plain.optimizer, [plain.loss, plain.loss], { clip: 0.5, lr: 1e-2 });
    const b = await stepOnMeanGradient(scaled.optimizer, [scaled.loss, scaled.loss], { clip: 0.5, lr: 1e-2, lossScale: 2 ** 16 });
    assert.equal(b.loss, a.loss);
    assert.equal(b.gradNorm, a.gradNorm);
    assert.deepEqual(Array.from(await scaled.w.data()), Array.from(await plain.w.data()));
    plain.dispose();
    scaled.dispose();
  });

  it('an overflow skips the step and halves the scale; good steps grow it; tensors stay flat', async () => {
    const p = problem();
    // A loss near 0 whose gradient is 4 everywhere: times 2^127 or 2^126 the gradient overflows f32
    // (as 2^16 times a large one overflows an f16 operand) while the scaled loss does not; 2^125 fits.
    const offset = tf.sub(tf.sum(p.w), 1e-3);
    const linear = (): tf.Scalar => tf.mul(tf.sub(tf.sum(p.w), offset), 4) as tf.Scalar;
    const scaler = new LossScaler({ initial: 2 ** 127, growthInterval: 2 });
    const step = () => scaledStep(scaler, (lossScale) => stepOnMeanGradient(p.optimizer, [linear], { clip: 1, lr: 1e-2, lossScale }));
    const before = Array.from(await p.w.data());
    const first = await step();
    const tensors = tf.memory().numTensors;
    assert.equal(first.skipped, true);
    assert.ok(Number.isFinite(first.loss), 'the loss itself is finite (unscaled)');
    assert.equal(first.gradNorm, Infinity);
    assert.equal(first.lossScale, 2 ** 127);
    assert.equal(scaler.scale, 2 ** 126);
    assert.deepEqual(Array.from(await p.w.data()), before, 'the skipped step left the weights alone');
    assert.equal(p.optimizer.step, 0, 'and the optimizer step count');

    // Halving continues until the gradients fit, then two good steps double the scale.
    const outcomes: boolean[] = [];
    while (outcomes.length < 20) {
      const r = await step();
      outcomes.push(r.skipped);
      assert.equal(tf.memory().numTensors, tensors, `tensor count after step ${outcomes.length + 1}`);
      if (!r.skipped && outcomes.at(-2) === false) break;
    }
    const good = outcomes.indexOf(false);
    assert.ok(good > 0, `some steps overflowed, then one fit: ${outcomes}`);
    assert.equal(scaler.scale, 2 ** (126 - good) * 2, 'halved per overflow, doubled after two good steps');
    assert.equal(p.optimizer.step, 2);
    assert.notDeepEqual(Array.from(await p.w.data()), before);
    offset.dispose();
    p.dispose();
  });
});
