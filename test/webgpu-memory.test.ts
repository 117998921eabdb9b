/**
 * releaseUnusedGpuMemory (src/backend.ts): tfjs-webgpu pools every freed buffer by exact size, so
 * forwards of changing lengths grow GPU memory without bound unless the pool is released.
 * Runs on lavapipe in CI (.ci/run sets ARL_REQUIRE_WEBGPU=1), skips elsewhere.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { releaseUnusedGpuMemory } from '../src/backend.ts';
import { nextTokenLogProbs } from '../src/arl/scoring.ts';
import { makeConfig } from '../src/model/config.ts';
import { LlamaModel } from '../src/model/llama.ts';
import { webgpuUnavailable } from './helpers.ts';

const skip = await webgpuUnavailable();

interface Pool {
  numBytesAllocated: number;
  numBytesUsed: number;
}
const pool = (): Pool => (tf.backend() as unknown as { bufferManager: Pool }).bufferManager;
const pooledBytes = (): number => pool().numBytesAllocated - pool().numBytesUsed;

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
    model.dispose();
  });
});
