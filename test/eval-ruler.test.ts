/** RULER-style tasks: lengths, depths, answers that are really the answers, disjoint train/test pools, scoring, CLI. */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import {
  evenlySpacedDepth,
  generateRulerSample,
  generateRulerSamples,
  rulerMixDocuments,
  type RulerOptions,
  type RulerSample,
} from '../src/eval/ruler.ts';
import { Haystack, splitSentences } from '../src/eval/ruler-haystack.ts';
import { otherNeedleField, recapFields } from '../src/eval/ruler-eval.ts';
import { scoreRuler, scoreRulerFiles } from '../src/eval/ruler-score.ts';
import { entityPool, needlesIn, RULER_TASKS, type RulerSplit, type RulerTask } from '../src/eval/ruler-tasks.ts';
import { UserError } from '../src/io/errors.ts';
import { BUNDLED_TOKENIZER_PATH, Tokenizer } from '../src/tokenizer/sentencepiece.ts';
import { runArl } from './helpers.ts';

const work = mkdtempSync(join(tmpdir(), 'arl-eval-ruler-'));
let tokenizer: Tokenizer;
let haystack: Haystack;

before(async () => {
  tokenizer = await Tokenizer.load(BUNDLED_TOKENIZER_PATH);
  haystack = await Haystack.load('brown');
});

function options(task: RulerTask, overrides: Partial<RulerOptions> = {}): RulerOptions {
  return { task, lengthTokens: 1024, seed: 3, split: 'test', count: 4, tokenizer, haystack, ...overrides };
}

function samples(task: RulerTask, overrides: Partial<RulerOptions> = {}): RulerSample[] {
  return [...generateRulerSamples(options(task, overrides))];
}

function countsOf(words: readonly string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const word of words) counts.set(word, (counts.get(word) ?? 0) + 1);
  return counts;
}

/** The haystack part of a needle or tracking prompt: the line between the instructions and the question. */
/** The context of a needle or tracking prompt: the lines between the instruction and the question (the haystack keeps its paragraphs). */
function contextLine(input: string): string {
  return input.split('\n').slice(1, -1).join('\n').replace(/^\n+/, '');
}

/**
 * Corpus sentences before a needle and in all, found by removing the needle and walking the rest of the context
 * along the haystack's sentences (the last one may be cut short). Re-splitting the text would miscount, since
 * headlines without a full stop run into the next sentence.
 */
function sentencesAround(context: string, needle: string): { before: number; total: number } {
  const at = context.indexOf(needle);
  const cut = at; // where the text after the needle starts once it is removed
  const text = at === 0 ? context.slice(needle.length + 1) : context.slice(0, at - 1) + context.slice(at + needle.length);
  const { sentences } = haystack;
  for (let start = 0; start < sentences.length; start++) {
    if (!text.startsWith(sentences[start]!) && !sentences[start]!.startsWith(text)) continue;
    let position = 0;
    let total = 0;
    let before = -1;
    while (position < text.length) {
      if (position === cut) before = total;
      const sentence = sentences[(start + total) % sentences.length]!;
      if (text.startsWith(sentence, position)) position += sentence.length + 1;
      else if (sentence.startsWith(text.slice(position))) position = text.length;
      else break;
      total++;
    }
    if (position < text.length) continue;
    return { before: cut >= text.length ? total : before, total };
  }
  throw new Error('context is not a run of corpus sentences');
}

