/** LongBench/RULER metrics against hand-computed cases, LongBench file handling, and `arl longbench` end to end. */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import {
  aggregateLongBench,
  buildLongBenchPrompt,
  datasetName,
  LONGBENCH_DATASETS,
  readLongBench,
  scoreLongBenchExample,
  scoreLongBenchFiles,
} from '../src/eval/longbench.ts';
import {
  classificationScore,
  codeSimScore,
  countScore,
  fuzzRatio,
  normalizeAnswer,
  normalizeZhAnswer,
  pythonRound,
  qaF1Score,
  qaF1ZhScore,
  retrievalScore,
  retrievalZhScore,
  rougeScore,
  rougeZhScore,
  sequenceMatcherRatio,
  stringMatchAll,
  stringMatchPart,
} from '../src/eval/metrics.ts';
import { UserError } from '../src/io/errors.ts';
import { REPO_ROOT, runArl } from './helpers.ts';

const SAMPLE_DATA = join(REPO_ROOT, 'data', 'longbench-sample', 'data.jsonl');
const SAMPLE_PREDICTIONS = join(REPO_ROOT, 'data', 'longbench-sample', 'predictions.jsonl');
const work = mkdtempSync(join(tmpdir(), 'arl-eval-metrics-'));

function close(actual: number, expected: number, tolerance = 1e-12): void {
  assert.ok(Math.abs(actual - expected) <= tolerance, `${actual} != ${expected}`);
}

function writeLines(name: string, lines: readonly unknown[]): string {
  const path = join(work, name);
  writeFileSync(path, lines.map((line) => (typeof line === 'string' ? line : JSON.stringify(line))).join('\n') + '\n');
  return path;
}

async function rejectsWithUserError(promise: Promise<unknown>, pattern: RegExp): Promise<void> {
  await assert.rejects(promise, (err: Error) => {
    assert.ok(err instanceof UserError, `${err.name}: ${err.message}`);
    assert.match(err.message, pattern);
    return true;
  });
}

describe('answer normalization', () => {
  test('normalize_answer: lowercase, no ASCII punctuation, articles dropped, whitespace collapsed', () => {
    // "The  Eiffel-Tower, in PARIS!" -> lower -> drop punctuation: "the  eiffeltower in paris" -> "the" -> " " -> collapse
    assert.equal(normalizeAnswer('The  Eiffel-Tower, in PARIS!'), 'eiffeltower in paris');
    assert.equal(normalizeAnswer('an apple a day'), 'apple day');
    // Python's \b is Unicode-aware: the "a" in "éa" is inside a word and stays (JavaScript's ASCII \b would drop it).
    assert.equal(normalizeAnswer('éa b'), 'éa b');
    // Python's str.split() does not split on U+FEFF but does on U+3000 and \x1c.
    assert.equal(normalizeAnswer('x\uFEFFy z\u3000w\x1cv'), 'x\uFEFFy z w v');
  });

  test('normalize_zh_answer: lowercase, no ASCII or Chinese punctuation, no whitespace', () => {
    assert.equal(normalizeZhAnswer('北京， 是 “首都”。ABC'), '北京是首都abc');
  });
});

