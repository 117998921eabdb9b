/** LIFT adapters: Gated Memory and LoRA shapes and init, the model hook on both attention paths, gradients, files. */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { UserError } from '../src/io/errors.ts';
import { type AdapterKind, adapterParameterCount, attachAdapter, detachAdapter, type ModelAdapter } from '../src/lift/adapter.ts';
import { createAdapter, loadAdapter, saveAdapter } from '../src/lift/adapter-file.ts';
import { GatedMemoryAdapter, gateWidth } from '../src/lift/gated-memory.ts';
import { makeConfig } from '../src/model/config.ts';
import { disposeCache, LlamaModel } from '../src/model/llama.ts';
import { maxAbsDiff, tf, useCpu } from './helpers.ts';

before(useCpu);

// Grouped-query (6 query heads on 2 KV heads), head_dim 8.
const config = makeConfig(null, { vocabSize: 61, dim: 48, layers: 2, heads: 6, kvHeads: 2, maxSeq: 32 });
const ids = Array.from({ length: 12 }, (_, i) => (i * 17 + 3) % config.vocabSize);

function logits(model: LlamaModel): Float32Array {
  return tf.tidy(() => model.logits(tf.tensor2d([ids], [1, ids.length], 'int32')).dataSync() as Float32Array);
}

/** Logits of `ids` decoded through the KV cache: a 5-token prefill, then one token at a time. */
function cachedLogits(model: LlamaModel): number[] {
  let cache = model.emptyCache(1);
  const out: number[] = [];
  for (const chunk of [ids.slice(0, 5), ...ids.slice(5).map((id) => [id])]) {
    const r = tf.tidy(() => {
      const h = model.hidden(tf.tensor2d([chunk], [1, chunk.length], 'int32'), cache);
      return { logits: model.project(tf.reshape(h.hidden, [chunk.length, config.dim]) as tf.Tensor2D), layers: h.cache!.layers };
    });
    disposeCache(cache);
    cache = { layers: r.layers, length: cache.length + chunk.length };
    out.push(...(r.logits.dataSync() as Float32Array));
    r.logits.dispose();
  }
  disposeCache(cache);
  return out;
}

/** Moves every adapter weight off its init, so tests see the adapter actually act. */
function perturb(adapter: ModelAdapter, seed: number, std = 0.1): void {
  adapter.namedWeights().forEach(({ variable }, i) => tf.tidy(() => variable.assign(tf.add(variable, tf.randomNormal(variable.shape, 0, std, 'float32', seed + i)))));
}

test('gated memory: per-head weight shapes, m = 0 and g = sigmoid(-3) at init', () => {
  const adapter = new GatedMemoryAdapter(config, 1);
  const hd = config.headDim;
  const r = gateWidth(hd);
  assert.equal(r, 2); // floor(sqrt(8))
  const shapes = adapter.namedWeights().slice(0, 4).map((w) => w.variable.shape);
  assert.deepEqual(shapes, [[6, hd, 2 * hd], [6, 2 * hd, hd], [6, hd, r], [6, r, 1]]);
  assert.equal(adapterParameterCount(adapter), config.layers * config.heads * (hd * 2 * hd * 2 + hd * r + r));
  const queries = tf.randomNormal([5, config.heads * hd], 0, 1, 'float32', 3) as tf.Tensor2D;
  const attention = tf.randomNormal([5, config.heads * hd], 0, 1, 'float32', 4) as tf.Tensor2D;
  const gate = adapter.blocks[0].gate(queries).dataSync();
  for (const g of gate) assert.ok(Math.abs(g - 1 / (1 + Math.exp(3))) < 1e-6, `gate ${g}`);
  // m = 0: the output is (1 - g) * attention
  const mixed = adapter.blocks[0].attentionOutput(attention, queries);
  assert.ok(maxAbsDiff(mixed.dataSync(), tf.mul(attention, 1 - 1 / (1 + Math.exp(3))).dataSync()) < 1e-6);
  tf.dispose([queries, attention, mixed]);
  adapter.dispose();
});

