/** Training: the loss and its gradient, accumulation, flat tensor count, exact resume, divergence. */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { saveCheckpoint } from '../src/io/checkpoint.ts';
import { makeConfig } from '../src/model/config.ts';
import { LlamaModel } from '../src/model/llama.ts';
import { maskedCrossEntropy } from '../src/ops/cross-entropy.ts';
import { AdamW, learningRate } from '../src/train/optimizer.ts';
import { DEFAULT_TRAIN, DivergedError, runSteps, type StepMetrics, train, type TrainOptions, trainStep } from '../src/train/trainer.ts';
import { maxAbsDiff, prepareTinyCorpus, tf, useCpu } from './helpers.ts';

let data: string;
const modelConfig = makeConfig(null, { vocabSize: 4096, dim: 32, layers: 1, heads: 2, kvHeads: 1, maxSeq: 32 });

before(async () => {
  await useCpu();
  data = await prepareTinyCorpus();
});

function options(out: string, overrides: Partial<TrainOptions> = {}): TrainOptions {
  return { ...DEFAULT_TRAIN, data, out, steps: 6, batch: 2, seq: 16, warmup: 2, evalEvery: 0, saveEvery: 3, lr: 1e-2, ...overrides };
}

const tempDir = (): string => mkdtempSync(join(tmpdir(), 'arl-run-'));

test('masked sparse cross-entropy matches the one-hot reference in value and gradient', () => {
  const logits = tf.randomNormal([6, 11], 0, 2, 'float32', 3) as tf.Tensor2D;
  const targets = tf.tensor1d([0, 3, 10, 5, 5, 1], 'int32');
  const mask = tf.tensor1d([1, 1, 0, 1, 1, 0]);
  const ours = tf.valueAndGrad((x: tf.Tensor) => maskedCrossEntropy(x as tf.Tensor2D, targets, mask))(logits);
  const reference = tf.valueAndGrad((x: tf.Tensor) => {
    const perRow = tf.losses.softmaxCrossEntropy(tf.oneHot(targets, 11), x, undefined, undefined, tf.Reduction.NONE);
    return tf.div(tf.sum(tf.mul(perRow, mask)), tf.sum(mask)) as tf.Scalar;
  })(logits);
  assert.ok(Math.abs(ours.value.dataSync()[0] - reference.value.dataSync()[0]) < 1e-5);
  assert.ok(maxAbsDiff(ours.grad.dataSync(), reference.grad.dataSync()) < 1e-6);
  tf.dispose([logits, targets, mask, ours.value, ours.grad, reference.value, reference.grad]);
});

test('learning rate: linear warmup then cosine to minLr', () => {
  const o = { lr: 1, minLr: 0.1, warmup: 10, totalSteps: 110 };
  assert.equal(learningRate(0, o), 0.1);
  assert.equal(learningRate(9, o), 1);
  assert.ok(Math.abs(learningRate(60, o) - 0.55) < 1e-12);
  assert.equal(learningRate(110, o), 0.1);
});

test('gradient accumulation over 2 micro-batches equals one batch twice the size', async () => {
  const rows = Array.from({ length: 4 }, (_, r) => Array.from({ length: 17 }, (_, i) => (r * 131 + i * 17) % 4096));
  const flat = (rs: number[][], from: number): Int32Array => Int32Array.from(rs.flatMap((row) => row.slice(from, from + 16)));
  const setups = [
    { batch: 4, accum: 1, batches: [rows] },
    { batch: 2, accum: 2, batches: [rows.slice(0, 2), rows.slice(2)] },
  ];
  const results: { loss: number; weights: number[][] }[] = [];
  for (const { batch, accum, batches } of setups) {
    const model = new LlamaModel(modelConfig, 5);
    const optimizer = new AdamW(model.variables(), { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 });
    let i = 0;
    const { loss } = await trainStep(model, optimizer, () => ({ x: flat(batches[i], 0), y: flat(batches[i++], 1) }), { batch, seq: 16, accum, clip: 1, lr: 1e-2 });
    const weights = model.variables().map((v) => Array.from(v.dataSync()));
    optimizer.dispose();
    model.dispose();
    results.push({ loss, weights });
  }
  assert.ok(Math.abs(results[0].loss - results[1].loss) < 1e-5);
  results[0].weights.forEach((w, i) => assert.ok(maxAbsDiff(w, results[1].weights[i]) < 1e-5, `weight ${i}`));
});

