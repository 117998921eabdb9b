/**
 * ARL steps 1 and 2: sentence-wise tokenization; chunked short and windowed long log-probs against naive
 * forwards; key-token selection; resumable output; candidate segments and their batched scores.
 */
import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { splitSentences, tokenizeDocument } from '../src/arl/document.ts';
import { type DocumentScores, findKeyTokens, KEY_TOKEN_FILES, keyTokenOptions, scoreDocument, scoreDocuments, selectKeyTokens } from '../src/arl/key-tokens.ts';
import { candidateSegments, findRelevantSegments, findRelevantSegmentsOf, findRelevantSegmentsOfDocuments, measureSegmentThroughput, SEGMENT_FILES, type SegmentRecord, segmentOptions, validateSegmentOptions } from '../src/arl/relevant-segment.ts';
import { readJsonLines } from '../src/io/jsonl.ts';
import { readBrownDocuments } from '../src/data/brown.ts';
import { makeConfig } from '../src/model/config.ts';
import { LlamaModel } from '../src/model/llama.ts';
import { BUNDLED_TOKENIZER_PATH, Tokenizer } from '../src/tokenizer/sentencepiece.ts';
import { targetLogProbs } from '../src/ops/cross-entropy.ts';
import { tf, useCpu } from './helpers.ts';

before(useCpu);

/**
 * A random Llama with weights scaled up from the 0.02 init, so attention is sharp and a token's
 * log-prob moves with its context (at init scale every context gives nearly the same scores).
 */
function contextSensitiveModel(vocabSize: number, maxSeq = 64, seed = 7): LlamaModel {
  const model = new LlamaModel(makeConfig(null, { vocabSize, dim: 32, layers: 2, heads: 4, kvHeads: 2, maxSeq }), seed);
  for (const { name, variable } of model.namedWeights()) {
    if (name.endsWith('norm.weight')) continue;
    tf.tidy(() => {
      variable.write(tf.mul(variable.read(), 25));
    });
  }
  return model;
}

/** log p(next token | row) for rows of equal length, straight from model.logits (one forward, no padding). */
function lastTokenLogProbs(model: LlamaModel, rows: number[][], nextTokens: number[]): Float32Array {
  return tf.tidy(() => {
    const length = rows[0].length;
    const logits = model.logits(tf.tensor2d(rows, [rows.length, length], 'int32'));
    const last = tf.reshape(tf.slice(logits, [0, length - 1, 0], [rows.length, 1, -1]), [rows.length, -1]) as tf.Tensor2D;
    return targetLogProbs(last, tf.tensor1d(nextTokens, 'int32')).dataSync() as Float32Array;
  });
}

/**
 * log p(tokens[i] | the `contexts[k]` tokens before i) for each i = positions[k], each from a forward pass over
 * exactly that context: one row per target, rows of one context length batched together.
 */
function naiveLogProbs(model: LlamaModel, tokens: readonly number[], positions: number[], contexts: number[]): number[] {
  const out = new Array<number>(positions.length);
  const byLength = new Map<number, number[]>();
  contexts.forEach((c, k) => {
    if (!byLength.has(c)) byLength.set(c, []);
    byLength.get(c)!.push(k);
  });
  for (const [context, members] of byLength) {
    const rows = members.map((k) => tokens.slice(positions[k] - context, positions[k]));
    const values = lastTokenLogProbs(model, rows, members.map((k) => tokens[positions[k]]));
    members.forEach((k, j) => (out[k] = values[j]));
  }
  return out;
}

function randomTokens(count: number, vocabSize: number, seed: number): number[] {
  let state = seed;
  return Array.from({ length: count }, () => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return state % vocabSize;
  });
}

