/**
 * releaseUnusedGpuMemory (src/backend.ts): tfjs-webgpu pools every freed buffer by exact size, so
 * forwards of changing lengths grow GPU memory without bound unless the pool is released.
 * Runs on lavapipe in CI (.ci/run sets ARL_REQUIRE_WEBGPU=1), skips elsewhere.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { releaseUnusedGpuMemory, webgpuError } from '../src/backend.ts';
import { UserError } from '../src/io/errors.ts';
import { maxBindingBytes } from '../src/ops/webgpu/upload.ts';
import { nextTokenLogProbs, nextTokenLogProbsOfBatches } from '../src/arl/scoring.ts';
import { makeConfig } from '../src/model/config.ts';
import { LlamaModel } from '../src/model/llama.ts';
import { assertUserError, NOT_OURS_ON_WEBGPU, runArl, webgpuUnavailable } from './helpers.ts';

const skip = await webgpuUnavailable();

interface Pool {
  numBytesAllocated: number;
  numBytesUsed: number;
}
const pool = (): Pool => (tf.backend() as unknown as { bufferManager: Pool }).bufferManager;
const pooledBytes = (): number => pool().numBytesAllocated - pool().numBytesUsed;

describe('a tensor larger than the adapter can bind', () => {
  it("Dawn's binding-size error becomes a user's error naming both sizes; others stay internal", () => {
    const tooLarge = webgpuError(
      'Binding size (268435456) of [Buffer (unlabeled)] is larger than the maximum storage buffer binding size (134217728).\n - While validating entries[0]',
    );
    assert.ok(tooLarge instanceof UserError);
    assert.match(tooLarge.message, /a tensor of 256 MiB is larger than this GPU adapter can bind \(128 MiB\): lower --batch or --seq/);
    const other = webgpuError('[Invalid CommandBuffer] is invalid due to a previous error.');
    assert.ok(!(other instanceof UserError));
    assert.match(other.message, /^WebGPU error \(fatal\): \[Invalid CommandBuffer\]/);
  });

  it('bench with logits past the limit exits 2 with one line, no stack trace', { skip }, async () => {
    const [vocab, seq] = [8192, 512];
    const batch = Math.floor(maxBindingBytes() / (vocab * seq * 4)) + 1; // one row of logits past the limit
    const r = await runArl('bench', '--backend', 'webgpu', '--vocab', `${vocab}`, '--dim', '32', '--layers', '1', '--heads', '2', '--kv-heads', '2', '--hidden-dim', '64', '--seq', `${seq}`,
      '--batch', `${batch}`, '--steps', '1', '--warmup-steps', '1', '--skip-generate', '--no-key-tokens', '--no-lift');
    assertUserError(r, /^arl: a tensor of \d+ MiB is larger than this GPU adapter can bind \(\d+ MiB\)/, NOT_OURS_ON_WEBGPU);
  });
});

describe('GPU buffer pool', { skip }, () => {
  it('grows with every new forward length and is released past the cap, with results unchanged', async () => {
    const config = makeConfig(null, { vocabSize: 64, dim: 32, layers: 1, heads: 2, kvHeads: 1, maxSeq: 64 });
    const model = new LlamaModel(config, 3);
    const forward = (length: number): Promise<Float32Array> => {
      const input = Array.from({ length }, (_, i) => (i * 7 + 3) % 64);
      const sequence = { input, offsets: [length - 2], nextTokens: [input[length - 1]] };
      return nextTokenLogProbs(model, [sequence]);
    };
    // nextTokenLogProbs releases past 1 GiB only, so these small forwards all stay pooled.
    const before = pooledBytes();
    const first = await forward(20);
    for (const length of [21, 22, 23, 24, 25]) await forward(length);
    const grown = pooledBytes();
    assert.ok(grown > before, `pool should grow with new lengths (${before} -> ${grown} bytes)`);
    const usedBefore = pool().numBytesUsed;
    assert.equal(releaseUnusedGpuMemory(grown), 0, 'nothing is released while the pool is within the cap');
    const released = releaseUnusedGpuMemory(0);
    assert.equal(released, grown, 'every pooled byte is released');
    assert.equal(pooledBytes(), 0);
    assert.equal(pool().numBytesUsed, usedBefore, 'buffers in use are kept');
    // The backend still works after the release: the same forward gives the same log-prob.
    const again = await forward(20);
    assert.ok(Math.abs(again[0] - first[0]) < 1e-6, `${again[0]} vs ${first[0]}`);
    assert.ok(pooledBytes() > 0, 'freed buffers are pooled again after the release');
    // ARL_GPU_POOL_MB sets the default cap: 0 releases whatever is pooled.
    process.env.ARL_GPU_POOL_MB = '0';
    try {
      const pooled = pooledBytes();
      assert.equal(releaseUnusedGpuMemory(), pooled);
    } finally {
      delete process.env.ARL_GPU_POOL_MB;
    }
    model.dispose();
  });

  it('batches read back while the next one runs give what each gives alone, and leave no tensor behind', async () => {
    const config = makeConfig(null, { vocabSize: 64, dim: 32, layers: 1, heads: 2, kvHeads: 1, maxSeq: 64 });
    const model = new LlamaModel(config, 5);
    const batch = (lengths: number[]) =>
      lengths.map((length) => {
        const input = Array.from({ length }, (_, i) => (i * 5 + length) % 64);
        return { input, offsets: [length - 3, length - 2], nextTokens: [input[length - 2], input[length - 1]] };
      });
    const batches = [batch([20, 31]), batch([9]), batch([40, 12, 33])];
    const alone: Float32Array[] = [];
    for (const b of batches) alone.push(await nextTokenLogProbs(model, b));
    const before = tf.memory().numTensors;
    const together = await nextTokenLogProbsOfBatches(model, batches);
    assert.equal(tf.memory().numTensors, before);
    assert.equal(together.length, batches.length);
    together.forEach((values, b) => {
      assert.equal(values.length, alone[b].length);
      values.forEach((v, i) => assert.ok(Math.abs(v - alone[b][i]) < 1e-5, `batch ${b} value ${i}: ${v} vs ${alone[b][i]}`));
    });
    model.dispose();
  });
});
