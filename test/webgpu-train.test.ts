/**
 * Training on webgpu (lavapipe in CI) with the next step recorded before the previous step's loss is
 * read back (runSteps with overlap): the same losses, checkpoints and resume as one step at a time.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { makeConfig } from '../src/model/config.ts';
import { DEFAULT_TRAIN, train, type TrainOptions } from '../src/train/trainer.ts';
import { maxAbsDiff, prepareTinyCorpus, webgpuUnavailable } from './helpers.ts';

const skip = await webgpuUnavailable();
const modelConfig = makeConfig(null, { vocabSize: 4096, dim: 32, layers: 1, heads: 2, kvHeads: 1, maxSeq: 32 });
let data: string;

const tempDir = (): string => mkdtempSync(join(tmpdir(), 'arl-webgpu-run-'));
const options = (out: string): TrainOptions => ({ ...DEFAULT_TRAIN, data, out, steps: 6, batch: 2, seq: 16, warmup: 2, evalEvery: 0, saveEvery: 3, lr: 1e-2 });

async function run(out: string, overlap: boolean, shouldStop?: () => boolean): Promise<Awaited<ReturnType<typeof train>>> {
  if (!overlap) process.env.ARL_OVERLAP_STEPS = '0';
  try {
    const result = await train(options(out), { modelConfig, tokenizerPath: null }, { shouldStop });
    result.model.dispose();
    return result;
  } finally {
    delete process.env.ARL_OVERLAP_STEPS;
  }
}

/** A checkpoint's weights, all tensors in file order. */
function weights(out: string, step: number): Float32Array {
  const file = readFileSync(join(out, `ckpt-${String(step).padStart(6, '0')}`, 'model.safetensors'));
  const data = file.subarray(8 + Number(file.readBigUInt64LE(0)));
  return new Float32Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.length));
}

// Runs differ in the last bits (the embedding gradient is summed with atomics, in no fixed order);
// a step more or less of Adam at lr 1e-2 moves weights by ~1e-2.
const sameWeights = (a: Float32Array, b: Float32Array): boolean => maxAbsDiff(a, b) < 1e-4;
const sameLosses = (a: number[], b: number[]): boolean => a.length === b.length && maxAbsDiff(a, b) < 1e-4;

describe('webgpu training with steps overlapped', { skip }, () => {
  before(async () => {
    data = await prepareTinyCorpus();
  });

  it('gives the same losses and checkpoints as one step at a time, and a stop saves after the step in flight', async () => {
    const [oneByOne, overlapped] = [tempDir(), tempDir()];
    const reference = await run(oneByOne, false);
    const result = await run(overlapped, true);
    assert.ok(sameLosses(result.losses, reference.losses), `${result.losses} vs ${reference.losses}`);
    for (const step of [3, 6]) assert.ok(sameWeights(weights(overlapped, step), weights(oneByOne, step)), `checkpoint at step ${step}`);
    // A checkpoint is read from the GPU anew each time (tfjs caches values once read; AdamW writes in place).
    assert.ok(!sameWeights(weights(overlapped, 3), weights(overlapped, 6)), 'the checkpoints at steps 3 and 6 differ');

    // Stop asked after step 1, while step 2 is in flight: step 2 finishes and is saved; the resume matches.
    const stopped = tempDir();
    let calls = 0;
    const first = await run(stopped, true, () => ++calls === 1);
    assert.equal(first.finalStep, 2);
    assert.ok(first.stoppedEarly);
    const resumed = await run(stopped, true);
    assert.ok(sameLosses([...first.losses, ...resumed.losses], reference.losses), 'the resumed run continues the same run');
    assert.ok(sameWeights(weights(stopped, 6), weights(oneByOne, 6)), 'checkpoint at step 6 after the resume');
  });
});
