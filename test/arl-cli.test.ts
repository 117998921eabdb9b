/** `arl keytokens` and `arl segments` end to end on a small random checkpoint, and their one-line errors. */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { assertUserError, makeTinyArlInputs, runArl, useCpu } from './helpers.ts';

/** The ARL commands run on the cpu backend (deterministic). */
const arl = (...args: string[]) => runArl(...args, '--backend', 'cpu');

const work = mkdtempSync(join(tmpdir(), 'arl-cli-arl-'));
const out = join(work, 'keytokens');
let checkpoint: string;
let corpus: string;

describe('arl keytokens / segments', () => {
  before(async () => {
    await useCpu();
    // window 64 tokens, so S = 16 and W = 48 by default.
    ({ checkpoint, corpus } = await makeTinyArlInputs(work));
  });

  test('keytokens writes key tokens and a summary, prints perplexity and LongPPL; segments follows', async () => {
    const r = await arl('keytokens', '--checkpoint', checkpoint, '--corpus', corpus, '--out', out);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /perplexity \d+\.\d+\s+LongPPL \d+\.\d+/);
    const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
    assert.equal(summary.documents, 3);
    assert.deepEqual([summary.S, summary.W, summary.K, summary.alpha, summary.beta], [16, 48, 8, 2, -2]);
    const keyTokens = readFileSync(join(out, 'keytokens.jsonl'), 'utf8').trim().split('\n').map((line) => JSON.parse(line));
    assert.equal(keyTokens.length, summary.key_tokens);
    for (const k of keyTokens) assert.deepEqual(Object.keys(k), ['doc', 'pos', 'token', 'piece', 'long_logprob', 'short_logprob', 'lsg']);
    // At most K per document, and (--per-sentence 1 by default) never two in one sentence.
    const documents = readFileSync(join(out, 'documents.jsonl'), 'utf8').trim().split('\n').map((line) => JSON.parse(line) as { doc: string; sentence_starts: number[] });
    for (const { doc, sentence_starts: starts } of documents) {
      const sentences = keyTokens.filter((k) => k.doc === doc).map((k) => starts.filter((start) => start <= k.pos).length);
      assert.ok(sentences.length >= 1 && sentences.length <= 8, `${sentences.length} key tokens`);
      assert.equal(new Set(sentences).size, sentences.length, `one key token per sentence: ${sentences}`);
    }
    const unlimited = await arl('keytokens', '--checkpoint', checkpoint, '--corpus', corpus, '--out', join(work, 'per-sentence-0'), '--per-sentence', '0');
    assert.equal(unlimited.code, 0, unlimited.stderr);
    assert.equal(JSON.parse(readFileSync(join(work, 'per-sentence-0', 'summary.json'), 'utf8')).key_tokens, 3 * 8, 'without the limit, K per document');

    const s = await arl('segments', '--checkpoint', checkpoint, '--keytokens', out, '--margin', '0');
    assert.equal(s.code, 0, s.stderr);
    assert.match(s.stdout, new RegExp(`kept a segment for \\d+ of ${keyTokens.length} key tokens`));
    assert.ok(existsSync(join(out, 'segments.jsonl')));
  });

  test('documents too short for a long-short gap: a clear message, not a crash', async () => {
    const shortCorpus = join(work, 'short.jsonl');
    writeFileSync(shortCorpus, [JSON.stringify({ text: 'Far too short.' }), JSON.stringify({ text: texts30() })].join('\n'));
    const r = await arl('keytokens', '--checkpoint', checkpoint, '--corpus', shortCorpus, '--out', join(work, 'short'));
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /1 skipped, shorter than S\+1 = 17 tokens/);
    assert.match(r.stdout, /no key tokens: only tokens past S\+W = 64 have more long than short context \(longer documents, or a smaller --short or --chunk, give more\)\n/);
  });

  test('bad input: one line on stderr and exit code 2', async () => {
    assertUserError(await arl('keytokens', '--checkpoint', checkpoint, '--corpus', join(work, 'missing.jsonl'), '--out', join(work, 'x')), /missing\.jsonl: cannot read corpus/);
    assertUserError(await arl('keytokens', '--checkpoint', join(work, 'nope'), '--corpus', corpus, '--out', join(work, 'x')), /nope: no such checkpoint/);
    assertUserError(await arl('keytokens', '--checkpoint', checkpoint, '--corpus', corpus, '--out', join(work, 'x'), '--short', '40', '--chunk', '40'), /--short 40 \+ --chunk 40 exceeds the model's window of 64 tokens/);
    assertUserError(await arl('segments', '--checkpoint', checkpoint, '--keytokens', join(work, 'none')), /none: no summary\.json; run `arl keytokens/);
  });
});

/** About 30 words: longer than S + 1 tokens, shorter than one S + W chunk. */
function texts30(): string {
  return 'The jury said it did find that many of the laws were outmoded or inadequate and often ambiguous, and it urged that the next legislature act on them.';
}