test('runSteps: the next step is recorded before a step is handed over, never past a pause, and a stop finishes the step in flight', async () => {
  const events: string[] = [];
  const drive = (overlap: boolean, stopAt: number | null): Promise<void> =>
    runSteps({
      from: 0,
      to: 6,
      overlap,
      pauseAfter: (i) => i === 2,
      record: async (i) => {
        events.push(`record ${i}`);
        return i;
      },
      onDone: async (i, inFlight) => {
        events.push(`done ${i}${inFlight ? ' (next in flight)' : ''}`);
        return i !== stopAt;
      },
    });
  await drive(true, null);
  assert.deepEqual(events.splice(0), [
    'record 0', 'record 1', 'done 0 (next in flight)', 'record 2', 'done 1 (next in flight)', 'done 2',
    'record 3', 'record 4', 'done 3 (next in flight)', 'record 5', 'done 4 (next in flight)', 'done 5',
  ]);
  await drive(true, 3);
  assert.deepEqual(events.splice(0).slice(6), ['record 3', 'record 4', 'done 3 (next in flight)', 'done 4']);
  await drive(false, 1);
  assert.deepEqual(events.splice(0), ['record 0', 'done 0', 'record 1', 'done 1']);
});

test('training: loss falls, tensor count stays flat, metrics.jsonl has one line per step', async () => {
  const out = tempDir();
  const result = await train(options(out, { steps: 12, evalEvery: 6 }), { modelConfig, tokenizerPath: null });
  result.model.dispose();
  const lines = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as StepMetrics);
  assert.deepEqual(lines.map((m) => m.step), Array.from({ length: 12 }, (_, i) => i + 1));
  for (const key of ['loss', 'lr', 'tokens_per_s', 'tensors'] as const) assert.ok(lines.every((m) => Number.isFinite(m[key])), key);
  const tensorCounts = new Set(lines.slice(1).map((m) => m.tensors));
  assert.equal(tensorCounts.size, 1, `tensor count changed across steps: ${[...tensorCounts]}`);
  assert.ok(lines[5].val_loss !== undefined && lines[11].val_loss !== undefined);
  assert.ok(lines[11].loss < lines[0].loss, `loss did not fall: ${lines[0].loss} -> ${lines[11].loss}`);
});

test('an interrupted run resumed from its checkpoint reproduces the uninterrupted run exactly', async () => {
  const straight = await train(options(tempDir()), { modelConfig, tokenizerPath: null });
  straight.model.dispose();

  const out = tempDir();
  let steps = 0;
  const first = await train(options(out), { modelConfig, tokenizerPath: null }, { shouldStop: () => ++steps === 4 });
  assert.equal(first.finalStep, 4);
  assert.ok(first.stoppedEarly);
  first.model.dispose();
  const resumed = await train(options(out), { modelConfig, tokenizerPath: null });
  assert.equal(resumed.finalStep, 6);
  resumed.model.dispose();

  assert.deepEqual([...first.losses, ...resumed.losses], straight.losses);
  const logged = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as StepMetrics).loss);
  assert.deepEqual(logged, straight.losses);
});

test('a NaN loss stops training with a clear message and writes no checkpoint', async () => {
  const init = join(tempDir(), 'nan-init');
  const model = new LlamaModel(modelConfig, 2);
  const w = model.blocks[0].wq;
  w.write(tf.fill(w.shape as number[], NaN));
  await saveCheckpoint(init, model, null);
  model.dispose();
  const out = tempDir();
  await assert.rejects(train(options(out), { init, tokenizerPath: null }), (err: Error) => err instanceof DivergedError && /step 1: loss is NaN/.test(err.message));
  assert.ok(!existsSync(join(out, 'latest')));
});
