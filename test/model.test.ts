/** Model behaviour beyond HF parity: KV-cached decoding, grouped-query shapes, the attention window. */
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { generate } from '../src/infer/generate.ts';
import { makeRng } from '../src/core/random.ts';
import { sampleToken } from '../src/infer/sampling.ts';
import { makeConfig } from '../src/model/config.ts';
import { disposeCache, LlamaModel } from '../src/model/llama.ts';
import { maxAbsDiff, tf, useCpu } from './helpers.ts';

before(useCpu);

const config = makeConfig(null, { vocabSize: 97, dim: 48, layers: 2, heads: 6, kvHeads: 2, maxSeq: 40 });

test('cached incremental decoding gives the same logits as recomputing the whole sequence', () => {
  const model = new LlamaModel(config, 7);
  const ids = Array.from({ length: 20 }, (_, i) => (i * 31 + 5) % config.vocabSize);
  const full = tf.tidy(() => model.logits(tf.tensor2d([ids], [1, ids.length], 'int32')));
  const fullValues = full.arraySync()[0];
  full.dispose();
  // prefill 7 tokens, then one token at a time
  let cache = model.emptyCache(1);
  const chunks = [ids.slice(0, 7), ...ids.slice(7).map((id) => [id])];
  let position = 0;
  for (const chunk of chunks) {
    const out = tf.tidy(() => {
      const r = model.hidden(tf.tensor2d([chunk], [1, chunk.length], 'int32'), cache);
      const [, t, d] = r.hidden.shape;
      return { logits: model.project(tf.reshape(r.hidden, [t, d]) as tf.Tensor2D), layers: r.cache!.layers };
    });
    disposeCache(cache);
    cache = { layers: out.layers, length: position + chunk.length };
    const got = out.logits.arraySync() as number[][];
    out.logits.dispose();
    got.forEach((row, i) => assert.ok(maxAbsDiff(row, fullValues[position + i]) < 1e-5, `position ${position + i}`));
    position += chunk.length;
  }
  disposeCache(cache);
  model.dispose();
});

test('generate with and without the cache agrees, and leaves no tensors behind', async () => {
  const model = new LlamaModel(config, 3);
  const before = tf.memory().numTensors;
  const prompt = [1, 5, 9, 13];
  const options = { maxNewTokens: 12, temperature: 0.9, topK: 20, topP: 0.9, seed: 42 };
  const cached = await generate(model, prompt, { ...options, useCache: true });
  const recomputed = await generate(model, prompt, { ...options, useCache: false });
  assert.deepEqual(cached, recomputed);
  assert.equal(cached.length, 12);
  assert.equal(tf.memory().numTensors, before);
  model.dispose();
});

test('generation past the context window keeps going (cache re-prefill) without leaking', async () => {
  const model = new LlamaModel(config, 5);
  const before = tf.memory().numTensors;
  const produced = await generate(model, [1, 2, 3], { maxNewTokens: 60, greedy: true });
  assert.equal(produced.length, 60);
  assert.equal(tf.memory().numTensors, before);
  model.dispose();
});

test('an attention window hides tokens further back than the window', () => {
  const windowed = makeConfig(null, { ...config, attentionWindow: 4 });
  const model = new LlamaModel(windowed, 11);
  const a = [5, 6, 7, 8, 9, 10, 11, 12];
  const b = [50, 6, 7, 8, 9, 10, 11, 12]; // differs only at position 0
  const logitsOf = (ids: number[]): number[][] => {
    const t = tf.tidy(() => model.logits(tf.tensor2d([ids], [1, ids.length], 'int32')));
    const v = t.arraySync()[0];
    t.dispose();
    return v;
  };
  const la = logitsOf(a);
  const lb = logitsOf(b);
  // With 2 layers the receptive field is 2*(window-1) = 6 tokens back: positions >= 7 cannot see position 0.
  assert.ok(maxAbsDiff(la[7], lb[7]) === 0, 'position 7 must not depend on position 0');
  assert.ok(maxAbsDiff(la[3], lb[3]) > 1e-6, 'position 3 does depend on position 0');
  model.dispose();
});

test('grouped-query attention has kvHeads-sized K/V projections and a cache of [B, kvHeads, T, headDim]', () => {
  const model = new LlamaModel(config, 1);
  const b = model.blocks[0];
  assert.deepEqual(b.wq.shape, [48, 48]);
  assert.deepEqual(b.wk.shape, [48, 16]);
  const r = tf.tidy(() => {
    const out = model.hidden(tf.tensor2d([[1, 2, 3]], [1, 3], 'int32'), model.emptyCache(1));
    return out.cache!.layers[0];
  });
  assert.deepEqual(r.k.shape, [1, 2, 3, 8]);
  tf.dispose([r.k, r.v]);
  model.dispose();
});

test('sampling: greedy is argmax, top-k restricts the choice, and a seed makes it reproducible', () => {
  const logits = [0.1, 3, 0.2, 2.9, -1];
  assert.equal(sampleToken(logits, { greedy: true, temperature: 1, topK: 0, topP: 1 }, makeRng(1)), 1);
  const seen = new Set<number>();
  const rng = makeRng(9);
  for (let i = 0; i < 200; i++) seen.add(sampleToken(logits, { greedy: false, temperature: 1, topK: 2, topP: 1 }, rng));
  assert.deepEqual([...seen].sort(), [1, 3]);
  const draw = (seed: number): number[] => {
    const r = makeRng(seed);
    return Array.from({ length: 20 }, () => sampleToken(logits, { greedy: false, temperature: 1.5, topK: 0, topP: 0.95 }, r));
  };
  assert.deepEqual(draw(4), draw(4));
});
