/** ARL step 4: recaps spliced into documents (insertion point, sharing, cap, ids, text round trip), the mix, and loss on recap tokens. */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { AUGMENT_FILES, augmentDocuments, type AugmentedRecord, DEFAULT_AUGMENT, RECAP_FILE } from '../src/arl/augment.ts';
import { tokenizeDocument } from '../src/arl/document.ts';
import { KEY_TOKEN_FILES } from '../src/arl/key-tokens.ts';
import { SEGMENT_FILES } from '../src/arl/relevant-segment.ts';
import { TokenLoader } from '../src/data/loader.ts';
import { makeConfig } from '../src/model/config.ts';
import { LlamaModel } from '../src/model/llama.ts';
import { BUNDLED_TOKENIZER_PATH, Tokenizer } from '../src/tokenizer/sentencepiece.ts';
import { targetLogProbs } from '../src/ops/cross-entropy.ts';
import { languageModelLoss } from '../src/train/loss.ts';
import { DEFAULT_TRAIN, train } from '../src/train/trainer.ts';
import { growVocabulary } from '../src/arl/continued-pretraining.ts';
import { saveCheckpoint } from '../src/io/checkpoint.ts';
import { assertUserError, prepareTinyCorpus, runArl, tf, useCpu } from './helpers.ts';

let tokenizer: Tokenizer;
before(async () => {
  await useCpu();
  tokenizer = await Tokenizer.load(BUNDLED_TOKENIZER_PATH);
});

const SENTENCES = [
  'The jury met on Monday.',
  ' It heard from the mayor about the new budget.',
  ' The budget was large.',
  '\n\nLater that week the council voted.',
  ' Most members agreed with the mayor.',
  ' The vote was close, and the mayor thanked the jury.',
];

interface Fixture {
  dir: string;
  tokens: number[];
  starts: number[];
}

/**
 * A step 1-3 folder by hand: documents `d0`..`d{n-1}` with the same six sentences, and recaps given
 * per document as [segment sentence, key positions (as [sentence, offset in it]), gain per key token, text].
 */
function makeFixture(recaps: [number, [number, number][], number, string][], documents = 1): Fixture {
  const dir = mkdtempSync(join(tmpdir(), 'arl-augment-'));
  const { tokens, sentenceStarts: starts } = tokenizeDocument(SENTENCES.join(''), tokenizer);
  const docs = Array.from({ length: documents }, (_, k) => ({ doc: `d${k}`, tokens, sentence_starts: starts, skipped_short: false, tokens_scored: 0, long_logprob_sum: 0, key_tokens: 0, key_long_logprob_sum: 0 }));
  writeFileSync(join(dir, KEY_TOKEN_FILES.documents), docs.map((d) => JSON.stringify(d)).join('\n'));
  writeFileSync(join(dir, KEY_TOKEN_FILES.summary), JSON.stringify({ tokenizer: tokenizer.sha256, checkpoint: null, S: 4 }));
  const segmentLines: string[] = [];
  const recapLines: string[] = [];
  for (const { doc } of docs) {
    for (const [sentence, keys, gain, text] of recaps) {
      const segment = { doc, segment_start: starts[sentence], segment_end: starts[sentence + 1] };
      const positions = keys.map(([s, offset]) => starts[s] + offset);
      for (const pos of positions) segmentLines.push(JSON.stringify({ ...segment, pos, gain }));
      recapLines.push(JSON.stringify({ ...segment, positions, segment_text: '', recap: text, recapper: 'extractive', model: 'extractive', cache_key: 'x' }));
    }
  }
  writeFileSync(join(dir, SEGMENT_FILES.records), segmentLines.join('\n'));
  writeFileSync(join(dir, RECAP_FILE), recapLines.join('\n'));
  return { dir, tokens, starts };
}

function readRecords(dir: string): AugmentedRecord[] {
  return readFileSync(join(dir, AUGMENT_FILES.records), 'utf8').trim().split('\n').map((line) => JSON.parse(line));
}

/** All tokens of a split of a prepared folder, in order. */
function splitTokens(dir: string, split: 'train' | 'val'): number[] {
  const loader = TokenLoader.open(dir, split);
  const { x, y } = loader.nextBatch(1, loader.totalTokens - 1);
  return [x[0], ...y];
}