describe('LongBench metrics', () => {
  test('qa_f1_score: token F1 of the normalized answers', () => {
    // pred -> [eiffel, tower, paris], truth -> [eiffel, tower]: 2 shared; P = 2/3, R = 1, F1 = 2PR/(P+R) = (4/3)/(5/3) = 0.8
    close(qaF1Score('The Eiffel Tower, Paris.', 'Eiffel Tower'), 0.8);
    // multiset overlap: [cat, cat] vs [cat] share 1; P = 1/2, R = 1, F1 = 1/(3/2) = 2/3
    close(qaF1Score('the cat cat', 'cat'), 2 / 3);
    assert.equal(qaF1Score('London', 'Paris'), 0);
  });

  test('qa_f1_zh_score: F1 over Han characters (stand-in for jieba), punctuation tokens dropped', () => {
    // [北, 京, 市] vs [北, 京]: P = 2/3, R = 1, F1 = 0.8
    close(qaF1ZhScore('北京市', '北京'), 0.8);
    // "。" normalizes to "" and is dropped, leaving [北, 京] vs [北, 京]
    close(qaF1ZhScore('北京。', '北京'), 1);
  });

  test('rouge_score: ROUGE-L F as the rouge package computes it', () => {
    // distinct words: m = |{the, cat, lay, on, mat}| = 5, n = |{the, cat, sat, on, mat}| = 5;
    // LCS "the cat on the mat" as a set {the, cat, on, mat} = 4: R = P = 0.8, F = 2 * (0.64 / (1.6 + 1e-8))
    close(rougeScore('the cat sat on the mat', 'the cat lay on the mat'), 2 * (0.64 / (1.6 + 1e-8)));
    // "." splits sentences; the union of per-sentence LCS words is {a, c} + {b, d} = 4 of m = n = 4 distinct words,
    // where one LCS over the whole text ("a b c d" vs "a c b d") would only find 3.
    close(rougeScore('a b. c d', 'a c. b d'), 2 * (1 / (2 + 1e-8)));
    // repeated words count once (exclusive mode): m = n = 1, overlap 1
    close(rougeScore('the the the', 'the'), 2 * (1 / (2 + 1e-8)));
    // no sentence at all: the package raises, LongBench scores 0
    assert.equal(rougeScore('...', 'a reference'), 0);
    assert.equal(rougeScore('', 'a reference'), 0);
  });

  test('rouge_zh_score: ROUGE-L over Chinese tokens', () => {
    // hyp {今, 天, 气, 好} (n = 4), ref {今, 天, 气, 很, 好} (m = 5), LCS 今天天气好 -> 4 distinct: R = 0.8, P = 1
    close(rougeZhScore('今天天气好', '今天天气很好'), 2 * (0.8 / (1.8 + 1e-8)));
  });

  test('classification_score: 1 / number of competing classes named, with the official quirks', () => {
    // "City" and "Country" are both named and the truth is among them: 1/2
    assert.equal(classificationScore('City or Country', 'City', ['City', 'Country', 'Date']), 0.5);
    // "location" is a substring of the true "Other location" and is dropped: 1/1
    assert.equal(classificationScore('Other location', 'Other location', ['location', 'Other location']), 1);
    // Python removes while iterating and skips the next item: [a, b, ab] -> "a" removed, "b" skipped -> [b, ab] -> 1/2
    assert.equal(classificationScore('ab', 'ab', ['a', 'b', 'ab']), 0.5);
    assert.equal(classificationScore('Date', 'City', ['City', 'Date']), 0);
  });

  test('retrieval_score and count_score: share of the numbers in the prediction that are right', () => {
    assert.equal(retrievalScore('Paragraph 12', 'Paragraph 12'), 1);
    assert.equal(retrievalScore('Paragraph 3 or Paragraph 12', 'Paragraph 12'), 0.5); // numbers [3, 12]
    assert.equal(retrievalScore('Paragraph 112', 'Paragraph 12'), 0); // \d+ takes 112 whole
    assert.equal(retrievalScore('the twelfth paragraph', 'Paragraph 12'), 0); // no numbers
    assert.equal(retrievalZhScore('答案是段落5', '段落5'), 1);
    assert.throws(() => retrievalScore('1', 'the first one'), /does not match/);
    assert.equal(countScore('There are 7 unique paragraphs, not 8', '7'), 0.5); // [7, 8]
  });

  test('difflib SequenceMatcher ratio and fuzz.ratio', () => {
    // "abcd" / "abed": longest block "ab", then "d" right of it: 3 matches, 2 * 3 / 8
    assert.equal(sequenceMatcherRatio('abcd', 'abed'), 0.75);
    // "abcdefgh" / "abcdexyz": 5 matches, 2 * 5 / 16 = 0.625; 62.5 rounds half to even: 62
    assert.equal(fuzzRatio('abcdefgh', 'abcdexyz'), 62);
    // autojunk: in b of 201 chars, "a" occurs 200 > 201 // 100 + 1 times, so it only joins by extension;
    // the only block is "x" (1 match): 2 / 207, where without autojunk "aaaaa" would give 10 / 207
    assert.equal(sequenceMatcherRatio(`x${'a'.repeat(5)}`, `${'a'.repeat(200)}x`), 2 / 207);
    assert.equal(fuzzRatio('', ''), 100);
    assert.equal(fuzzRatio('', 'x'), 0);
  });

  test('code_sim_score: first line that is not a fence or comment, fuzz.ratio / 100', () => {
    // "return x + y" vs "return x+y": blocks "return x" (8), then "+" (1), then "y" (1) = 10 matches;
    // 100 * 2 * 10 / (12 + 10) = 90.909 -> 91
    assert.equal(codeSimScore('```python\n# add them\nreturn x + y\n```', 'return x+y'), 0.91);
    assert.equal(codeSimScore('\n\n// comment only', 'return x'), 0);
  });

  test("Python's round: exact binary value, ties to even", () => {
    assert.equal(pythonRound(0.125, 2), 0.12);
    assert.equal(pythonRound(0.375, 2), 0.38);
    assert.equal(pythonRound(2.675, 2), 2.67); // stored as 2.67499999...
    assert.equal(pythonRound(1.005, 2), 1); // stored as 1.00499999...
    assert.equal(pythonRound(62.5), 62);
    assert.equal(pythonRound(63.5), 64);
    assert.equal(pythonRound(100 * (2 / 3), 2), 66.67);
  });

  test('RULER string_match_all and string_match_part', () => {
    const references = ['1234567', 'ABCDE'];
    assert.equal(stringMatchAll('the numbers are 1234567 and abcde', references), 1);
    assert.equal(stringMatchAll('1234567', references), 0.5);
    assert.equal(stringMatchPart('1234567', references), 1);
    assert.equal(stringMatchPart('nothing', references), 0);
  });
});