describe('sentence-wise tokenization', () => {
  test('sentences concatenate to the text, and their encodings to the whole-text encoding', async () => {
    const tokenizer = await Tokenizer.load(BUNDLED_TOKENIZER_PATH);
    assert.deepEqual(splitSentences('One. "Two!" he said.\n\nHeadline\n\nThree?  Four'), ['One.', ' "Two!"', ' he said.', '\n\nHeadline', '\n\nThree?', '  Four']);
    let checked = 0;
    for (const { text } of readBrownDocuments()) {
      assert.equal(splitSentences(text).join(''), text);
      const { tokens, sentenceStarts } = tokenizeDocument(text, tokenizer);
      assert.deepEqual(tokens, [tokenizer.bosId, ...tokenizer.encode(text)]);
      assert.equal(sentenceStarts[0], 1);
      assert.ok(sentenceStarts.every((s, k) => k === 0 || s > sentenceStarts[k - 1]));
      if (++checked === 3) break;
    }
  });
});

describe('dual forward pass', () => {
  const maxSeq = 32;
  const vocab = 97;
  let model: LlamaModel;
  const tokens = randomTokens(75, vocab, 11);

  before(() => {
    model = contextSensitiveModel(vocab, maxSeq);
  });
  after(() => model.dispose());

  /** Asserts every scored position matches a naive forward over the context length the scores report. */
  function assertMatchesNaive(scores: DocumentScores, which: 'long' | 'short'): void {
    const values = which === 'long' ? scores.long : scores.short;
    const contexts = which === 'long' ? scores.longContext : scores.shortContext;
    const positions = [...contexts.keys()].filter((i) => contexts[i] > 0);
    assert.ok(positions.length > 0);
    const expected = naiveLogProbs(model, tokens, positions, positions.map((i) => contexts[i]));
    positions.forEach((i, k) => assert.ok(Math.abs(values[i] - expected[k]) < 1e-4, `${which} log-prob of position ${i}: ${values[i]} vs naive ${expected[k]}`));
  }

  test('context matters for this model (so the comparisons below can fail)', async () => {
    const [short, long] = naiveLogProbs(model, tokens, [60, 60], [8, 30]);
    assert.ok(Math.abs(short - long) > 0.05, `${short} vs ${long}`);
  });

  test('(a) chunk of S + 1 tokens: each short log-prob sees exactly the last S tokens', async () => {
    const S = 8;
    const scores = await scoreDocument(model, tokens, keyTokenOptions(maxSeq, { shortContext: S, chunk: 1, batch: 16 }));
    for (let i = 0; i < tokens.length; i++) assert.equal(scores.shortContext[i], i >= S ? S : 0);
    assertMatchesNaive(scores, 'short');
  });

  test('(a) chunks of S + W tokens: LongPPL contexts of S..S+W-1 tokens, equal to naive forwards of those contexts', async () => {
    const S = 8;
    const W = 20;
    const scores = await scoreDocument(model, tokens, keyTokenOptions(maxSeq, { shortContext: S, chunk: W, batch: 3 }));
    for (let i = S; i < tokens.length; i++) assert.equal(scores.shortContext[i], S + ((i - S) % W));
    assertMatchesNaive(scores, 'short');
  });

  test('(b) long stride 1: every long log-prob sees the whole window (min(i, maxSeq - 1) tokens), equal to naive', async () => {
    const scores = await scoreDocument(model, tokens, keyTokenOptions(maxSeq, { longStride: 1, batch: 16 }));
    for (let i = 1; i < tokens.length; i++) assert.equal(scores.longContext[i], Math.min(i, maxSeq - 1));
    assertMatchesNaive(scores, 'long');
  });

  test('(b) default stride: long contexts between maxSeq - stride and maxSeq - 1, never shorter than the short one, equal to naive', async () => {
    const options = keyTokenOptions(maxSeq, { chunk: 20 });
    const scores = await scoreDocument(model, tokens, options);
    for (let i = 1; i < tokens.length; i++) {
      assert.ok(scores.longContext[i] >= Math.min(i, maxSeq - options.longStride) && scores.longContext[i] <= maxSeq - 1, `position ${i}`);
      assert.ok(scores.longContext[i] >= scores.shortContext[i], `position ${i}`);
    }
    assertMatchesNaive(scores, 'long');
  });

  test('default options read under 3 tokens per document token (a long stride of S would read about 4)', async () => {
    const long = randomTokens(400, vocab, 12);
    const fast = await scoreDocument(model, long, keyTokenOptions(maxSeq));
    const strideS = await scoreDocument(model, long, keyTokenOptions(maxSeq, { longStride: maxSeq / 4 }));
    assert.ok(fast.forwardTokens / long.length < 3, `${fast.forwardTokens / long.length}`);
    assert.ok(strideS.forwardTokens / long.length > 3.5, `${strideS.forwardTokens / long.length}`);
  });

  test('scores do not depend on how many windows share a forward, and leave no tensors behind', async () => {
    const before = tf.memory().numTensors;
    const one = await scoreDocument(model, tokens, keyTokenOptions(maxSeq, { batch: 1 }));
    const many = await scoreDocument(model, tokens, keyTokenOptions(maxSeq, { batch: 7 }));
    assert.equal(tf.memory().numTensors, before);
    for (let i = 1; i < tokens.length; i++) assert.ok(Math.abs(one.long[i] - many.long[i]) < 1e-5 && (Number.isNaN(one.short[i]) || Math.abs(one.short[i] - many.short[i]) < 1e-5));
    assert.ok(many.forwardPasses < one.forwardPasses);
  });

  test('documents scored together, in padded batches that mix them, each get the scores they get alone', async () => {
    const documents = [tokens, randomTokens(37, vocab, 13), randomTokens(150, vocab, 14)];
    const options = keyTokenOptions(maxSeq, { chunk: 20, batch: 3 });
    const before = tf.memory().numTensors;
    const together = await scoreDocuments(model, documents, options);
    assert.equal(tf.memory().numTensors, before);
    const windows = together.scores.reduce((acc, s) => acc + s.forwardPasses, 0);
    assert.ok(together.forwardPasses < windows, `${together.forwardPasses} batches, ${windows} document-batches: some batch mixes documents`);
    for (const [d, document] of documents.entries()) {
      const alone = await scoreDocument(model, document, options);
      const both = together.scores[d];
      for (let i = 1; i < document.length; i++) {
        assert.ok(Math.abs(alone.long[i] - both.long[i]) < 1e-4, `document ${d}, long ${i}: ${alone.long[i]} vs ${both.long[i]}`);
        assert.ok(Number.isNaN(alone.short[i]) ? Number.isNaN(both.short[i]) : Math.abs(alone.short[i] - both.short[i]) < 1e-4, `document ${d}, short ${i}`);
        assert.equal(alone.longContext[i], both.longContext[i]);
      }
    }
  });
});