describe('arl augment', () => {
  test('a recap goes before the sentence of its first key token; key tokens sharing it share it; markers are single ids; text round-trips', async () => {
    // One recap of sentence 1, used by key tokens in sentences 4 and 5: inserted once, before sentence 4.
    const f = makeFixture([[1, [[4, 2], [5, 1]], 1.5, 'The mayor spoke about the budget.']]);
    const totals = await augmentDocuments({ tokenizer, keyTokensDir: f.dir, options: { ...DEFAULT_AUGMENT, mix: 1, valFraction: 0 } });
    assert.equal(totals.recaps_inserted, 1);
    const [record] = readRecords(f.dir);
    const recapIds = tokenizer.encode('The mayor spoke about the budget.');
    const at = f.starts[4];
    const expected = [...f.tokens.slice(0, at), tokenizer.recapOpenId, ...recapIds, tokenizer.recapCloseId, ...f.tokens.slice(at)];
    assert.equal(tokenizer.recapOpenId, 3);
    assert.equal(tokenizer.recapCloseId, 4);
    assert.deepEqual(record.recaps.map((r) => r.at), [at]);
    assert.deepEqual(tokenizer.encode(record.text), expected.slice(1), 'the text encodes back to the augmented tokens');
    assert.equal(tokenizer.decode(expected), record.text);
    assert.ok(record.text.includes('the council voted.<recap> The mayor spoke about the budget.</recap> Most members'), record.text);
    const shards = splitTokens(join(f.dir, AUGMENT_FILES.prepared), 'train');
    assert.deepEqual(shards, [...expected, tokenizer.eosId]);
    assert.equal(shards.filter((id) => id === 3).length, 1);
    assert.equal(shards.filter((id) => id === 4).length, 1);
  });

  test('a recap is trained only in rows that hold its segment: the shards carry each token\'s lookback, the loader weighs the rest 0', async () => {
    const f = makeFixture([[1, [[4, 2]], 1, 'The mayor spoke about the budget.']]);
    const totals = await augmentDocuments({ tokenizer, keyTokensDir: f.dir, options: { ...DEFAULT_AUGMENT, mix: 1, valFraction: 0 } });
    const prepared = join(f.dir, AUGMENT_FILES.prepared);
    const at = f.starts[4];
    const span = tokenizer.encode('The mayor spoke about the budget.').length + 2;
    const lookback = Array.from(new Uint16Array(new Uint8Array(readFileSync(join(prepared, 'train_00000.lookback.bin'))).buffer));
    const expected = lookback.map((_, i) => (i >= at && i < at + span ? i - f.starts[1] : 0));
    assert.deepEqual(lookback, expected, 'recap tokens, markers included, look back to the segment start; the rest 0');
    assert.equal(totals.recap_reach.median, at + span - 1 - f.starts[1]);
    // Rows of `seq` tokens from the start: the second row starts after the segment start but holds the recap.
    const seq = Math.max(f.starts[1] + 1, Math.ceil((at + span) / 2));
    assert.ok(seq <= at, 'the fixture leaves room for a row boundary between the segment and its recap');
    const loader = TokenLoader.open(prepared, 'train');
    const { w } = loader.nextBatch(2, seq);
    assert.ok(w, 'data with lookbacks gives weights');
    const masked = [...w].flatMap((weight, k) => (weight === 0 ? [k + 1] : [])); // target k is token k + 1 of the stream
    assert.deepEqual(masked, Array.from({ length: span }, (_, i) => at + i), 'the recap is masked in the row that starts after its segment, nothing else');
    const whole = TokenLoader.open(prepared, 'train').nextBatch(1, loader.totalTokens - 1);
    assert.ok(whole.w!.every((weight) => weight === 1), 'a row that holds the segment trains the whole recap');
  });

  test('the cap keeps the highest-gain recaps; a recap that would precede its own segment is dropped; markers inside recap text are removed', async () => {
    const f = makeFixture([
      [0, [[2, 1]], 0.6, 'low gain'],
      [1, [[3, 3], [4, 1]], 0.5, 'two keys: total gain 1.0'],
      [2, [[5, 2]], 2.0, 'high <recap>gain</recap>'],
      [3, [[3, 5]], 9.0, 'segment in the key sentence itself'],
    ]);
    const totals = await augmentDocuments({ tokenizer, keyTokensDir: f.dir, options: { ...DEFAULT_AUGMENT, maxRecapsPerDoc: 2, mix: 1, valFraction: 0 } });
    assert.equal(totals.recaps_read, 4);
    assert.equal(totals.recaps_dropped_no_boundary, 1);
    assert.equal(totals.recaps_dropped_over_cap, 1);
    const [record] = readRecords(f.dir);
    assert.deepEqual(record.recaps.map((r) => r.recap), ['two keys: total gain 1.0', 'high gain']);
    assert.deepEqual(record.recaps.map((r) => r.at), [f.starts[3], f.starts[5]]);
    assert.deepEqual(tokenizer.encode(record.text).filter((id) => id === 3 || id === 4), [3, 4, 3, 4]);
  });

  test('--mix: the share of documents written with their recaps; seeded, and the same output on a rerun', async () => {
    const f = makeFixture([[1, [[4, 2]], 1, 'A recap.']], 8);
    const options = { ...DEFAULT_AUGMENT, mix: 0.5, valFraction: 0 };
    const totals = await augmentDocuments({ tokenizer, keyTokensDir: f.dir, options });
    assert.equal(totals.documents, 8);
    assert.equal(totals.augmented_documents, 4);
    const records = readRecords(f.dir);
    assert.equal(records.length, 8);
    assert.equal(records.filter((r) => r.in_shards).length, 4);
    const prepared = join(f.dir, AUGMENT_FILES.prepared);
    const shards = splitTokens(prepared, 'train');
    assert.equal(shards.filter((id) => id === tokenizer.recapOpenId).length, 4);
    assert.equal(shards.filter((id) => id === tokenizer.bosId).length, 8);
    const first = readFileSync(join(prepared, 'train_00000.bin'));
    const firstRecords = readFileSync(join(f.dir, AUGMENT_FILES.records), 'utf8');
    await augmentDocuments({ tokenizer, keyTokensDir: f.dir, options });
    assert.deepEqual(readFileSync(join(prepared, 'train_00000.bin')), first);
    assert.equal(readFileSync(join(f.dir, AUGMENT_FILES.records), 'utf8'), firstRecords);
    const chosen = (records: AugmentedRecord[]) => records.filter((r) => r.in_shards).map((r) => r.doc).join();
    const otherSeeds = [];
    for (const seed of [1, 2, 3]) {
      await augmentDocuments({ tokenizer, keyTokensDir: f.dir, options: { ...options, seed } });
      otherSeeds.push(chosen(readRecords(f.dir)));
    }
    assert.ok(otherSeeds.some((c) => c !== chosen(records)), 'the seed picks the augmented documents');
  });

  test('the training loss covers recap tokens: no mask drops the markers or the recap', async () => {
    const model = new LlamaModel(makeConfig(null, { vocabSize: 64, dim: 16, layers: 1, heads: 2, kvHeads: 1, maxSeq: 16 }), 5);
    const x = Int32Array.from([1, 10, 11, 3, 20, 21, 4, 12]);
    const y = Int32Array.from([10, 11, 3, 20, 21, 4, 12, 13]);
    const [loss, perToken] = tf.tidy(() => {
      const logits = tf.reshape(model.logits(tf.tensor2d(x, [1, 8], 'int32')), [8, -1]) as tf.Tensor2D;
      return [languageModelLoss(model, x, y, 1, 8).dataSync()[0], targetLogProbs(logits, tf.tensor1d(y, 'int32')).dataSync()];
    });
    const meanNll = -Array.from(perToken).reduce((a, b) => a + b, 0) / 8;
    assert.ok(Math.abs(loss - meanNll) < 1e-5, `loss ${loss} is the mean over all 8 targets, recap ones included (${meanNll})`);
    model.dispose();
  });

  test('continued pretraining from a model whose tokenizer lacks the markers: the vocabulary grows by them, new rows the mean', async () => {
    const small = new LlamaModel(makeConfig(null, { vocabSize: tokenizer.vocabSize - 2, dim: 16, layers: 1, heads: 2, kvHeads: 1, maxSeq: 32 }), 5);
    const embedding = small.embedding.weight.read().arraySync() as number[][];
    const grown = growVocabulary(small, tokenizer.vocabSize);
    const rows = grown.embedding.weight.read().arraySync() as number[][];
    assert.deepEqual(rows.slice(0, -2), embedding);
    const mean = embedding[0].map((_, j) => embedding.reduce((acc, row) => acc + row[j], 0) / embedding.length);
    for (const row of rows.slice(-2)) assert.ok(row.every((v, j) => Math.abs(v - mean[j]) < 1e-6));
    const init = join(mkdtempSync(join(tmpdir(), 'arl-cpt-')), 'init');
    const base = new LlamaModel(small.config, 5);
    await saveCheckpoint(init, base, BUNDLED_TOKENIZER_PATH);
    base.dispose();
    const data = await prepareTinyCorpus(3);
    const result = await train({ ...DEFAULT_TRAIN, data, out: join(init, '..', 'run'), steps: 1, batch: 1, seq: 16, evalEvery: 0 }, { init, tokenizerPath: BUNDLED_TOKENIZER_PATH });
    assert.equal(result.model.config.vocabSize, tokenizer.vocabSize);
    result.model.dispose();
    grown.dispose();
  });

  test('bad input: one line naming the file', async () => {
    const f = makeFixture([[1, [[4, 2]], 1, 'A recap.']]);
    const run = { tokenizer, keyTokensDir: f.dir, options: DEFAULT_AUGMENT };
    writeFileSync(join(f.dir, RECAP_FILE), `${JSON.stringify({ doc: 'd0', segment_start: 1, segment_end: 5, positions: [], recap: 'x' })}\n`);
    await assert.rejects(augmentDocuments(run), /recaps\.jsonl:1: field "positions" must be a non-empty ascending array/);
    await assert.rejects(augmentDocuments({ ...run, options: { ...DEFAULT_AUGMENT, mix: 2 } }), /--mix must be in \[0, 1\]/);
    writeFileSync(join(f.dir, RECAP_FILE), `${JSON.stringify({ doc: 'nope', segment_start: 1, segment_end: 5, positions: [9], recap: 'x' })}\n`);
    assertUserError(await runArl('augment', '--keytokens', f.dir), /recaps\.jsonl:1: document "nope" is not in documents\.jsonl/);
    assertUserError(await runArl('augment', '--keytokens', join(f.dir, 'missing')), /no summary\.json; run `arl keytokens/);
  });
});
