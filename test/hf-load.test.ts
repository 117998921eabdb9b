/**
 * HF-layout weights into the model's variables (assignHfWeights): from a safetensors file (read into the arrays the
 * backend hands out) and from a Map, bit-equal to a plain JS transpose, on the cpu backend and on webgpu (where the
 * projections are transposed on the device, or in JS past the device's binding limit). No tensor is left behind.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { assignHfWeights } from '../src/io/hf.ts';
import { type NamedArray, SafetensorsReader } from '../src/io/safetensors.ts';
import { writeSafetensors } from '../src/io/safetensors-write.ts';
import { makeConfig } from '../src/model/config.ts';
import { LlamaModel } from '../src/model/llama.ts';
import { hfWeightMaker } from '../src/ops/hf-layout.ts';
import { tf, useCpu, webgpuUnavailable } from './helpers.ts';

// Every projection non-square (dim 32, kv 2 x 8, hidden 50), untied: lm_head is transposed too.
const config = makeConfig(null, { vocabSize: 97, dim: 32, layers: 2, heads: 4, kvHeads: 2, hiddenDim: 50, maxSeq: 32, tieEmbeddings: false });
const work = mkdtempSync(join(tmpdir(), 'arl-hf-load-'));
after(() => rmSync(work, { recursive: true, force: true }));

/** Distinct values per tensor, with a -0, a subnormal and an extreme among them so any rounding or sign loss shows. */
function hfTensors(): Map<string, NamedArray> {
  const probe = new LlamaModel(config, null);
  const tensors = new Map<string, NamedArray>();
  probe.namedWeights().forEach(({ name, variable, transposed }, k) => {
    const shape = transposed ? [...variable.shape].reverse() : [...variable.shape];
    const data = Float32Array.from({ length: variable.read().size }, (_, i) => Math.sin(i * 0.7 + k) * 10 ** ((i % 7) - 3));
    data[0] = -0;
    data[1] = 1e-40;
    data[2] = -3.4e38;
    tensors.set(name, { shape: shape as number[], data });
  });
  probe.dispose();
  return tensors;
}

function plainTranspose({ shape: [rows, cols], data }: NamedArray): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c];
  return out;
}

const bytes = (a: Float32Array): Buffer => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

async function assertLoaded(model: LlamaModel, tensors: Map<string, NamedArray>): Promise<void> {
  for (const { name, variable, transposed } of model.namedWeights()) {
    const hf = tensors.get(name)!;
    const want = transposed ? plainTranspose(hf) : (hf.data as Float32Array);
    const got = (await variable.read().data()) as Float32Array;
    assert.ok(bytes(got).equals(bytes(want)), `${name} (${tf.getBackend()})`);
  }
}

async function loadsBitEqual(): Promise<void> {
  const tensors = hfTensors();
  const file = join(work, `${tf.getBackend()}.safetensors`);
  await writeSafetensors(file, tensors);
  const before = tf.memory().numTensors;
  for (const source of [SafetensorsReader.openFile(file), tensors]) {
    const model = new LlamaModel(config, null);
    assignHfWeights(model, source, file);
    await assertLoaded(model, tensors);
    model.dispose();
  }
  assert.equal(tf.memory().numTensors, before);
}

describe('HF-layout weights load bit-equal', () => {
  it('cpu backend (transposed in JS)', async () => {
    await useCpu();
    await loadsBitEqual();
  });

  it('webgpu (transposed on the device)', async (t) => {
    const skip = await webgpuUnavailable();
    if (skip) return t.skip(skip);
    try {
      await loadsBitEqual();
      // Past the binding limit the maker transposes in JS; its buffers are reused tensor after tensor.
      const maker = hfWeightMaker({ maxDeviceBytes: 64 });
      const before = tf.memory().numTensors;
      for (const [rows, cols] of [[5, 3], [50, 32], [7, 9]]) {
        const hf: NamedArray = { shape: [rows, cols], data: Float32Array.from({ length: rows * cols }, (_, i) => i - 0.5) };
        const values = maker.values(rows * cols, true);
        values.set(hf.data);
        const tensor = maker.tensor(values, [cols, rows], true);
        assert.deepEqual(tensor.shape, [cols, rows]);
        assert.ok(bytes((await tensor.data()) as Float32Array).equals(bytes(plainTranspose(hf))), `${rows}x${cols}`);
        tensor.dispose();
      }
      assert.equal(tf.memory().numTensors, before);
    } finally {
      await useCpu();
    }
  });
});
