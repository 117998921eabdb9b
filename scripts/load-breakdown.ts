/**
 * Where loading a checkpoint goes: builds the model with zero weights, then reads each tensor and makes its weight
 * as the loader does (src/io/hf.ts assignHfWeights through src/ops/hf-layout.ts), timing the reads apart from tensor
 * making (transpose, upload), then waits for the device. Prints one JSON line (ms) on stdout.
 *
 *   node --import tsx scripts/load-breakdown.ts CHECKPOINT [cpu|wasm|webgpu] [--forward]
 *
 * --forward also times the logits of a three-token prompt (what `arl generate` computes before its first token).
 */
import * as tf from '@tensorflow/tfjs';
import { type BackendName, selectBackend } from '../src/backend.ts';
import { loadCheckpoint } from '../src/io/checkpoint.ts';
import { LlamaModel } from '../src/model/llama.ts';
import { hfWeightMaker } from '../src/ops/hf-layout.ts';

const [dir, backend = 'cpu'] = process.argv.slice(2).filter((a) => !a.startsWith('--'));
if (!dir) throw new Error('usage: load-breakdown.ts CHECKPOINT [cpu|wasm|webgpu] [--forward]');
const start = performance.now();
await selectBackend(backend as BackendName);
const ms: Record<string, number> = { selectBackend: performance.now() - start, build: 0, read: 0, tensors: 0, assign: 0, deviceWait: 0, forward: 0 };
const time = <T>(stage: string, fn: () => T): T => {
  const t = performance.now();
  const out = fn();
  ms[stage] += performance.now() - t;
  return out;
};
const ckpt = loadCheckpoint(dir);
const model = time('build', () => new LlamaModel(ckpt.config, null));
const maker = hfWeightMaker();
for (const { name, variable, transposed } of model.namedWeights()) {
  const shape = variable.shape as number[];
  const values = maker.values(shape.reduce((a, b) => a * b, 1), transposed);
  time('read', () => ckpt.weights.readFloat32Into(name, values));
  const tensor = time('tensors', () => maker.tensor(values, shape, transposed));
  time('assign', () => variable.write(tensor));
  tensor.dispose();
}
const t = performance.now();
await model.namedWeights()[1].variable.read().data(); // waits for the device's queue
ms.deviceWait = performance.now() - t;
if (process.argv.includes('--forward')) {
  const t0 = performance.now();
  const logits = tf.tidy(() => model.logits(tf.tensor2d([[1, 2, 3]], [1, 3], 'int32')));
  await logits.data();
  logits.dispose();
  ms.forward = performance.now() - t0;
}
ms.total = performance.now() - start;
console.log(JSON.stringify({ backend: tf.getBackend(), ...Object.fromEntries(Object.entries(ms).map(([k, v]) => [k, Math.round(v)])) }));
model.dispose();