describe('(c) key-token selection', () => {
  /**
   * Synthetic scores for a 20-token document with S = 5: every token has a long context of i tokens and
   * a short one of S tokens. Position 15 is the constructed far-context token: predictable from the
   * long context only (l = -0.5, s = -6). Position 2 has a huge gap but lies in the first S tokens.
   */
  function synthetic(): DocumentScores {
    const length = 20;
    const S = 5;
    const scores: DocumentScores = {
      long: new Float32Array(length).fill(-3),
      short: new Float32Array(length).fill(NaN),
      longContext: Int32Array.from({ length }, (_, i) => i),
      shortContext: Int32Array.from({ length }, (_, i) => (i >= S ? S : 0)),
      forwardPasses: 0,
      forwardTokens: 0,
    };
    for (let i = S; i < length; i++) scores.short[i] = -3.1;
    const set = (i: number, l: number, s: number): void => {
      scores.long[i] = l;
      scores.short[i] = s;
    };
    set(2, 0, -9); // inside the first S tokens: no short context, never a key token
    set(15, -0.5, -6); // far-context token: LSG 5.5, l above beta
    set(8, -2.5, -7); // LSG 4.5 but l below beta = -2
    set(11, -1, -3.5); // LSG 2.5
    set(17, -1, -3); // LSG exactly alpha = 2: not above it
    set(6, -1.9, -3.6); // LSG 1.7
    return scores;
  }
  const thresholds = { alpha: 2, beta: -2 };

  test('topk takes the K largest gaps at positions >= S, returned in position order', async () => {
    assert.deepEqual(selectKeyTokens(synthetic(), { ...thresholds, topK: 3, select: 'topk' }), [8, 11, 15]);
  });

  test('threshold keeps every token with LSG > alpha and l > beta (LongPPL), however many', async () => {
    assert.deepEqual(selectKeyTokens(synthetic(), { ...thresholds, topK: 1, select: 'threshold' }), [11, 15]);
  });

  test('both takes the top K among tokens passing the thresholds', async () => {
    assert.deepEqual(selectKeyTokens(synthetic(), { ...thresholds, topK: 1, select: 'both' }), [15]);
  });

  test('with sentence starts, at most perSentence key tokens per sentence, the highest gaps first; 0 is no limit', async () => {
    const starts = [0, 5, 16]; // tokens 6, 8, 11 and 15 share a sentence; 17 opens the next
    assert.deepEqual(selectKeyTokens(synthetic(), { ...thresholds, topK: 3, select: 'topk', perSentence: 1 }, starts), [15, 17]);
    assert.deepEqual(selectKeyTokens(synthetic(), { ...thresholds, topK: 3, select: 'topk', perSentence: 2 }, starts), [8, 15, 17]);
    assert.deepEqual(selectKeyTokens(synthetic(), { ...thresholds, topK: 3, select: 'topk', perSentence: 0 }, starts), [8, 11, 15]);
    assert.deepEqual(selectKeyTokens(synthetic(), { ...thresholds, topK: 3, select: 'topk', perSentence: 1 }), [8, 11, 15], 'no sentences (LongPPL): no limit');
  });

  test('tokens whose long context is no longer than their short one are never chosen', async () => {
    const scores = synthetic();
    scores.longContext[15] = scores.shortContext[15];
    assert.deepEqual(selectKeyTokens(scores, { ...thresholds, topK: 2, select: 'topk' }), [8, 11]);
  });
});