describe('RULER generation', () => {
  test('every task reaches its length in tokens within 5%, from below, and records it exactly', () => {
    for (const task of RULER_TASKS) {
      for (const lengthTokens of [700, 2048]) {
        for (const sample of samples(task, { lengthTokens, count: 2 })) {
          assert.equal(sample.length, tokenizer.encode(sample.input).length, task);
          assert.ok(sample.length <= lengthTokens && sample.length >= 0.95 * lengthTokens, `${task}: ${sample.length} of ${lengthTokens}`);
        }
      }
    }
  });

  test('a length below the shortest prompt is a UserError', () => {
    assert.throws(() => generateRulerSample(options('niah_single', { lengthTokens: 20 }), 0), (err: Error) => err instanceof UserError && /niah_single: length 20 is too short/.test(err.message));
  });

  test('depths are spread evenly (or set) and the needle sits at that depth, to a sentence', () => {
    const spread = samples('niah_single', { count: 5 });
    assert.deepEqual(spread.map((s) => s.depth), [0, 25, 50, 75, 100]);
    assert.deepEqual(samples('niah_single', { count: 2, depth: 30 }).map((s) => s.depth), [30, 30]);
    for (const sample of [...spread, ...samples('niah_single', { count: 3, depth: 30, lengthTokens: 4096 })]) {
      const needle = /One of the special magic numbers for \S+ is: \d+\./.exec(sample.input)![0];
      const { before, total } = sentencesAround(contextLine(sample.input), needle);
      const expected = Math.floor((total * sample.depth!) / 100);
      assert.ok(Math.abs(before - expected) <= 1, `depth ${sample.depth}: after sentence ${before} of ${total}, expected ${expected}`);
    }
  });

  test('needle tasks: the expected values are in the text, under the key asked about', () => {
    for (const task of ['niah_single', 'niah_multikey', 'niah_multivalue', 'niah_multiquery'] as const) {
      for (const sample of samples(task)) {
        const needles = [...sample.input.matchAll(/One of the special magic numbers for ([a-z]+-[a-z]+) is: (\d{7})\./g)].map((m) => ({ key: m[1]!, value: m[2]! }));
        const question = sample.input.slice(sample.input.lastIndexOf('\n'));
        const asked = needles.filter((n) => question.includes(n.key));
        assert.equal(needles.length, task === 'niah_single' ? 1 : 4, task);
        assert.deepEqual(new Set(asked.map((n) => n.value)), new Set(sample.outputs), task);
        assert.equal(sample.outputs.length, task === 'niah_multivalue' || task === 'niah_multiquery' ? 4 : 1, task);
        assert.match(sample.input, sample.outputs.length === 1 ? /The special magic number for [a-z-]+ mentioned in the provided text is$/ : /mentioned in the provided text are$/);
      }
    }
  });

  test('variable tracking: the answer is exactly the chain of variables bound to the value asked about', () => {
    for (const sample of samples('variable_tracking', { count: 6 })) {
      const value = /assigned the value (\d+) in the text above/.exec(sample.input)![1]!;
      const bound = new Map<string, string>();
      for (const [, name, source] of contextLine(sample.input).matchAll(/VAR ([A-Z]{5}) = (VAR [A-Z]{5}|\d+)\./g)) {
        const resolved = source!.startsWith('VAR ') ? bound.get(source!.slice(4)) : source;
        assert.ok(resolved !== undefined, `${name} is assigned from a variable defined later`);
        bound.set(name!, resolved!);
      }
      assert.deepEqual([...bound].filter(([, v]) => v === value).map(([name]) => name), sample.outputs);
      assert.equal(sample.outputs.length, 5);
    }
  });

  test('common words: the 10 answers are strictly the most frequent entries of the list', () => {
    for (const lengthTokens of [1024, 4096]) {
      for (const sample of samples('common_words', { lengthTokens, count: 2 })) {
        const list = [...sample.input.matchAll(/\d+\. ([a-z]+)/g)].map((m) => m[1]!);
        const counts = countsOf(list);
        const answers = new Set(sample.outputs);
        assert.equal(answers.size, 10);
        const minAnswer = Math.min(...sample.outputs.map((w) => counts.get(w) ?? 0));
        const maxOther = Math.max(...[...counts].filter(([w]) => !answers.has(w)).map(([, c]) => c));
        assert.ok(minAnswer > maxOther, `${minAnswer} <= ${maxOther}`);
        assert.equal(minAnswer, lengthTokens < 4096 ? 6 : 30); // RULER's repeat counts
      }
    }
  });

  test('frequent words: the 3 answers are strictly the most frequent coded words besides "..."', () => {
    for (const lengthTokens of [300, 1024, 4096]) {
      for (const sample of samples('frequent_words', { lengthTokens, count: 2 })) {
        const text = /coded words\. (.*)\nQuestion:/s.exec(sample.input)![1]!;
        const counts = [...countsOf(text.split(' ').filter((w) => w !== '...'))].sort((a, b) => b[1] - a[1]);
        assert.deepEqual(new Set(counts.slice(0, 3).map(([w]) => w)), new Set(sample.outputs));
        assert.ok(counts[2]![1] > (counts[3]?.[1] ?? 0), `${lengthTokens}: ${JSON.stringify(counts.slice(0, 5))}`);
      }
    }
  });

  test('qa: the answer is planted once, about the person asked about, among distractor documents', () => {
    for (const sample of samples('qa', { count: 6 })) {
      const person = /Question: (?:In which town was|What is the number of|What is the name of) ([A-Z][a-z]+ [A-Z][a-z]+)/.exec(sample.input)![1]!;
      assert.equal(sample.input.split(person).length - 1, 2, 'the person is in one fact and in the question');
      assert.ok(sample.input.includes(sample.outputs[0]!));
      assert.ok((sample.input.match(/Document \d+:\n/g) ?? []).length >= 3);
    }
  });

  test('train and test samples draw keys, values, names and words from disjoint pools', async () => {
    const entitiesOf = (split: RulerSplit) => {
      const entities = new Set<string>();
      for (const task of RULER_TASKS) {
        for (const sample of samples(task, { split, lengthTokens: 700, count: 3 })) {
          const found = [
            ...sample.outputs,
            ...[...sample.input.matchAll(/numbers for ([a-z]+-[a-z]+) is: (\d+)/g)].flatMap((m) => [m[1]!, m[2]!]),
            ...[...sample.input.matchAll(/VAR ([A-Z]{5})/g)].map((m) => m[1]!),
            ...[...sample.input.matchAll(/([A-Z][a-z]+ [A-Z][a-z]+) (?:was born|has a dog)/g)].map((m) => m[1]!),
          ];
          for (const entity of found) {
            assert.equal(entityPool(entity), split, `${task} ${split}: ${entity}`);
            entities.add(entity);
          }
        }
      }
      return entities;
    };
    const train = entitiesOf('train');
    const test = entitiesOf('test');
    assert.ok(train.size > 100 && test.size > 100);
    assert.deepEqual([...train].filter((entity) => test.has(entity)), []);
    // The pretraining mix is made of train samples only, tasks in turn, each with its answer.
    const mix = [];
    for await (const doc of rulerMixDocuments({ tasks: ['niah_single', 'qa'], count: 4, lengthTokens: 400, seed: 9, tokenizer, haystack })) mix.push(doc);
    assert.deepEqual(mix.map((doc) => doc.id), ['ruler:niah_single:9:0', 'ruler:qa:9:1', 'ruler:niah_single:9:2', 'ruler:qa:9:3']);
    const second = generateRulerSample({ task: 'qa', lengthTokens: 400, seed: 9, split: 'train', count: 4, tokenizer, haystack }, 1);
    assert.equal(mix[1]!.text, `${second.input} ${second.outputs[0]}`);
    // With a shortest length, samples step through a ladder of lengths (a curriculum); qa's prompt does not
    // fit 150 tokens, so its short rung moves up to the next.
    const ladder = [];
    for await (const doc of rulerMixDocuments({ tasks: ['niah_single', 'qa'], count: 6, lengthTokens: 400, minLengthTokens: 150, seed: 9, tokenizer, haystack })) ladder.push(tokenizer.encode(doc.text).length);
    const [needleShort, qaShort, needleMiddle, , needleLong] = ladder;
    assert.ok(needleShort! <= 170 && needleMiddle! > 170 && needleMiddle! <= 295 && needleLong! > 295, `needle lengths ${ladder}`);
    assert.ok(qaShort! > 170 && qaShort! <= 295, `qa takes the middle rung: ${ladder}`);
  });

  test('helpers: sentence splitting and evenly spaced depths', () => {
    assert.deepEqual(splitSentences('He left. "Why?" she asked.  It was 5 p.m. in Rome. 12 came.'), ['He left.', '"Why?" she asked.', 'It was 5 p.m. in Rome.', '12 came.']);
    assert.equal(evenlySpacedDepth(0, 1), 50);
    assert.deepEqual([0, 1, 2].map((i) => evenlySpacedDepth(i, 3)), [0, 50, 100]);
  });
});