describe('LongBench datasets and scoring', () => {
  test('prompts, answer budgets and dataset names follow the official configs', () => {
    assert.equal(Object.keys(LONGBENCH_DATASETS).length, 21);
    assert.equal(LONGBENCH_DATASETS.hotpotqa!.maxNewTokens, 32);
    assert.equal(LONGBENCH_DATASETS.gov_report!.maxNewTokens, 512);
    assert.equal(LONGBENCH_DATASETS.lcc!.metric, 'code_sim_score');
    // one-pass substitution: braces inside the context are left alone, as str.format leaves them
    assert.equal(
      buildLongBenchPrompt({ dataset: 'lcc', context: 'x = "{input}"\n', input: '' }),
      'Please complete the code given below. \nx = "{input}"\nNext line of code:\n',
    );
    assert.equal(datasetName('hotpotqa_e'), 'hotpotqa');
    assert.equal(datasetName('narrativeqa_e'), null); // not part of LongBench-E
  });

  test('per example: prediction cut at its first line for trec, best over the answers', () => {
    // without the cut, "City" and "Date" would both be named: 1/2
    assert.equal(scoreLongBenchExample('trec', '\nCity\nDate', ['City'], ['City', 'Date']), 1);
    assert.equal(scoreLongBenchExample('hotpotqa', 'New York City', ['NYC', 'New York City'], null), 1);
  });

  test('per dataset: 100 * mean, and LongBench-E length buckets', () => {
    const scores = aggregateLongBench([
      { dataset: 'hotpotqa', length: 100, score: 1 },
      { dataset: 'hotpotqa', length: 3999, score: 0 },
      { dataset: 'hotpotqa', length: 5000, score: 0 },
      { dataset: 'hotpotqa', length: 9000, score: 0.5 },
    ]);
    // total 1.5 of 4 -> 37.5; 0-4k: (1 + 0) / 2; 4-8k: 0; 8k+: 0.5
    assert.deepEqual(scores.hotpotqa, { metric: 'qa_f1_score', count: 4, score: 37.5, buckets: { '0-4k': 50, '4-8k': 0, '8k+': 50 } });
    const empty = aggregateLongBench([{ dataset: 'trec', length: 10, score: 1 }]).trec!;
    assert.deepEqual(empty.buckets, { '0-4k': 100, '4-8k': null, '8k+': null });
  });

  test('the sample scores as the official scorer scores it', async () => {
    // Values from LongBench/metrics.py on the same files (see data/longbench-sample/README.md).
    const scores = await scoreLongBenchFiles(SAMPLE_DATA, SAMPLE_PREDICTIONS);
    assert.deepEqual(
      Object.fromEntries(Object.entries(scores).map(([name, s]) => [name, s.score])),
      { hotpotqa: 50, gov_report: 45.45, trec: 75, passage_retrieval_en: 75, lcc: 96.5 },
    );
  });

  test('predictions without _id are matched by line order, and their answers must agree', async () => {
    const data = readFileSync(SAMPLE_DATA, 'utf8').trim().split('\n').map((line) => JSON.parse(line));
    const official = data.map((r) => ({ pred: r.answers[0], answers: r.answers, all_classes: r.all_classes, length: r.length }));
    const scores = await scoreLongBenchFiles(SAMPLE_DATA, writeLines('official.jsonl', official));
    for (const s of Object.values(scores)) assert.equal(s.score, 100);
    await rejectsWithUserError(scoreLongBenchFiles(SAMPLE_DATA, writeLines('reordered.jsonl', [...official].reverse())), /reordered\.jsonl:1: "answers" differ from those of record "sample-hotpotqa-1"/);
    await rejectsWithUserError(scoreLongBenchFiles(SAMPLE_DATA, writeLines('short.jsonl', official.slice(1))), /8 predictions without "_id" for 9 records/);
    await rejectsWithUserError(
      scoreLongBenchFiles(SAMPLE_DATA, writeLines('partial.jsonl', [{ _id: 'sample-lcc-1', pred: 'x' }])),
      /no prediction for _id "sample-hotpotqa-1"/,
    );
  });

  test('bad records are UserErrors naming the file and line', async () => {
    const record = { input: 'q', context: 'c', answers: ['a'], length: 1, dataset: 'hotpotqa', all_classes: null, _id: 'x' };
    const read = async (lines: unknown[]) => {
      const path = writeLines('bad.jsonl', lines);
      for await (const _ of readLongBench(path));
    };
    await rejectsWithUserError(read([record, '{"input": ']), /bad\.jsonl:2: not valid JSON/);
    await rejectsWithUserError(read([{ ...record, dataset: 'squad' }]), /bad\.jsonl:1: unknown LongBench dataset "squad"; known: narrativeqa, qasper, .*repobench-p$/);
    await rejectsWithUserError(read([{ ...record, dataset: 'constructor' }]), /unknown LongBench dataset "constructor"/);
    await rejectsWithUserError(read([{ ...record, answers: 'a' }]), /bad\.jsonl:1: field "answers" must be an array of strings/);
    await rejectsWithUserError(read([{ ...record, dataset: 'trec' }]), /bad\.jsonl:1: trec is a classification dataset; "all_classes" must list the classes/);
    await rejectsWithUserError(read([{ ...record, dataset: 'passage_retrieval_en' }]), /bad\.jsonl:1: retrieval answer "a" does not name a paragraph/);
  });
});

