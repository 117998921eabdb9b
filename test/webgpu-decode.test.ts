/**
 * The webgpu decode graph (src/model/webgpu-decode.ts) against the tfjs decoding path
 * (ARL_DECODE_GRAPH=0): greedy continuations token for token, logits, memory. In CI through Mesa's
 * lavapipe (.ci/run sets ARL_REQUIRE_WEBGPU=1 so a missing adapter fails instead of skipping).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { DecodeBatch, DecodeSession } from '../src/infer/decode-session.ts';
import { argmax } from '../src/infer/sampling.ts';
import { type AnswerResult, answerWithRecaps, DEFAULT_ANSWER } from '../src/infer/recap-agent.ts';
import { readBrownDocuments } from '../src/data/brown.ts';
import { BUNDLED_TOKENIZER_PATH, Tokenizer } from '../src/tokenizer/sentencepiece.ts';
import { generate } from '../src/infer/generate.ts';
import { assignHfWeights, readHfCheckpoint } from '../src/io/hf.ts';
import { makeConfig, type ConfigOverrides } from '../src/model/config.ts';
import { LlamaModel } from '../src/model/llama.ts';
import { decodeGraphBuffers, decodeGraphSupported } from '../src/ops/webgpu/decode-graph.ts';
import { maxAbsDiff, runArl, sharpModel, TEST_FIXTURES, webgpuUnavailable } from './helpers.ts';

const skip = await webgpuUnavailable();

/** `fn` with the decode graph off (the tfjs path of DecodeSession). */
async function withoutGraph<T>(fn: () => Promise<T>): Promise<T> {
  process.env.ARL_DECODE_GRAPH = '0';
  try {
    return await fn();
  } finally {
    delete process.env.ARL_DECODE_GRAPH;
  }
}

const tinyConfig = (o: ConfigOverrides) => makeConfig(null, { vocabSize: 97, dim: 32, layers: 2, heads: 4, kvHeads: 2, hiddenDim: 50, maxSeq: 96, ...o });
const prompt = (length: number, vocab: number): number[] => Array.from({ length }, (_, i) => (i * 37 + 5) % vocab);

