/**
 * Running models in evaluation: LongPPL with the evaluated model or another as evaluator, head + tail prompt
 * truncation, resumable predictions, and the arl eval --corpus / ruler eval / longbench --checkpoint commands.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { tokenizeDocument } from '../src/arl/document.ts';
import { findKeyTokens, keyTokenOptions, scoreDocument } from '../src/arl/key-tokens.ts';
import { readJsonLines } from '../src/io/jsonl.ts';
import { readBrownDocuments } from '../src/data/brown.ts';
import { evaluateLongPpl } from '../src/eval/longppl.ts';
import { type Answerer, headTailIds, PREDICTION_FILES, writePredictions } from '../src/eval/predict.ts';
import { splitRulerPrompt } from '../src/eval/ruler-eval.ts';
import { splitLongBenchPrompt, buildLongBenchPrompt } from '../src/eval/longbench.ts';
import { saveCheckpoint } from '../src/io/checkpoint.ts';
import { UserError } from '../src/io/errors.ts';
import { makeConfig } from '../src/model/config.ts';
import { LlamaModel } from '../src/model/llama.ts';
import { BUNDLED_TOKENIZER_PATH, Tokenizer } from '../src/tokenizer/sentencepiece.ts';
import { assertUserError, REPO_ROOT, runArl, tf, useCpu } from './helpers.ts';

const work = mkdtempSync(join(tmpdir(), 'arl-eval-run-'));
const corpus = join(work, 'docs.jsonl');
let tokenizer: Tokenizer;
let modelA: LlamaModel;
let modelB: LlamaModel;

/** A random model with weights scaled up, so log-probs depend on the context (see arl-keytokens.test.ts). */
function sharpModel(seed: number): LlamaModel {
  const model = new LlamaModel(makeConfig(null, { vocabSize: tokenizer.vocabSize, dim: 16, layers: 1, heads: 2, kvHeads: 1, hiddenDim: 32, maxSeq: 32 }), seed);
  for (const { name, variable } of model.namedWeights()) {
    if (!name.endsWith('norm.weight')) tf.tidy(() => void variable.write(tf.mul(variable.read(), 20)));
  }
  return model;
}

before(async () => {
  await useCpu();
  tokenizer = await Tokenizer.load(BUNDLED_TOKENIZER_PATH);
  const texts: string[] = [];
  for (const doc of readBrownDocuments()) {
    texts.push(doc.text.slice(0, 500));
    if (texts.length === 2) break;
  }
  writeFileSync(corpus, texts.map((text) => `${JSON.stringify({ text })}\n`).join(''));
  modelA = sharpModel(1);
  modelB = sharpModel(2);
});

after(() => {
  modelA.dispose();
  modelB.dispose();
});

describe('LongPPL', () => {
  // LongPPL counts every token; ARL's limit of key tokens per sentence is off so that both select alike.
  const options = () => keyTokenOptions(32, { select: 'topk', topK: 4, batch: 4, perSentence: 0 });

  test('with the model as its own evaluator it matches the ARL key-token totals', async () => {
    const report = await evaluateLongPpl({ model: modelA, tokenizer, corpus, options: options() });
    const { summary } = await findKeyTokens({ model: modelA, tokenizer, checkpoint: 'a', corpus, outDir: join(work, 'kt-a'), options: options() });
    assert.equal(report.documents, 2);
    assert.equal(report.tokens_scored, summary.tokens_scored);
    assert.equal(report.key_tokens, summary.key_tokens);
    assert.ok(report.key_tokens > 0);
    assert.ok(Math.abs(report.perplexity! / summary.perplexity! - 1) < 1e-5, `${report.perplexity} vs ${summary.perplexity}`);
    assert.ok(Math.abs(report.longppl! / summary.longppl! - 1) < 1e-5, `${report.longppl} vs ${summary.longppl}`);
  });

  test('another evaluator chooses the key tokens; the evaluated model gives the log-probs', async () => {
    const before = tf.memory().numTensors;
    const self = await evaluateLongPpl({ model: modelA, tokenizer, corpus, options: options() });
    const byB = await evaluateLongPpl({ model: modelA, evaluator: modelB, tokenizer, corpus, options: options() });
    const bSelf = await evaluateLongPpl({ model: modelB, tokenizer, corpus, options: options() });
    assert.equal(tf.memory().numTensors, before);
    // Perplexity is the evaluated model's whatever the evaluator; the key tokens are the evaluator's.
    assert.ok(Math.abs(byB.perplexity! / self.perplexity! - 1) < 1e-5);
    assert.equal(byB.key_tokens, bSelf.key_tokens);
    // Model A's log-probs at B's key positions, computed here straight from the dual-pass scores.
    const { tokens } = tokenizeDocument(readFileSync(corpus, 'utf8').split('\n').map((l) => l && JSON.parse(l).text)[0], tokenizer);
    assert.ok(tokens.length > 32);
    const ktB = await findKeyTokens({ model: modelB, tokenizer, checkpoint: 'b', corpus, outDir: join(work, 'kt-b'), options: options() });
    const keyLines = readJsonLines<{ doc: string; pos: number }>(join(work, 'kt-b', 'keytokens.jsonl'));
    const docs = readJsonLines<{ doc: string; tokens: number[] }>(join(work, 'kt-b', 'documents.jsonl'));
    let nll = 0;
    for (const doc of docs) {
      const long = (await scoreDocument(modelA, doc.tokens, options())).long;
      for (const k of keyLines.filter((l) => l.doc === doc.doc)) nll -= long[k.pos]!;
    }
    assert.equal(keyLines.length, ktB.summary.key_tokens);
    assert.ok(Math.abs(byB.longppl! / Math.exp(nll / keyLines.length) - 1) < 1e-5, `${byB.longppl} vs ${Math.exp(nll / keyLines.length)}`);
  });

  test('models with different vocabularies are refused', async () => {
    const other = new LlamaModel(makeConfig(null, { vocabSize: 64, dim: 16, layers: 1, heads: 2, maxSeq: 32 }), 3);
    try {
      await assert.rejects(evaluateLongPpl({ model: modelA, evaluator: other, tokenizer, corpus, options: options() }), (err: unknown) => err instanceof UserError && /share one tokenizer/.test(err.message));
    } finally {
      other.dispose();
    }
  });
});

