/**
 * GGUF export checked against llama.cpp itself (node-llama-cpp's prebuilt CPU binaries, offline):
 * the exported model's next-token distribution at every prompt position and its greedy continuation
 * equal ours,
 * the vocabulary metadata matches the tokenizer, and configs llama.cpp cannot hold are refused.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { getLlama, type Llama, LlamaLogLevel, readGgufFileInfo, type Token } from 'node-llama-cpp';
import { generate } from '../src/infer/generate.ts';
import { saveCheckpoint } from '../src/io/checkpoint.ts';
import { writeGguf } from '../src/io/gguf.ts';
import { hfWeights } from '../src/io/hf.ts';
import { makeConfig, type ModelConfig } from '../src/model/config.ts';
import { LlamaModel } from '../src/model/llama.ts';
import { BUNDLED_TOKENIZER_PATH, Tokenizer } from '../src/tokenizer/sentencepiece.ts';
import { assertUserError, runArl, sharpModel, tf, useCpu } from './helpers.ts';

const work = mkdtempSync(join(tmpdir(), 'arl-gguf-'));
let tokenizer: Tokenizer;
let llama: Llama;

/** Our next-token log-probabilities [T, vocab] for `ids`. */
async function ourLogProbs(model: LlamaModel, ids: number[]): Promise<Float32Array[]> {
  const logits = tf.tidy(() => tf.logSoftmax(model.logits(tf.tensor2d([ids], [1, ids.length], 'int32'))));
  const flat = (await logits.data()) as Float32Array;
  logits.dispose();
  const vocab = model.config.vocabSize;
  return ids.map((_, t) => flat.slice(t * vocab, (t + 1) * vocab));
}

/**
 * Loads `file` in llama.cpp: the full next-token distribution at every position of `prompt`
 * (temperature 1, no top-k/top-p/min-p filtering; node-llama-cpp 3.21 exposes probabilities, not
 * raw logits) and the greedy continuation of `newTokens` tokens.
 */