describe('(e) resumable output', () => {
  let model: LlamaModel;
  let tokenizer: Tokenizer;
  const work = mkdtempSync(join(tmpdir(), 'arl-keytokens-'));
  const corpus = join(work, 'corpus.jsonl');
  const maxSeq = 32;

  before(async () => {
    tokenizer = await Tokenizer.load(BUNDLED_TOKENIZER_PATH);
    model = contextSensitiveModel(tokenizer.vocabSize, maxSeq);
    const texts = [...readBrownDocuments()].slice(0, 4).map((d) => d.text.split(' ').slice(0, 45).join(' '));
    texts.splice(1, 0, 'Too short.');
    writeFileSync(corpus, texts.map((text) => JSON.stringify({ text })).join('\n'));
  });
  after(() => model.dispose());

  const run = (outDir: string, maxDocs: number) =>
    findKeyTokens({ model, tokenizer, checkpoint: 'test-model', corpus, outDir, options: keyTokenOptions(maxSeq), maxDocs });
  const files = (dir: string): string[] => Object.values(KEY_TOKEN_FILES).map((f) => readFileSync(join(dir, f), 'utf8'));

  test('a rerun with more documents scores only the new ones and writes what a fresh run writes', async () => {
    const resumed = join(work, 'resumed');
    const first = await run(resumed, 3);
    assert.equal(first.documentsScored, 3);
    assert.equal(first.summary.documents_skipped_short, 1);
    const tensors = tf.memory().numTensors;
    const second = await run(resumed, 5);
    assert.equal(second.documentsScored, 2);
    assert.equal(tf.memory().numTensors, tensors);
    const fresh = await run(join(work, 'fresh'), 5);
    assert.equal(fresh.documentsScored, 5);
    assert.deepEqual(files(resumed), files(join(work, 'fresh')));
    assert.equal(fresh.summary.documents, 5);
    assert.ok(fresh.summary.key_tokens > 0 && fresh.summary.key_tokens <= 4 * 8, `${fresh.summary.key_tokens} key tokens`);
    assert.ok((fresh.summary.longppl ?? 0) > 0 && (fresh.summary.perplexity ?? 0) > 0);
  });

  test('an interrupted run resumes: records of an unfinished document and a cut-off line are dropped', async () => {
    const dir = join(work, 'interrupted');
    mkdirSync(dir);
    // What a crash leaves: the first two documents done, then a record of the third and half a line.
    const fresh = join(work, 'fresh');
    const firstTwo = (line: string): boolean => /"doc":"corpus\.jsonl:[12]"/.test(line);
    for (const name of ['records', 'documents'] as const) {
      const lines = readFileSync(join(fresh, KEY_TOKEN_FILES[name]), 'utf8').split('\n').filter(firstTwo);
      writeFileSync(join(dir, `${KEY_TOKEN_FILES[name]}.partial`), lines.map((line) => `${line}\n`).join(''));
    }
    appendFileSync(join(dir, `${KEY_TOKEN_FILES.records}.partial`), `${JSON.stringify({ doc: 'corpus.jsonl:3', pos: 1 })}\n{"doc": "corp`);
    const resumed = await run(dir, 5);
    assert.equal(resumed.documentsScored, 3);
    assert.deepEqual(files(dir), files(join(work, 'fresh')));
  });

  test('(d) segments of the fresh output: before each short context, gain at least the margin, resumable', async () => {
    const dir = join(work, 'fresh');
    const options = { margin: 0.05, segmentTokens: 6 };
    const { totals, keyTokensScored } = await findRelevantSegments({ model, tokenizer, checkpoint: 'test-model', keyTokensDir: dir, options });
    assert.equal(keyTokensScored, totals.key_tokens);
    const segments = readJsonLines<SegmentRecord>(join(dir, SEGMENT_FILES.records));
    assert.equal(segments.length, totals.segments);
    assert.ok(totals.candidates_scored > 0);
    const S = keyTokenOptions(maxSeq).shortContext;
    for (const s of segments) {
      assert.ok(s.segment_start >= 1 && s.segment_start < s.segment_end && s.segment_end <= s.pos - S && s.segment_end - s.segment_start <= 6, JSON.stringify(s));
      assert.ok(s.gain >= options.margin && s.segment_text.length > 0);
    }
    const again = await findRelevantSegments({ model, tokenizer, checkpoint: 'test-model', keyTokensDir: dir, options });
    assert.equal(again.keyTokensScored, 0);
    assert.deepEqual(again.totals, totals);
  });

  test('a rerun with other settings is refused with one line naming the folder', async () => {
    const dir = join(work, 'resumed');
    await assert.rejects(
      findKeyTokens({ model, tokenizer, checkpoint: 'test-model', corpus, outDir: dir, options: keyTokenOptions(maxSeq, { topK: 3 }) }),
      (err: Error) => err.name === 'UserError' && err.message.includes(dir) && err.message.includes('K') && !err.message.includes('\n'),
    );
  });
});