describe('webgpu decode graph', { skip }, () => {
  afterEach(() => assert.equal(decodeGraphBuffers(), 0, 'every GPU buffer of the graph is destroyed with its session'));

  const cases: [string, ConfigOverrides, number][] = [
    // more than 64 keys (two attention splits) by the end
    ['GQA 4/2, untied', {}, 50],
    ['GQA 4/2, tied embeddings', { tieEmbeddings: true }, 50],
    // window 70 over two splits, then the cache fills at 96 and the session restarts
    ['sliding window 70, crossing the full cache', { attentionWindow: 70 }, 70],
    // head dimension past one 64-wide workgroup, one KV head
    ['head dim 128, MQA', { dim: 256, heads: 2, kvHeads: 1, layers: 1 }, 30],
  ];
  for (const [what, overrides, promptLength] of cases) {
    it(`greedy: 40 tokens identical to the tfjs path (${what})`, async () => {
      const model = sharpModel(tinyConfig(overrides));
      assert.ok(decodeGraphSupported(model));
      const ids = prompt(promptLength, model.config.vocabSize);
      let graphUsed = false;
      const got = await generate(model, ids, { maxNewTokens: 40, greedy: true, onToken: () => (graphUsed ||= decodeGraphBuffers() > 0) });
      const want = await withoutGraph(() => generate(model, ids, { maxNewTokens: 40, greedy: true }));
      assert.ok(graphUsed, 'the graph decoded');
      assert.deepEqual(got, want);
      model.dispose();
    });
  }

  it('logits within 1e-4 of the tfjs path, prompts and single tokens mixed (sampling, the recap agent)', async () => {
    const model = sharpModel(tinyConfig({ attentionWindow: 70 }));
    const appends = [prompt(30, 97), [3], [4], [5, 6, 7], [8], ...prompt(40, 97).map((id) => [id])];
    const run = async (): Promise<Float32Array[]> => {
      const session = new DecodeSession(model);
      const out: Float32Array[] = [];
      for (const ids of appends) out.push(await session.append(ids));
      session.dispose();
      return out;
    };
    const got = await run();
    const want = await withoutGraph(run);
    got.forEach((logits, i) => assert.ok(maxAbsDiff(logits, want[i]) < 1e-4, `append ${i}: max |diff| ${maxAbsDiff(logits, want[i])}`));
    model.dispose();
  });

  it('50 tokens leave tensors and GPU bytes flat; sampling through generate matches the tfjs path', async () => {
    const model = sharpModel(tinyConfig({ tieEmbeddings: true }));
    const session = new DecodeSession(model);
    let next = await session.appendGreedy(prompt(20, 97));
    next = await session.appendGreedy([next]);
    const tensors = tf.memory().numTensors;
    const gpuBytes = (tf.memory() as { numBytesInGPU?: number }).numBytesInGPU;
    const graphBuffers = decodeGraphBuffers();
    for (let i = 0; i < 50; i++) next = await session.appendGreedy([next]);
    assert.equal(tf.memory().numTensors, tensors);
    assert.equal((tf.memory() as { numBytesInGPU?: number }).numBytesInGPU, gpuBytes);
    assert.equal(decodeGraphBuffers(), graphBuffers);
    session.dispose();
    const options = { maxNewTokens: 20, temperature: 0.9, topK: 20, topP: 0.9, seed: 5 };
    assert.deepEqual(await generate(model, prompt(20, 97), options), await withoutGraph(() => generate(model, prompt(20, 97), options)));
    model.dispose();
  });

  it('sessions of one batch decoding concurrently get what each gets alone (rows, positions, restarts, greedy and logits mixed)', async () => {
    const model = sharpModel(tinyConfig({ attentionWindow: 70 }));
    // Five sequences in a batch of six rows: prompts of different lengths, one restart, two read logits back.
    const plans = [5, 33, 64, 80, 12].map((length, s) => ({ prompt: prompt(length, 97).map((id) => (id + s) % 97), greedy: s % 2 === 0, restartAt: s === 3 ? 10 : -1 }));
    const decode = async (session: DecodeSession, plan: (typeof plans)[number]): Promise<number[]> => {
      const out: number[] = [];
      const choose = async (ids: number[]): Promise<number> => (plan.greedy ? session.appendGreedy(ids) : argmax(await session.append(ids)));
      let next = await choose(plan.prompt);
      for (let i = 0; i < 30; i++) {
        out.push(next);
        next = i === plan.restartAt ? argmax(await session.restart(plan.prompt.slice(-20))) : await choose([next]);
      }
      session.dispose();
      return out;
    };
    const tensors = tf.memory().numTensors;
    const alone: number[][] = [];
    for (const plan of plans) alone.push(await withoutGraph(() => decode(new DecodeSession(model), plan)));
    const batch = new DecodeBatch(model, 6);
    const together = await Promise.all(plans.map((plan) => decode(batch.session(), plan)));
    assert.ok(batch.stats.tokens > 4 * batch.stats.steps, `sessions shared steps (${batch.stats.tokens} tokens in ${batch.stats.steps} steps)`);
    batch.dispose();
    assert.deepEqual(together, alone);
    assert.equal(tf.memory().numTensors, tensors, 'no tensor left behind');
    assert.throws(() => {
      const full = new DecodeBatch(model, 1);
      try {
        full.session();
        full.session();
      } finally {
        full.dispose();
      }
    }, /all 1 rows of the decode batch are in use/);
    model.dispose();
  });

  it('the recap agent over three inputs at once in one batch answers (and scores the gold answer) as each alone (prompts in shared forwards)', async () => {
    const tokenizer = await Tokenizer.load(BUNDLED_TOKENIZER_PATH);
    const model = new LlamaModel(makeConfig(null, { vocabSize: tokenizer.vocabSize, dim: 32, layers: 2, heads: 2, kvHeads: 1, maxSeq: 64 }), 11);
    const paragraphs = [...readBrownDocuments()][0]!.text.split('\n\n');
    const inputs = [0, 3, 6].map((from) => paragraphs.slice(from, from + 4).join('\n\n'));
    const options = { ...DEFAULT_ANSWER, agent: { ...DEFAULT_ANSWER.agent, maxRecapTokens: 6 }, maxAnswerTokens: 6, recapThreshold: 0, goldAnswer: 'the jury' };
    const alone: AnswerResult[] = [];
    for (const input of inputs) alone.push(await answerWithRecaps(model, tokenizer, input, 'Who spoke?', options));
    const batch = new DecodeBatch(model, 4, true);
    const together = await Promise.all(inputs.map((input) => answerWithRecaps(model, tokenizer, input, 'Who spoke?', { ...options, batch })));
    assert.ok(batch.stats.tokens > batch.stats.steps, `answers shared steps (${batch.stats.tokens} tokens in ${batch.stats.steps} steps)`);
    assert.ok(batch.stats.prompts > batch.stats.promptForwards, `prompts shared forwards (${batch.stats.prompts} in ${batch.stats.promptForwards})`);
    assert.ok(alone.every((a) => a.recaps.length > 0));
    // Prompts run together go through products of another shape, so probabilities agree to rounding, not bit for bit.
    const rounded = (r: AnswerResult) => ({ ...r, recapProbabilities: r.recapProbabilities.map((p) => p.toPrecision(6)), goldLogProb: r.goldLogProb?.toPrecision(5), stats: { ...r.stats, prefillSeconds: 0, decodeSeconds: 0 } });
    assert.ok(alone.every((a) => Number.isFinite(a.goldLogProb)), 'the gold answer scored after each answer');
    assert.deepEqual(together.map(rounded), alone.map(rounded));
    model.dispose();
  });

  it('arl bench --decode-rows: one step per token for all the rows together', async () => {
    const r = await runArl('bench', '--backend', 'webgpu', '--steps', '1', '--skip-generate', '--no-key-tokens', '--no-lift', '--seq', '32', '--gen-context', '40', '--gen-tokens', '4', '--decode-rows', '3');
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l)).filter((l) => l.bench === 'decode-batch');
    assert.deepEqual(lines.map((l) => [l.rows, l.steps, l.tokens_each]), [[1, 4, 4], [3, 4, 4]]);
    assert.ok(lines.every((l) => l.tokens_per_s > 0));
  });

  it('a weight assigned mid-session is read from its new buffer', async () => {
    const model = sharpModel(tinyConfig({}));
    const ids = prompt(12, 97);
    const session = new DecodeSession(model);
    await session.append(ids.slice(0, 10));
    await session.append([ids[10]]);
    // The final norm: the cache does not depend on it, so a fresh session over all ids is the reference.
    tf.tidy(() => {
      model.finalNorm.weight.write(tf.mul(model.finalNorm.weight.read(), 2));
    });
    const got = await session.append([ids[11]]);
    session.dispose();
    const want = await withoutGraph(async () => {
      const fresh = new DecodeSession(model);
      const logits = await fresh.append(ids);
      fresh.dispose();
      return logits;
    });
    assert.ok(maxAbsDiff(got, want) < 1e-4, `max |diff| ${maxAbsDiff(got, want)}`);
    model.dispose();
  });

  it('an attached adapter (LIFT) falls back to the tfjs path', () => {
    const model = new LlamaModel(tinyConfig({ layers: 1 }), 1);
    assert.ok(decodeGraphSupported(model));
    model.blocks[0].adapter = {};
    assert.equal(decodeGraphSupported(model), false);
    model.dispose();
  });

  it('transformers parity: greedy continuation of an HF checkpoint through the graph (mha-tied)', async () => {
    const dir = join(TEST_FIXTURES, 'hf', 'mha-tied');
    const ref = JSON.parse(readFileSync(join(dir, 'reference.json'), 'utf8')) as { greedy: { prompt: number[]; output: number[] } };
    const { config, tensors } = readHfCheckpoint(dir);
    const model = new LlamaModel(config);
    assignHfWeights(model, tensors, dir);
    const { prompt: ids, output } = ref.greedy;
    assert.deepEqual(await generate(model, ids, { greedy: true, maxNewTokens: output.length - ids.length }), output.slice(ids.length));
    model.dispose();
  });
});