for (const kind of ['gated-memory', 'lora'] as AdapterKind[]) {
  test(`${kind}: the KV-cache path matches the whole-sequence path with the adapter attached`, () => {
    const model = new LlamaModel(config, 5);
    const adapter = createAdapter(kind, config, {}, 2);
    perturb(adapter, 10);
    attachAdapter(model, adapter);
    const full = logits(model);
    assert.ok(maxAbsDiff(cachedLogits(model), full) < 1e-4);
    detachAdapter(model);
    adapter.dispose();
    model.dispose();
  });

  test(`${kind}: attaching changes the logits, removing restores the base logits exactly`, () => {
    const model = new LlamaModel(config, 6);
    const base = logits(model);
    const adapter = createAdapter(kind, config, {}, 3);
    attachAdapter(model, adapter);
    if (kind === 'lora') assert.deepEqual(logits(model), base); // B = 0 at init: exactly the base model
    perturb(adapter, 20);
    assert.ok(maxAbsDiff(logits(model), base) > 1e-3);
    detachAdapter(model);
    assert.deepEqual(logits(model), base);
    adapter.dispose();
    model.dispose();
  });

  test(`${kind}: gradients of the adapter weights match finite differences`, () => {
    const model = new LlamaModel(config, 8);
    // Weights of order 1 (not the 0.02 init) so the lowest layer's gradient stands well above float32 noise.
    model.variables().forEach((v, i) => tf.tidy(() => v.assign(tf.add(v, tf.randomNormal(v.shape, 0, 0.3, 'float32', 50 + i)))));
    const adapter = createAdapter(kind, config, {}, 4);
    perturb(adapter, 30, kind === 'gated-memory' ? 1 : 0.1); // std 1 opens the gates
    attachAdapter(model, adapter);
    const loss = () => tf.tidy(() => tf.mean(tf.square(model.logits(tf.tensor2d([ids], [1, ids.length], 'int32')))) as tf.Scalar);
    const weights = adapter.namedWeights();
    const target = weights[0].variable; // the lowest layer's first weight: its gradient crosses every block
    const { grads } = tf.variableGrads(loss, [target]);
    const analytic = grads[target.name].dataSync()[0];
    const eps = 1e-2;
    const at = (delta: number) => {
      tf.tidy(() => target.assign(tf.add(target, tf.scatterND([[0, 0, 0].slice(0, target.rank)], [delta], target.shape))));
      return loss().dataSync()[0];
    };
    const plus = at(eps);
    const minus = at(-2 * eps);
    at(eps);
    const numeric = (plus - minus) / (2 * eps);
    assert.ok(Math.abs(numeric) > 1e-4, `gradient ${numeric} too small to check`);
    assert.ok(Math.abs(analytic - numeric) < 0.02 * Math.abs(numeric), `analytic ${analytic} numeric ${numeric}`);
    tf.dispose(Object.values(grads));
    detachAdapter(model);
    adapter.dispose();
    model.dispose();
  });
}

test('adapter files round-trip and refuse another base model', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lift-adapter-'));
  const model = new LlamaModel(config, 9);
  const adapter = createAdapter('lora', config, { rank: 4, alpha: 8 }, 5);
  perturb(adapter, 40);
  attachAdapter(model, adapter);
  const adapted = logits(model);
  detachAdapter(model);
  const file = join(dir, 'adapter.safetensors');
  await saveAdapter(file, adapter, 'a'.repeat(64), { input_sha256: 'x' });
  adapter.dispose();
  const loaded = loadAdapter(file, config, 'a'.repeat(64), 'base');
  assert.equal(loaded.info.kind, 'lora');
  assert.deepEqual(loaded.info.settings, { rank: 4, alpha: 8 });
  assert.equal(loaded.info.extra.input_sha256, 'x');
  attachAdapter(model, loaded.adapter);
  assert.deepEqual(logits(model), adapted);
  detachAdapter(model);
  loaded.adapter.dispose();
  assert.throws(() => loadAdapter(file, config, 'b'.repeat(64), 'other-base'), (err: Error) => err instanceof UserError && /trained on another base model/.test(err.message));
  model.dispose();
});