describe('arl longbench', () => {
  const arl = (...args: string[]) => runArl('longbench', ...args);

  test('scores the sample: a table on stdout and JSON in --out', async () => {
    const out = join(work, 'scores.json');
    const r = await arl('--data', SAMPLE_DATA, '--predictions', SAMPLE_PREDICTIONS, '--out', out);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^dataset\s+metric\s+n\s+score\s+0-4k\s+4-8k\s+8k\+$/m);
    assert.match(r.stdout, /^gov_report\s+rouge_score\s+1\s+45\.45\s+45\.45\s+-\s+-$/m);
    assert.match(r.stdout, /^average\s+68\.39/m); // (50 + 45.45 + 75 + 75 + 96.5) / 5
    const json = JSON.parse(readFileSync(out, 'utf8'));
    assert.equal(json.datasets.lcc.score, 96.5);
    assert.deepEqual(json.datasets.trec.buckets, { '0-4k': 75, '4-8k': null, '8k+': null });
  });

  test('bad input: exit code 2 and one line on stderr', async () => {
    const malformed = writeLines('malformed.jsonl', [readFileSync(SAMPLE_DATA, 'utf8').split('\n')[0]!, '{not json']);
    const [badData, noPredictions] = await Promise.all([arl('--data', malformed, '--predictions', SAMPLE_PREDICTIONS), arl('--data', SAMPLE_DATA)]);
    for (const [r, pattern] of [
      [badData, /malformed\.jsonl:2: not valid JSON/],
      [noPredictions, /pass --predictions FILE with model outputs .*, or --checkpoint CKPT --pred-dir DIR/],
    ] as const) {
      assert.equal(r.code, 2, r.stderr);
      const lines = r.stderr.trim().split('\n');
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0]!, pattern);
    }
  });
});
