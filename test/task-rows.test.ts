/** Task rows made on the fly: answers weighted, prompts not, training pool and haystack only, the same rows on a resume. */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { recallDocument } from '../src/arl/recall-documents.ts';
import { readBrownDocuments } from '../src/data/brown.ts';
import { copyRow, DEFAULT_TASK_ROWS, TaskRows, validateTaskRowOptions } from '../src/data/task-rows.ts';
import { Haystack } from '../src/eval/ruler-haystack.ts';
import { generateRulerSample } from '../src/eval/ruler.ts';
import { entityPool, needlesIn } from '../src/eval/ruler-tasks.ts';
import { ADJECTIVES, NOUNS } from '../src/eval/ruler-words.ts';
import { comparePaired, wilsonInterval } from '../src/eval/paired-stats.ts';
import { selectBackend } from '../src/backend.ts';
import { makeConfig } from '../src/model/config.ts';
import { BUNDLED_TOKENIZER_PATH, Tokenizer } from '../src/tokenizer/sentencepiece.ts';
import { DEFAULT_TRAIN, train, type TrainOptions } from '../src/train/trainer.ts';
import { prepareTinyCorpus } from './helpers.ts';

let tokenizer: Tokenizer;
let haystack: Haystack;
const trainDocs = [...readBrownDocuments()].slice(0, 5);

before(async () => {
  tokenizer = await Tokenizer.load(BUNDLED_TOKENIZER_PATH);
  haystack = Haystack.fromDocuments(trainDocs);
});

test('a task row weighs its answers only, at the answer weight, and draws keys from the training pool', async () => {
  const rows = await TaskRows.open({ ...DEFAULT_TASK_ROWS, fraction: 1, tasks: ['niah_single'] }, tokenizer, 512, 3, haystack);
  for (let index = 0; index < 4; index++) {
    const { tokens, weights } = rows.row(index);
    assert.equal(tokens.length, 513);
    const weighted = [...weights.keys()].filter((i) => weights[i]! > 0);
    assert.ok(weighted.every((i) => weights[i] === DEFAULT_TASK_ROWS.answerWeight));
    const answers = tokenizer.decode(weighted.map((i) => tokens[i + 1]!)).trim().split(/\s+/);
    const text = tokenizer.decode(Array.from(tokens));
    assert.ok(answers.length >= 1);
    for (const value of answers) {
      assert.match(value, /^\d{7}$/);
      const needle = new RegExp(`magic numbers for ([a-z]+-[a-z]+) is: ${value}\\.`).exec(text);
      assert.ok(needle, `the needle of ${value} is in the row`);
      assert.equal(entityPool(needle[1]!), 'train');
      assert.equal(entityPool(value), 'train');
    }
    // Haystack sentences come from the documents given.
    const sentence = text.split('\n')[1]!.replace(/One of the special magic numbers for \S+ is: \d+\.\s*/g, '').slice(0, 40);
    assert.ok(trainDocs.some((d) => d.text.replace(/\s+/g, ' ').includes(sentence.replace(/\s+/g, ' '))), sentence);
  }
  assert.deepEqual(rows.row(2), rows.row(2));
  assert.notDeepEqual(rows.row(2).tokens, rows.row(3).tokens);
});

test('with haystack key words, task-row keys are two training-pool words of the haystack, and test samples refuse them', async () => {
  const rows = await TaskRows.open({ ...DEFAULT_TASK_ROWS, fraction: 1, tasks: ['niah_multikey'], keyWords: 'haystack' }, tokenizer, 512, 3, haystack);
  const keys = Array.from({ length: 4 }, (_, index) => needlesIn(tokenizer.decode(Array.from(rows.row(index).tokens))).map((n) => n.key)).flat();
  assert.ok(keys.length >= 8, `${keys.length} keys`);
  const lists = new Set([...ADJECTIVES, ...NOUNS]);
  const words = keys.flatMap((key) => key.split('-'));
  for (const word of words) {
    assert.ok(haystack.vocabulary.includes(word) && word.length >= 4, `${word} is a haystack word`);
    assert.equal(entityPool(word), 'train', word);
  }
  assert.ok(words.filter((w) => lists.has(w)).length < words.length / 4, 'mostly words outside the lists');
  assert.ok(new Set(words).size > words.length / 2, 'varied words');
  const test = { task: 'niah_multikey', lengthTokens: 400, seed: 1, split: 'test', count: 1, tokenizer, haystack, keyWords: 'haystack' } as const;
  assert.throws(() => generateRulerSample(test, 0), /training samples only/);
  assert.throws(() => validateTaskRowOptions({ ...DEFAULT_TASK_ROWS, keyWords: 'nope' as never }), /--task-key-words/);
});