describe('prompts and predictions', () => {
  test('head + tail truncation keeps the first and last halves of the budget', () => {
    const ids = Array.from({ length: 10 }, (_, i) => i);
    assert.deepEqual(headTailIds(ids, 20), { ids, truncated: false });
    assert.deepEqual(headTailIds(ids, 5), { ids: [0, 1, 7, 8, 9], truncated: true });
    assert.deepEqual(headTailIds(ids, 4), { ids: [0, 1, 8, 9], truncated: true });
  });

  test('benchmark prompts split into context and question and join back', () => {
    const ruler = 'Some text.\nmore text\nWhat is the number? The number is';
    assert.deepEqual(splitRulerPrompt(ruler), { context: 'Some text.\nmore text\n', question: 'What is the number? The number is' });
    const record = { dataset: 'hotpotqa', context: 'Passage one.', input: 'Who?' };
    const { context, question } = splitLongBenchPrompt(record);
    assert.equal(context + question, buildLongBenchPrompt(record));
    assert.ok(context.endsWith('Passage one.'));
    assert.ok(question.includes('Question: Who?'));
  });

  test('a rerun answers only the items an interrupted run left, and refuses other settings', async () => {
    const dir = join(work, 'preds');
    const items = ['a', 'b', 'c'].map((key) => ({ key, prompt: { context: `${key} `, question: '?' }, maxNewTokens: 4, fields: { id: key } }));
    const asked: string[] = [];
    const failingAt = (key: string): Answerer => async ({ context }) => {
      asked.push(context);
      if (context.startsWith(key)) throw new Error('interrupted');
      return { pred: context.toUpperCase(), extra: { note: 1 } };
    };
    const run = (answer: Answerer, settings = { checkpoint: 'x', mode: 'plain' }) => writePredictions({ items, answer, outDir: dir, settings, stopAtNewline: true });
    await assert.rejects(run(failingAt('b')), /interrupted/);
    assert.deepEqual(asked, ['a ', 'b ']);
    asked.length = 0;
    const file = await run(failingAt('z'));
    assert.deepEqual(asked, ['b ', 'c ']);
    const lines = readJsonLines<{ id: string; pred: string; note: number }>(file);
    assert.deepEqual(lines.map((l) => [l.id, l.pred, l.note]), [['a', 'A ', 1], ['b', 'B ', 1], ['c', 'C ', 1]]);
    await assert.rejects(run(failingAt('z'), { checkpoint: 'y', mode: 'plain' }), (err: unknown) => err instanceof UserError && /checkpoint "x", not "y"/.test(err.message));
    assert.ok(!existsSync(join(dir, `${PREDICTION_FILES.records}.partial`)));
  });
});