describe('RULER scoring', () => {
  test('string_match_all for needles, string_match_part for qa, 100 * mean rounded', () => {
    const scores = scoreRuler([
      { task: 'niah_multivalue', pred: 'They are 1111111 and 2222222.', outputs: ['1111111', '2222222', '3333333'] }, // 2/3
      { task: 'niah_multivalue', pred: '3333333', outputs: ['1111111', '2222222', '3333333'] }, // 1/3
      { task: 'niah_multivalue', pred: '', outputs: ['4444444'] }, // 0
      { task: 'qa', pred: 'velmora, i think', outputs: ['Velmora', 'Ashby'] }, // any one, case-insensitive: 1
    ]);
    // (2/3 + 1/3 + 0) / 3 * 100 = 33.33
    assert.deepEqual(scores, {
      niah_multivalue: { metric: 'string_match_all', count: 3, score: 33.33 },
      qa: { metric: 'string_match_part', count: 1, score: 100 },
    });
  });

  test('predictions are matched by task and index, by index, or by line order', async () => {
    const data = join(work, 'score-data.jsonl');
    const rows = [...samples('niah_single', { count: 2, lengthTokens: 300 }), ...samples('qa', { count: 2, lengthTokens: 300 })];
    writeFileSync(data, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
    const write = (name: string, lines: object[]) => {
      const path = join(work, name);
      writeFileSync(path, lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
      return path;
    };
    const keyed = rows.map((r, i) => ({ task: r.task, index: r.index, pred: i === 0 ? 'no idea' : r.outputs.join(' ') })).reverse();
    assert.deepEqual(await scoreRulerFiles(data, write('keyed.jsonl', keyed)), {
      niah_single: { metric: 'string_match_all', count: 2, score: 50 },
      qa: { metric: 'string_match_part', count: 2, score: 100 },
    });
    const inOrder = rows.map((r) => ({ pred: r.outputs.join(' ') }));
    assert.equal((await scoreRulerFiles(data, write('order.jsonl', inOrder))).qa!.score, 100);
    await assert.rejects(scoreRulerFiles(data, write('index-only.jsonl', rows.map((r) => ({ index: r.index, pred: '' })))), /has several tasks \(niah_single, qa\); give every prediction "task"/);
    await assert.rejects(scoreRulerFiles(data, write('missing.jsonl', keyed.filter((p) => p.task !== 'niah_single' || p.index !== 0))), /no prediction for task and index "niah_single#0"/);
  });
});

describe('arl ruler', () => {
  const arl = (...args: string[]) => runArl('ruler', ...args);

  test('generate is deterministic from the seed; score reads its output; bad input is one line', async () => {
    const generate = (out: string, seed: string) =>
      arl('generate', '--task', 'niah_multikey', '--task', 'variable_tracking', '--length', '512', '--count', '3', '--seed', seed, '--out', join(work, out));
    // Predictions are read first, so a malformed file fails the same way whatever the data.
    const malformed = join(work, 'malformed.jsonl');
    writeFileSync(malformed, '{"pred": "x"}\n[1]\n');
    const [a, b, bad] = await Promise.all([generate('a.jsonl', '7'), generate('b.jsonl', '7'), arl('score', '--data', malformed, '--predictions', malformed)]);
    for (const r of [a, b]) assert.equal(r.code, 0, r.stderr);
    assert.equal(bad.code, 2);
    assert.deepEqual(bad.stderr.trim().split('\n').length, 1, bad.stderr);
    assert.match(bad.stderr, /malformed\.jsonl:2: expected a JSON object per line/);
    const fileA = readFileSync(join(work, 'a.jsonl'), 'utf8');
    assert.equal(fileA, readFileSync(join(work, 'b.jsonl'), 'utf8'));
    const records = fileA.trim().split('\n').map((line) => JSON.parse(line) as RulerSample);
    // the same sample in-process, and another seed gives another sample
    assert.deepEqual(generateRulerSample(options('niah_multikey', { lengthTokens: 512, count: 3, seed: 7 }), 1), records[1]);
    assert.notDeepEqual(generateRulerSample(options('niah_multikey', { lengthTokens: 512, count: 3, seed: 8 }), 1).outputs, records[1]!.outputs);
    assert.deepEqual(records.map((r) => [r.task, r.index, r.seed, r.split]), [
      ['niah_multikey', 0, 7, 'test'], ['niah_multikey', 1, 7, 'test'], ['niah_multikey', 2, 7, 'test'],
      ['variable_tracking', 0, 7, 'test'], ['variable_tracking', 1, 7, 'test'], ['variable_tracking', 2, 7, 'test'],
    ]);
    assert.match(a.stdout, /wrote .*a\.jsonl: 6 samples \(niah_multikey, variable_tracking\)/);

    const predictions = join(work, 'preds.jsonl');
    writeFileSync(predictions, records.map((r) => JSON.stringify({ task: r.task, index: r.index, pred: r.outputs.join(', ') })).join('\n') + '\n');
    const scored = await arl('score', '--data', join(work, 'a.jsonl'), '--predictions', predictions);
    assert.equal(scored.code, 0, scored.stderr);
    assert.match(scored.stdout, /^niah_multikey\s+string_match_all\s+3\s+100\.00$/m);
  });
});

test('recap fields: a recap holding the value under a made-up key holds the answer but does not pair it with its key', () => {
  const input = 'Some text. One of the special magic numbers for royal-fountain is: 2585583. More text. One of the special magic numbers for keen-wolf is: 8497727.';
  const madeUpKey = ['The special magic number for clever-willow is 2585583.'];
  assert.deepEqual(recapFields(input, ['2585583'], madeUpKey), { recaps_written: 1, recaps_hold_answer: true, recaps_pair_key: false });
  const split = ['royal-fountain was mentioned.', 'The number is 2585583.'];
  assert.equal(recapFields(input, ['2585583'], split).recaps_pair_key, false, 'key and value in different recaps do not pair');
  const paired = ['One of the special magic numbers for royal-fountain is: 2585583.'];
  assert.deepEqual(recapFields(input, ['2585583'], paired), { recaps_written: 1, recaps_hold_answer: true, recaps_pair_key: true });
  assert.equal(recapFields(input, ['2585583', '8497727'], paired).recaps_pair_key, false, 'every expected value needs its pair');
  assert.equal('recaps_pair_key' in recapFields('Words only: apple, pear.', ['apple'], ['apple']), false, 'no needle, no key to pair');
});

test("a wrong needle answer is marked when it gives another needle's value, and only then", () => {
  const input = 'Some text. One of the special magic numbers for royal-fountain is: 2585583. More text. One of the special magic numbers for keen-wolf is: 8497727.';
  assert.deepEqual(needlesIn(input), [{ key: 'royal-fountain', value: '2585583' }, { key: 'keen-wolf', value: '8497727' }]);
  assert.deepEqual(otherNeedleField(input, ['2585583'], ' 8497727', 0), { answered_other_needle: true });
  assert.deepEqual(otherNeedleField(input, ['2585583'], ' 1234567', 0), { answered_other_needle: false }, 'a made-up value');
  assert.deepEqual(otherNeedleField(input, ['2585583'], ' 2585583', 1), {}, 'a right answer is not marked');
  assert.deepEqual(otherNeedleField('Words only: apple, pear.', ['apple'], 'pear', 0), {}, 'no needles, nothing to mark');
});