test('a copy row is a span written twice, weighted on the repeat after its first token', () => {
  const text = Int32Array.from({ length: 9 }, (_, i) => 100 + i);
  const { tokens, weights } = copyRow(text, 8);
  assert.deepEqual([...tokens], [100, 101, 102, 103, 104, 100, 101, 102, 103]);
  // weights[i] is the weight of tokens[i + 1]: the repeat's 101, 102, 103, not its unannounced 100.
  assert.deepEqual([...weights], [0, 0, 0, 0, 0, 1, 1, 1]);
  assert.equal(copyRow(text, 7).tokens.length, 8);
  assert.deepEqual([...copyRow(text, 7).tokens], [100, 101, 102, 103, 100, 101, 102, 103]);
});

test('task-row options are checked', () => {
  assert.throws(() => validateTaskRowOptions({ ...DEFAULT_TASK_ROWS, fraction: 0.5, copyFraction: 0.6 }), /--copy-fraction/);
  assert.throws(() => validateTaskRowOptions({ ...DEFAULT_TASK_ROWS, fraction: 1.5 }), /--task-fraction/);
  assert.throws(() => validateTaskRowOptions({ ...DEFAULT_TASK_ROWS, answerWeight: 0, haystackWeight: 0 }), /--answer-weight/);
  assert.throws(() => validateTaskRowOptions({ ...DEFAULT_TASK_ROWS, tasks: ['nope' as never] }), /--task-names/);
});

// Training tests run on wasm: the pure-JS cpu backend takes about 40 s a step at this vocabulary.
test('training with task rows and copy rows resumes onto the same rows and losses', async () => {
  await selectBackend('wasm');
  const data = await prepareTinyCorpus();
  const modelConfig = makeConfig(null, { vocabSize: tokenizer.vocabSize, dim: 32, layers: 1, heads: 2, kvHeads: 1, maxSeq: 256 });
  const options = (out: string): TrainOptions => ({
    ...DEFAULT_TRAIN, data, out, steps: 4, batch: 4, seq: 256, warmup: 1, evalEvery: 0, saveEvery: 2, lr: 1e-2,
    taskRows: { ...DEFAULT_TASK_ROWS, fraction: 0.5, copyFraction: 0.25, haystack: 'brown' },
  });
  const setup = { modelConfig, tokenizerPath: BUNDLED_TOKENIZER_PATH };
  const straight = await train(options(mkdtempSync(join(tmpdir(), 'arl-task-'))), setup);
  straight.model.dispose();
  const out = mkdtempSync(join(tmpdir(), 'arl-task-'));
  let steps = 0;
  const first = await train(options(out), setup, { shouldStop: () => ++steps === 2 });
  first.model.dispose();
  const resumed = await train(options(out), setup);
  resumed.model.dispose();
  assert.deepEqual([...first.losses, ...resumed.losses], straight.losses);
});