describe('commands that run a model', () => {
  let checkpoint: string;
  let rulerData: string;
  before(async () => {
    checkpoint = join(work, 'ckpt');
    await saveCheckpoint(checkpoint, modelA, BUNDLED_TOKENIZER_PATH);
    rulerData = join(work, 'ruler.jsonl');
    const r = await runArl('ruler', 'generate', '--task', 'niah_single', 'variable_tracking', '--length', '220', '--count', '2', '--out', rulerData);
    assert.equal(r.code, 0, r.stderr);
  });

  test('arl eval --corpus reports perplexity and LongPPL (a summary, JSON with --json), with another --evaluator too', async () => {
    const [self, other] = await Promise.all([
      runArl('eval', '--backend', 'cpu', '--checkpoint', checkpoint, '--corpus', corpus, '--select', 'topk', '--top-k', '4', '--json'),
      runArl('eval', '--backend', 'cpu', '--checkpoint', checkpoint, '--corpus', corpus, '--select', 'topk', '--top-k', '4', '--evaluator', checkpoint, '--max-docs', '1'),
    ]);
    assert.equal(self.code, 0, self.stderr);
    assert.equal(other.code, 0, other.stderr);
    assert.equal(self.stdout.trim().split('\n').length, 1, self.stdout);
    const a = JSON.parse(self.stdout);
    assert.deepEqual(Object.keys(a), ['checkpoint', 'evaluator', 'corpus', 'S', 'W', 'long_stride', 'select', 'K', 'alpha', 'beta', 'documents', 'tokens_scored', 'key_tokens', 'loss', 'perplexity', 'longppl']);
    assert.equal(a.documents, 2);
    assert.ok(a.perplexity > 1 && a.longppl > 1);
    assert.equal(a.key_tokens, 8);
    assert.throws(() => JSON.parse(other.stdout));
    assert.match(other.stdout, new RegExp(`^model +${checkpoint}$`, 'm'));
    assert.match(other.stdout, new RegExp(`^data +${corpus} \\(1 documents\\)$`, 'm'));
    assert.match(other.stdout, /^tokens scored +\d+$/m);
    assert.match(other.stdout, /^perplexity +\d+\.\d\d \(loss \d+\.\d{4} nats\/token\)$/m);
    assert.match(other.stdout, /^LongPPL +\d+\.\d\d over 4 key tokens \(--select topk\)$/m);
  });

  test('arl ruler eval and arl longbench --checkpoint write predictions and score them', async () => {
    const [ruler, longbench] = await Promise.all([
      runArl('ruler', 'eval', '--backend', 'cpu', '--checkpoint', checkpoint, '--data', rulerData, '--pred-dir', join(work, 'ruler-preds')),
      runArl('longbench', '--backend', 'cpu', '--checkpoint', checkpoint, '--data', join(REPO_ROOT, 'data', 'longbench-sample', 'data.jsonl'), '--pred-dir', join(work, 'lb-preds')),
    ]);
    assert.equal(ruler.code, 0, ruler.stderr);
    assert.match(ruler.stdout, /^niah_single\s+string_match_all\s+2\s+\d+\.\d\d$/m);
    assert.match(ruler.stdout, /^average\s+\d+\.\d\d$/m);
    const preds = readJsonLines<{ task: string; index: number; pred: string }>(join(work, 'ruler-preds', 'predictions.jsonl'));
    assert.deepEqual(preds.map((p) => `${p.task}#${p.index}`).sort(), ['niah_single#0', 'niah_single#1', 'variable_tracking#0', 'variable_tracking#1']);
    assert.ok(preds.every((p) => typeof p.pred === 'string' && !p.pred.includes('\n')));
    assert.ok(existsSync(join(work, 'ruler-preds', 'scores.json')));
    assert.equal(longbench.code, 0, longbench.stderr);
    assert.match(longbench.stdout, /^hotpotqa\s+qa_f1_score\s+2\s/m);
    assert.equal(readJsonLines(join(work, 'lb-preds', 'predictions.jsonl')).length, 9);
  });

  test('bad input: one line on stderr, exit code 2', async () => {
    const results = await Promise.all([
      runArl('ruler', 'eval', '--data', rulerData, '--pred-dir', join(work, 'x')),
      runArl('ruler', 'eval', '--checkpoint', checkpoint, '--data', rulerData, '--pred-dir', join(work, 'y'), '--recap-agent', '--lift', '--backend', 'cpu'),
      runArl('eval', '--checkpoint', checkpoint, '--evaluator', checkpoint),
      runArl('longbench', '--data', join(REPO_ROOT, 'data', 'longbench-sample', 'data.jsonl'), '--checkpoint', checkpoint, '--backend', 'cpu'),
    ]);
    assertUserError(results[0]!, /needs --checkpoint CKPT/);
    assertUserError(results[1]!, /--recap-agent and --lift are two different methods/);
    assertUserError(results[2]!, /--evaluator needs --corpus/);
    assertUserError(results[3]!, /needs --pred-dir DIR/);
  });
});