describe('(d) relevant segments', () => {
  const maxSeq = 32;
  let model: LlamaModel;
  const tokens = randomTokens(75, 97, 5);
  const sentenceStarts = [1, 4, 9, 17, 20, 31, 38, 44, 52, 60, 66];
  const keyPos = 70;
  const options = segmentOptions(8, maxSeq, { segmentTokens: 10, reach: keyPos, batch: 64 });

  before(() => {
    model = contextSensitiveModel(97, maxSeq);
  });
  after(() => model.dispose());

  test('candidates: one per earlier sentence, whole sentences up to the target length, never reaching into the short context', async () => {
    const limit = keyPos - options.shortContext;
    const candidates = candidateSegments(sentenceStarts, keyPos, options);
    assert.deepEqual(candidates.map((c) => c.start), sentenceStarts.filter((s) => s < limit));
    assert.deepEqual(candidates.slice(0, 4), [
      { start: 1, end: 9 }, // two sentences, 8 tokens; a third would make 16
      { start: 4, end: 9 },
      { start: 9, end: 17 },
      { start: 17, end: 20 },
    ]);
    assert.deepEqual(candidates.at(-1), { start: 60, end: limit }); // cut at the short context
    for (const c of candidates) assert.ok(c.end <= limit && c.end - c.start <= options.segmentTokens && c.start < c.end);
    assert.deepEqual(candidateSegments(sentenceStarts, 20, options), [{ start: 1, end: 9 }, { start: 4, end: 12 }, { start: 9, end: 12 }]);
  });

  test('candidates reach back at most the window by default, so a recap only draws on what its writer could see', () => {
    const defaults = segmentOptions(8, maxSeq);
    assert.equal(defaults.reach, maxSeq);
    const near = candidateSegments(sentenceStarts, keyPos, defaults);
    assert.deepEqual(near.map((c) => c.start), [38, 44, 52, 60]);
    assert.ok(near.every((c) => c.start >= keyPos - maxSeq && c.end <= keyPos - 8));
    assert.throws(() => validateSegmentOptions(segmentOptions(8, maxSeq, { reach: 8 }), maxSeq), /--segment-reach 8 must exceed the short context/);
  });

  test('batched candidate scores equal one-at-a-time forwards, in one pass or split', async () => {
    const candidates = candidateSegments(sentenceStarts, keyPos, options);
    const before = tf.memory().numTensors;
    const search = (batch: number) => findRelevantSegmentsOf(model, tokens, sentenceStarts, [keyPos], { ...options, batch });
    const [one, four] = [await search(options.batch), await search(4)];
    assert.equal(tf.memory().numTensors, before);
    assert.equal(one.forwardPasses, 1);
    assert.equal(four.forwardPasses, Math.ceil((candidates.length + 1) / 4));
    const [batched, split] = [{ candidates: one.found[0].scores, baseline: one.found[0].baseline }, { candidates: four.found[0].scores }];
    assert.equal(batched.candidates.length, candidates.length);
    const shortContext = tokens.slice(keyPos - options.shortContext, keyPos);
    const alone = (prefix: number[]): number => lastTokenLogProbs(model, [[...prefix, ...shortContext]], [tokens[keyPos]])[0];
    assert.ok(Math.abs(batched.baseline - alone([])) < 1e-4);
    candidates.forEach((c, k) => {
      const expected = alone(tokens.slice(c.start, c.end));
      assert.ok(Math.abs(batched.candidates[k] - expected) < 1e-4, `candidate ${k}: ${batched.candidates[k]} vs ${expected}`);
      assert.ok(Math.abs(split.candidates[k] - batched.candidates[k]) < 1e-5);
    });
    const spread = Math.max(...batched.candidates) - Math.min(...batched.candidates);
    assert.ok(spread > 0.01, 'candidates should differ for this model');
  });

  test('the segment bench counts the key tokens, candidates and passes of the documents it scores', async () => {
    const o = segmentOptions(8, maxSeq, { segmentTokens: 10, batch: 3 });
    const before = tf.memory().numTensors;
    const figures = await measureSegmentThroughput(model, o, 100, 2, 3, 1);
    assert.equal(tf.memory().numTensors, before);
    // 100-token documents with a sentence every 20 tokens; key tokens at 32, 54 and 76, each reaching back 32 tokens.
    const starts = [0, 20, 40, 60, 80];
    const perKeyToken = [32, 54, 76].map((pos) => candidateSegments(starts, pos, o).length);
    assert.deepEqual(perKeyToken, [2, 1, 1]);
    assert.equal(figures.key_tokens, 6);
    assert.equal(figures.candidates_per_key_token, 4 / 3);
    assert.equal(figures.forward_passes, Math.ceil((2 * 7) / 3), 'both documents, 7 rows each, in one search pass of batches of 3');
    assert.ok(figures.cost_vs_forward > 0 && Number.isFinite(figures.cost_vs_forward) && figures.seconds_per_key_token > 0);
  });

  test('documents searched together give what each gets alone, in fewer passes', async () => {
    const others = [randomTokens(60, 97, 6), randomTokens(75, 97, 7)];
    const documents = [
      { tokens, sentenceStarts, keyPositions: [20, 40, keyPos] },
      { tokens: others[0], sentenceStarts: [1, 9, 17, 30, 41], keyPositions: [35, 55] },
      { tokens: others[1], sentenceStarts: [1, 12, 25, 38], keyPositions: [5, 50] },
    ];
    const o = { ...options, margin: -100, batch: 8 };
    const before = tf.memory().numTensors;
    const together = await findRelevantSegmentsOfDocuments(model, documents, o);
    const alone = await Promise.all(documents.map((d) => findRelevantSegmentsOf(model, d.tokens, d.sentenceStarts, d.keyPositions, o)));
    assert.equal(tf.memory().numTensors, before);
    assert.deepEqual(together.found, alone.map((a) => a.found));
    assert.ok(together.found[2][0].candidates === 0 && together.found[1][1].candidates > 0);
    // 22, 10 and 5 rows: 37 rows in 5 passes of 8 together, 3 + 2 + 1 alone.
    const rows = alone.map((a) => a.found.reduce((n, f) => n + (f.candidates > 0 ? f.candidates + 1 : 0), 0));
    assert.deepEqual(rows, [22, 10, 5]);
    assert.deepEqual([together.forwardPasses, alone.map((a) => a.forwardPasses)], [5, [3, 2, 1]]);
  });

  test("a document's key tokens packed into full forwards give what one key token per forward gives", async () => {
    const positions = [9, 20, 40, keyPos];
    const margin = -100;
    const before = tf.memory().numTensors;
    for (const batch of [options.batch, 7]) {
      const o = { ...options, margin, batch };
      const packed = await findRelevantSegmentsOf(model, tokens, sentenceStarts, positions, o);
      const alone = await Promise.all(positions.map((pos) => findRelevantSegmentsOf(model, tokens, sentenceStarts, [pos], o)));
      assert.deepEqual(packed.found, alone.map((a) => a.found[0]), `batch ${batch}`);
      const rows = alone.reduce((n, a) => n + (a.found[0].candidates > 0 ? a.found[0].candidates + 1 : 0), 0);
      assert.equal(packed.forwardPasses, Math.ceil(rows / batch));
      const unpacked = alone.reduce((n, a) => n + a.forwardPasses, 0);
      assert.ok(batch === options.batch ? packed.forwardPasses === 1 && unpacked === 3 : packed.forwardPasses <= unpacked, `${packed.forwardPasses} forward passes packed, ${unpacked} one key token at a time`);
    }
    assert.equal(tf.memory().numTensors, before);
    assert.deepEqual(await findRelevantSegmentsOf(model, tokens, sentenceStarts, [9], options), { found: [{ segment: null, candidates: 0, baseline: NaN, scores: new Float32Array(0) }], forwardPasses: 0 });
  });

  test('c* is the best candidate, kept only when its gain reaches the margin', async () => {
    const candidates = candidateSegments(sentenceStarts, keyPos, options);
    const search = async (pos: number, margin: number) => (await findRelevantSegmentsOf(model, tokens, sentenceStarts, [pos], { ...options, margin })).found[0];
    const { scores, baseline } = await search(keyPos, options.margin);
    const best = scores.indexOf(Math.max(...scores));
    const gain = scores[best] - baseline;
    const kept = await search(keyPos, gain - 1e-3);
    assert.deepEqual({ start: kept.segment?.start, end: kept.segment?.end }, candidates[best]);
    assert.ok(Math.abs(kept.segment!.gain - gain) < 1e-6);
    assert.equal((await search(keyPos, gain + 1e-3)).segment, null);
    assert.equal((await search(9, options.margin)).candidates, 0);
  });
});