test('an odd batch whose rounded task and copy rows add up to more than it holds still trains', async () => {
  await selectBackend('wasm');
  const data = await prepareTinyCorpus();
  const modelConfig = makeConfig(null, { vocabSize: tokenizer.vocabSize, dim: 32, layers: 1, heads: 2, kvHeads: 1, maxSeq: 256 });
  const out = mkdtempSync(join(tmpdir(), 'arl-task-'));
  const options: TrainOptions = {
    ...DEFAULT_TRAIN, data, out, steps: 1, batch: 3, seq: 256, warmup: 1, evalEvery: 0, saveEvery: 1,
    taskRows: { ...DEFAULT_TASK_ROWS, fraction: 0.5, copyFraction: 0.5, haystack: 'brown' },
  };
  const result = await train(options, { modelConfig, tokenizerPath: BUNDLED_TOKENIZER_PATH });
  result.model.dispose();
  assert.equal(result.losses.length, 1);
  assert.ok(Number.isFinite(result.losses[0]));
});

test('a recall document restates each of its needles at a paragraph start S to W-64 tokens later and asks about one at the end; keys are corpus words outside the RULER key lists', () => {
  const o = { haystack, tokenizer, window: 256, shortContext: 64, seed: 1 };
  const rulerKeyWords = new Set([...ADJECTIVES, ...NOUNS]);
  const keyWords: string[] = [];
  const needleCounts = new Set<number>();
  let made = 0;
  for (let index = 0; index < 12; index++) {
    const doc = recallDocument(o, index);
    if (!doc) continue;
    made++;
    const lines = doc.text.split('\n');
    const needles = [...doc.text.matchAll(/ One of the special magic numbers for (\S+) is: (\d{7})\./g)];
    needleCounts.add(needles.length);
    for (const needle of needles) {
      const [, key, value] = needle;
      const restated = lines.filter((l) => l.startsWith(`The special magic number for ${key} is ${value}.`));
      assert.equal(restated.length, 1, doc.text);
      const between = doc.text.slice(needle.index + needle[0].length, doc.text.indexOf(restated[0]!));
      const gap = tokenizer.encode(between).length;
      assert.ok(gap >= 64 - 4 && gap <= 256 - 64 + 4, `gap ${gap}`);
      assert.equal(entityPool(value!), 'train');
      for (const word of key!.split('-')) {
        assert.ok(!rulerKeyWords.has(word) && haystack.vocabulary.includes(word), word);
        keyWords.push(word);
      }
    }
    const question = /^What is the special magic number for (\S+) mentioned in the provided text\? .* is (\d{7})\.$/.exec(lines.at(-1)!);
    assert.ok(question && needles.some((n) => n[1] === question[1] && n[2] === question[2]), lines.at(-1));
  }
  assert.ok(made >= 8, `${made} of 12 documents made`);
  assert.ok(Math.max(...needleCounts) >= 3 && needleCounts.has(1), `needles per document: ${[...needleCounts]}`);
  assert.ok(new Set(keyWords).size >= 0.9 * keyWords.length, 'drawn from thousands of words, key words rarely repeat');
});

test('paired bootstrap: the interval covers the gain, and identical scores give a zero-width interval', () => {
  const base = Array.from({ length: 100 }, (_, i) => (i % 4 === 0 ? 1 : 0));
  const better = Array.from({ length: 100 }, (_, i) => (i % 2 === 0 ? 1 : 0));
  const c = comparePaired(better, base, { seed: 1 });
  assert.equal(c.n, 100);
  assert.ok(Math.abs(c.relative! - 1) < 1e-12);
  assert.ok(c.relative_ci95![0] < 1 && c.relative_ci95![1] > 1 && c.relative_ci95![0] > 0);
  assert.ok(c.difference_ci95[0] < 0.25 && c.difference_ci95[1] > 0.25);
  assert.deepEqual(comparePaired(base, base).difference_ci95, [0, 0]);
  assert.equal(comparePaired(better, base.map(() => 0)).relative, null);
});

test('Wilson interval: 0 of 300 is not [0, 0], and the interval holds the proportion', () => {
  const [low, high] = wilsonInterval(0, 300);
  assert.ok(low < 1e-12);
  assert.ok(high > 0.012 && high < 0.013, String(high));
  const [l2, h2] = wilsonInterval(240, 300);
  assert.ok(l2 < 0.8 && h2 > 0.8 && l2 > 0.74 && h2 < 0.85);
});