async function llamaCppRun(file: string, prompt: number[], newTokens: number): Promise<{ probabilities: Map<Token, number>[]; greedy: number[] }> {
  const model = await llama.loadModel({ modelPath: file });
  // F32 K/V cache: the default F16 cache would round keys and values.
  const context = await model.createContext({ contextSize: 128, batchSize: 128, threads: 1, experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32', flashAttention: false });
  try {
    const sequence = context.getSequence();
    const unfiltered = { temperature: 1, topK: 0, topP: 1, minP: 0 };
    const evaluated = await sequence.controlledEvaluate(prompt.map((id) => [id as Token, { generateNext: { probabilities: true, options: unfiltered } }]));
    const probabilities = evaluated.map((r) => r!.next.probabilities!);
    await sequence.clearHistory();
    const greedy: number[] = [];
    for await (const id of sequence.evaluate(prompt as Token[], { temperature: 0 })) {
      greedy.push(id);
      if (greedy.length === newTokens) break;
    }
    return { probabilities, greedy };
  } finally {
    await context.dispose();
    await model.dispose();
  }
}

async function assertLlamaCppMatches(config: ModelConfig, label: string): Promise<void> {
  const model = sharpModel(config);
  try {
    const file = join(work, `${label}.gguf`);
    writeGguf(file, config, await hfWeights(model), tokenizer, label);
    const prompt = [tokenizer.bosId, ...tokenizer.encode('The jury further said in term-end presentments that the City Executive Committee')];
    const newTokens = 24;
    const theirs = await llamaCppRun(file, prompt, newTokens);
    const ours = await ourLogProbs(model, prompt);
    // Compared in log space over the tokens llama.cpp gives a probability above 1e-6 (float32 underflow below).
    let maxDiff = 0;
    let compared = 0;
    let spread = 0;
    ours.forEach((row, t) => {
      for (const [id, p] of theirs.probabilities[t]) {
        if (p < 1e-6) continue;
        maxDiff = Math.max(maxDiff, Math.abs(Math.log(p) - row[id]));
        spread = Math.max(spread, -row[id]);
        compared++;
      }
    });
    assert.ok(compared > ours.length * 100, `${label}: llama.cpp returned too few probabilities (${compared})`);
    assert.ok(spread > 1, `${label}: distribution too flat to be a meaningful check (min log-prob ${-spread})`);
    assert.ok(maxDiff < 1e-3, `${label}: llama.cpp log-probs differ from ours by ${maxDiff}`);
    const greedy = await generate(model, prompt, { greedy: true, maxNewTokens: newTokens });
    assert.ok(new Set(greedy).size > 3, `${label}: degenerate greedy continuation ${greedy}`);
    assert.deepEqual(theirs.greedy, greedy, label);
  } finally {
    model.dispose();
  }
}

describe('GGUF export runs in llama.cpp', () => {
  before(async () => {
    await useCpu();
    tokenizer = await Tokenizer.load(BUNDLED_TOKENIZER_PATH);
    llama = await getLlama({ gpu: false, build: 'never', usePrebuiltBinaries: true, skipDownload: true, progressLogs: false, logLevel: LlamaLogLevel.error });
  });
  after(async () => {
    await llama?.dispose();
  });

  const base = { vocabSize: 0, dim: 64, layers: 2, heads: 4, kvHeads: 2, hiddenDim: 96, maxSeq: 128 };

  test('grouped-query attention, separate LM head: same logits and greedy tokens', async () => {
    await assertLlamaCppMatches(makeConfig(null, { ...base, vocabSize: tokenizer.vocabSize, ropeTheta: 50000 }), 'gqa');
  });

  test('tied embeddings, head_dim != dim/heads, llama3 rope (rope_freqs), vocabulary padded past the tokenizer', async () => {
    const config = makeConfig(null, {
      ...base,
      vocabSize: tokenizer.vocabSize + 5,
      headDim: 24,
      kvHeads: 1,
      tieEmbeddings: true,
      ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 16 },
    });
    await assertLlamaCppMatches(config, 'tied-llama3');
  });

  test('linear rope scaling', async () => {
    await assertLlamaCppMatches(makeConfig(null, { ...base, vocabSize: tokenizer.vocabSize, ropeScaling: { type: 'linear', factor: 4 } }), 'linear');
  });

  test('metadata: hyperparameters, SentencePiece vocabulary with scores and types, recap markers user-defined; llama.cpp tokenizes plain text as we do', async () => {
    const file = join(work, 'gqa.gguf');
    const info = await readGgufFileInfo(file, { readTensorInfo: true });
    const meta = info.metadata as unknown as Record<string, Record<string, unknown>>;
    assert.equal(info.version, 3);
    assert.equal(meta.general.architecture, 'llama');
    const hp = meta.llama as { context_length: number; embedding_length: number; block_count: number; feed_forward_length: number; attention: { head_count: number; head_count_kv: number }; rope: { freq_base: number } };
    assert.deepEqual([hp.context_length, hp.embedding_length, hp.block_count, hp.feed_forward_length, hp.attention.head_count, hp.attention.head_count_kv, hp.rope.freq_base], [128, 64, 2, 96, 4, 2, 50000]);
    const ggml = (meta.tokenizer as { ggml: { model: string; tokens: string[]; scores: number[]; token_type: number[]; bos_token_id: number; eos_token_id: number } }).ggml;
    assert.equal(ggml.model, 'llama');
    assert.deepEqual(ggml.tokens, tokenizer.vocabulary.map((p) => p.piece));
    assert.deepEqual(ggml.scores, tokenizer.vocabulary.map((p) => Math.fround(p.score)));
    assert.equal(ggml.token_type[tokenizer.recapOpenId], 4);
    assert.equal(ggml.token_type[tokenizer.recapCloseId], 4);
    assert.equal(ggml.token_type[tokenizer.bosId], 3);
    assert.deepEqual([ggml.bos_token_id, ggml.eos_token_id], [tokenizer.bosId, tokenizer.eosId]);
    const names = info.tensorInfo!.map((t) => t.name);
    for (const name of ['token_embd.weight', 'blk.1.attn_q.weight', 'blk.1.attn_k.weight', 'blk.1.attn_v.weight', 'blk.1.attn_output.weight', 'blk.1.ffn_gate.weight', 'blk.1.ffn_up.weight', 'blk.1.ffn_down.weight', 'blk.1.attn_norm.weight', 'blk.1.ffn_norm.weight', 'output_norm.weight', 'output.weight']) {
      assert.ok(names.includes(name), name);
    }

    const model = await llama.loadModel({ modelPath: file });
    try {
      const text = 'The Fulton County Grand Jury said Friday an investigation of recent primary elections took place.';
      assert.deepEqual(model.tokenize(text), tokenizer.encode(text));
      // The markers are single tokens in llama.cpp too. (Around them llama.cpp re-adds the word-boundary
      // space SentencePiece would not, so ids next to a marker may differ; the model's own ids are ours.)
      const marked = model.tokenize('Before <recap>a short recap</recap> after.', true);
      assert.equal(marked.filter((id) => id === tokenizer.recapOpenId).length, 1);
      assert.equal(marked.filter((id) => id === tokenizer.recapCloseId).length, 1);
    } finally {
      await model.dispose();
    }
  });
});

test('arl export --format gguf: writes a file from a checkpoint; refuses a sliding window or a missing vocabulary before writing anything', async () => {
  await useCpu();
  const ok = join(work, 'ckpt');
  const windowed = join(work, 'windowed');
  const noTokenizer = join(work, 'no-tokenizer');
  const config = makeConfig(null, { vocabSize: 4096, dim: 32, layers: 1, heads: 2, maxSeq: 32 });
  for (const [dir, c, tok] of [[ok, config, BUNDLED_TOKENIZER_PATH], [windowed, { ...config, attentionWindow: 8 }, BUNDLED_TOKENIZER_PATH], [noTokenizer, config, null]] as const) {
    const model = new LlamaModel(c);
    await saveCheckpoint(dir, model, tok);
    model.dispose();
  }
  const out = join(work, 'cli.gguf');
  const r = await runArl('export', '--checkpoint', ok, '--format', 'gguf', '--out', out);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /GGUF v3, llama architecture, 12 F32 tensors/);
  assert.equal((await readGgufFileInfo(out)).metadata.general.architecture, 'llama');

  const refused = [join(work, 'windowed.gguf'), join(work, 'no-tokenizer.gguf')];
  assertUserError(await runArl('export', '--checkpoint', windowed, '--format', 'gguf', '--out', refused[0]), /cannot export to GGUF: .*sliding attention window of 8 tokens/);
  assertUserError(await runArl('export', '--checkpoint', noTokenizer, '--format', 'gguf', '--out', refused[1]), /cannot export to GGUF: the checkpoint has no tokenizer\.model.*--tokenizer/);
  assertUserError(await runArl('export', '--checkpoint', ok, '--format', 'gguf', '--out', join(work, 'model.bin')), /name it \*\.gguf/);
  for (const file of refused) assert.ok(!existsSync(file), file);
});
