/**
 * The experiment runner at its toy size (a 1-layer model, a few steps, one sample per length): it completes,
 * writes results.json, results.md and the plots, and a rerun redoes only the stages not recorded as done.
 * Runs on the wasm backend: the pure-JS cpu backend takes minutes for the same work.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { checkClaims, type LiftExample, type MethodLengthResult } from '../src/eval/experiment-claims.ts';
import { recapMechanismRows } from '../src/eval/experiment-report.ts';
import { BASE_TRAINING_KEYS, LENGTH_MULTIPLES, THRESHOLD_GRID, TRAINING_KEYS_TEST } from '../src/eval/experiment.ts';
import { entityPool, needlesIn } from '../src/eval/ruler-tasks.ts';
import { resolveSize } from '../src/eval/experiment-sizes.ts';
import { UserError } from '../src/io/errors.ts';
import { holdsAnswer } from '../src/eval/experiment-lift.ts';
import { assertUserError, runArl } from './helpers.ts';

const out = join(mkdtempSync(join(tmpdir(), 'arl-experiment-')), 'run');
const experiment = (...extra: string[]) => runArl('experiment', '--size', 'toy', '--backend', 'wasm', '--out', out, ...extra);

test('the toy experiment completes, writes every output, and a rerun only redoes unfinished stages', async () => {
  const first = await experiment();
  assert.equal(first.code, 0, first.stderr);
  const results = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'));
  // base at 1x, and on 4 keys from the training pool; per seed: plain and ARL at each length, and ARL with recaps off at 4x.
  assert.equal(results.ruler.length, 2 + 2 * LENGTH_MULTIPLES.length + 1);
  const trainingKeys = results.ruler.find((r: MethodLengthResult) => r.method === BASE_TRAINING_KEYS);
  assert.deepEqual([trainingKeys.model, trainingKeys.multiple, Object.keys(trainingKeys.tasks)], ['base', 1, ['niah_multikey']]);
  const diagnosticKeys = readFileSync(join(out, 'tests', `${TRAINING_KEYS_TEST}.jsonl`), 'utf8').trim().split('\n').flatMap((l) => needlesIn(JSON.parse(l).input).map((n) => n.key));
  assert.ok(diagnosticKeys.length >= 4 && diagnosticKeys.every((k) => entityPool(k) === 'train'), diagnosticKeys.join(' '));
  for (const r of results.ruler as MethodLengthResult[]) {
    assert.ok(r.examples.length > 0, `${r.method} ${r.multiple}x has no examples`);
    assert.ok(r.average >= 0 && r.average <= 100);
  }
  assert.ok(results.ruler.find((r: MethodLengthResult) => r.method === 'ARL-CPT s1').examples.every((e: { recaps_written?: number }) => e.recaps_written !== undefined));
  assert.deepEqual(Object.keys(results.longppl), ['base', 'cpt-plain-s1', 'cpt-arl-s1']);
  assert.ok(results.longppl.base.perplexity > 1);
  assert.deepEqual([...new Set(results.lift.map((e: LiftExample) => e.variant))], ['paper', 'paper + cloze QA', 'more-steps', 'paper, 64-word values', 'more-steps + cloze QA', 'more-steps, 64-word values']);
  const cloze = readFileSync(join(out, 'predictions', 'lift-paper-cloze-QA', 'predictions.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.ok(cloze.length > 0 && cloze.every((p: { qa_pairs?: number }) => p.qa_pairs === 10), 'ten cloze pairs per document');
  const stepping = (variant: string) => JSON.parse(readFileSync(join(out, 'predictions', variant, 'predictions.json'), 'utf8')).step_batch;
  assert.deepEqual([stepping('lift-paper'), stepping('lift-more-steps'), stepping('lift-more-steps-cloze-QA')], [undefined, 4, 4], 'the paper steps once per epoch; more-steps per batch of 4');
  const moreCloze = readFileSync(join(out, 'predictions', 'lift-more-steps-cloze-QA', 'predictions.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.ok(moreCloze.every((p: { qa_pairs?: number }) => p.qa_pairs === 10), 'more-steps + cloze QA trains on ten cloze pairs too');
  assert.ok(results.claims.some((c: { claim: string }) => c.claim === 'LIFT (paper + cloze QA) stores the needle: its gold log-probability gain over the gain on a value the document does not hold'));
  assert.match(readFileSync(join(out, 'tests', 'lift-words-4x.jsonl'), 'utf8'), /magic numbers for [a-z-]+ is: [a-z]+\./);
  assert.ok(results.lift.every((e: LiftExample) => Number.isFinite(e.gold_logprob) && Number.isFinite(e.icl_gold_logprob)));
  assert.ok(results.lift.every((e: LiftExample) => Number.isFinite(e.control_logprob) && Number.isFinite(e.icl_control_logprob)));
  assert.ok(results.claims.some((c: { claim: string }) => /stores the needle/.test(c.claim)));
  assert.ok(results.thresholds.s1.chosen > 0);
  // The threshold with the highest mean gold log-probability on the development set (the first of equals).
  const devLogProb: Record<string, number> = results.thresholds.s1.dev_gold_logprob;
  assert.deepEqual(Object.keys(devLogProb).map(Number).sort(), [...THRESHOLD_GRID].sort());
  assert.ok(Object.values(devLogProb).every((v) => Number.isFinite(v) && v < 0));
  assert.equal(results.thresholds.s1.chosen, THRESHOLD_GRID.find((t) => devLogProb[t] === Math.max(...Object.values(devLogProb))));
  for (const claim of results.claims) assert.ok('ci95' in claim && 'n' in claim && 'met' in claim, JSON.stringify(claim));
  const markdown = readFileSync(join(out, 'results.md'), 'utf8');
  assert.match(markdown, /^\| claim \| target \| n \|/m);
  assert.match(markdown, /^\| plain-CPT s1 \| 4x/m);
  assert.match(markdown, /^\| base, training-pool keys \| 1x \([^|]+\| 1 \|[^|]+\|[^|]+\| - \| [\d.]+ \|/m);
  assert.match(markdown, /^\| ARL-CPT s1 \| 4x \| a recap held the answer \|/m);
  for (const plot of ['plots/accuracy-vs-length.svg', 'plots/training-loss.svg', 'plots/recap-behaviour.svg']) {
    const svg = readFileSync(join(out, plot), 'utf8');
    assert.match(svg, /^<svg [^>]*>[\s\S]*<\/svg>$/);
    assert.match(svg, /class="series"/);
  }
  assert.match(readFileSync(join(out, 'plots/accuracy-vs-length.svg'), 'utf8'), /class="interval"/);
  // The recap threshold is chosen on both tasks, as the tests ask them.
  const devTasks = readFileSync(join(out, 'tests', 'dev-4x.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).task);
  assert.deepEqual(devTasks, ['niah_single', 'niah_multikey']);

  // Forget two finished stages, as if the run had stopped before them.
  const statePath = join(out, 'state.json');
  const state = JSON.parse(readFileSync(statePath, 'utf8'));
  const stages = Object.keys(state.stages);
  assert.ok(stages.includes('train-base') && stages.includes('longppl') && stages.includes('eval plain-CPT s1 4x'));
  delete state.stages.longppl;
  delete state.stages['eval plain-CPT s1 4x'];
  writeFileSync(statePath, JSON.stringify(state));
  const second = await experiment();
  assert.equal(second.code, 0, second.stderr);
  const started = [...second.stderr.matchAll(/^\[experiment\] (.+) \.\.\.$/gm)].map((m) => m[1]);
  assert.deepEqual(started, ['eval plain-CPT s1 4x', 'longppl']);
  const again = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'));
  assert.deepEqual(again.ruler, results.ruler);

  // A run folder copied without its checkpoints and ARL data: the stages that made them run again, nothing else.
  rmSync(join(out, 'runs'), { recursive: true });
  rmSync(join(out, 'arl'), { recursive: true });
  const copied = await experiment();
  assert.equal(copied.code, 0, copied.stderr);
  const rerun = [...copied.stderr.matchAll(/^\[experiment\] (.+) \.\.\.$/gm)].map((m) => m[1]);
  assert.deepEqual(rerun, ['train-base', 'arl-data', 'train-cpt-plain-s1', 'train-cpt-arl-s1']);
  assert.doesNotMatch(copied.stderr, /differs from the record/);

  // Other evaluation settings redo the evaluation only; other training settings are refused rather than mixed in.
  const third = await experiment('--per-length', '2', '--recap-thresholds', '0.02');
  assert.equal(third.code, 0, third.stderr);
  const redone = [...third.stderr.matchAll(/^\[experiment\] (.+) \.\.\.$/gm)].map((m) => m[1]!);
  assert.ok(!redone.some((name) => name.startsWith('train') || name === 'data' || name === 'arl-data'), redone.join(', '));
  assert.ok(redone.includes('test-data') && redone.includes('longppl'));
  const twice = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'));
  assert.equal(twice.complete, true);
  // Two samples per task and length, two tasks.
  assert.equal(twice.ruler.find((r: MethodLengthResult) => r.method === 'base' && r.multiple === 1).examples.length, 4);
  // One recap threshold, fixed in advance: the development set is evaluated at it alone.
  assert.deepEqual(Object.keys(twice.thresholds.s1.dev_gold_logprob), ['0.02']);
  assert.equal(twice.thresholds.s1.chosen, 0.02);
  assertUserError(await experiment('--recap-thresholds', '0.1', '0'), /--recap-thresholds must be a number in \(0, 1\] \(got 0\)/);
  assertUserError(await experiment('--base-steps', '3'), /started with other settings/);
});

test('--stop-after stops once that stage is done; --extra-corpus adds training text only; --parts and --first-seed', async () => {
  const root = mkdtempSync(join(tmpdir(), 'arl-experiment-stop-'));
  const dir = join(root, 'run');
  const extra = join(root, 'extra.jsonl');
  const entries = (word: string) => Array.from({ length: 60 }, (_, i) => `${word} ${i} n. An entry of a dictionary, with its sense and an example.`).join('\\n\\n');
  writeFileSync(extra, `{"text": "${entries('Zebra')}"}\n{"text": "${entries('Zither')}"}\n`);
  const first = await runArl('experiment', '--size', 'toy', '--backend', 'wasm', '--out', dir, '--extra-corpus', extra, '--stop-after', 'eval base 1x');
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stderr, /stopped after eval base 1x/);
  const state = JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8'));
  assert.deepEqual(Object.keys(state.stages), ['data', 'train-base', 'test-data', 'eval base 1x']);
  assert.equal(state.stages.data.result.extra_docs, 2);
  assert.match(readFileSync(join(dir, 'data', 'base-text.jsonl'), 'utf8'), /Zither/);
  assert.doesNotMatch(readFileSync(join(dir, 'data', 'base.jsonl'), 'utf8'), /Zither/);
  // The training task mix is a training setting: another one is refused in this folder.
  assert.deepEqual(state.settings.trainingTasks, ['niah_single', 'niah_multikey', 'niah_multikey']);
  const otherMix = await runArl('experiment', '--size', 'toy', '--backend', 'wasm', '--out', dir, '--extra-corpus', extra, '--training-tasks', 'niah_single', 'niah_multiquery');
  assertUserError(otherMix, /started with other settings/);

  // --parts and --first-seed: LIFT alone on that base, then the ARL comparison of seed 2 alone.
  const stages = () => Object.keys(JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8')).stages);
  const lift = await runArl('experiment', '--size', 'toy', '--backend', 'wasm', '--out', dir, '--extra-corpus', extra, '--parts', 'lift', '--lift-variants', 'more-steps, 64-word values', 'paper');
  assert.equal(lift.code, 0, lift.stderr);
  assert.deepEqual(stages().filter((s) => s.startsWith('lift ')), ['lift paper', 'lift more-steps, 64-word values'], 'the chosen variants, in their order');
  assert.ok(!stages().some((s) => /arl|cpt|longppl/i.test(s)), stages().join(', '));
  const seed2 = await runArl('experiment', '--size', 'toy', '--backend', 'wasm', '--out', dir, '--extra-corpus', extra, '--parts', 'arl', '--first-seed', '2');
  assert.equal(seed2.code, 0, seed2.stderr);
  assert.ok(stages().includes('train-cpt-arl-s2') && stages().includes('eval ARL-CPT recaps off s2 4x'), stages().join(', '));
  assert.ok(!stages().some((s) => /s1\b/.test(s)), stages().join(', '));
  const results = JSON.parse(readFileSync(join(dir, 'results.json'), 'utf8'));
  assert.deepEqual(Object.keys(results.longppl), ['base', 'cpt-plain-s2', 'cpt-arl-s2']);
  assert.deepEqual(results.lift, [], 'results.json holds the parts this command ran');
});

test('a run of two seeds writes results.json after the first seed\'s comparison, marked unfinished', async () => {
  const dir = join(mkdtempSync(join(tmpdir(), 'arl-experiment-seeds-')), 'run');
  const run = await runArl('experiment', '--size', 'toy', '--backend', 'wasm', '--out', dir, '--parts', 'arl', '--seeds', '2', '--recap-thresholds', '0.02', '--stop-after', 'eval ARL-CPT recaps off s1 4x');
  assert.equal(run.code, 0, run.stderr);
  const results = JSON.parse(readFileSync(join(dir, 'results.json'), 'utf8'));
  assert.equal(results.complete, false);
  assert.deepEqual(Object.keys(results.thresholds), ['s1']);
  const seedClaims = results.claims.map((c: { claim: string }) => c.claim).filter((c: string) => /seed \d/.test(c));
  assert.ok(seedClaims.length > 0 && seedClaims.every((c: string) => c.endsWith('seed 1')), seedClaims.join('; '));
  assert.match(readFileSync(join(dir, 'results.md'), 'utf8'), /Unfinished run:\*\* written after the comparisons of seed 1;/);
});

test('--corpus: a corpus too small for the document counts, or missing, is one line', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'arl-experiment-corpus-'));
  const small = join(dir, 'two.jsonl');
  writeFileSync(small, '{"text": "One document."}\n{"text": "Another document."}\n');
  // The stage's progress line comes before the error; otherwise it is the usual one line.
  let runs = 0;
  const run = async (...extra: string[]) => {
    const r = await runArl('experiment', '--size', 'toy', '--backend', 'cpu', '--out', join(dir, `run-${runs++}`), ...extra);
    return { ...r, stderr: r.stderr.replace(/^\[experiment\] data \.\.\.\n/m, '') };
  };
  assertUserError(await run('--corpus', small), /two\.jsonl: the corpus has 2 documents; the experiment asks for 9 \(--base-docs 3 \+ --cpt-docs 3 \+ --dev-docs 1 \+ --heldout-docs 2\)/);
  assertUserError(await run('--corpus', join(dir, 'missing.jsonl')), /missing\.jsonl/);
});

test('claims: paired relative gains with intervals, the base target, and the declared falsifiers', () => {
  const examples = (scores: number[], recaps?: boolean[]) =>
    scores.map((score, index) => ({ task: 'niah_single' as const, index, length: 0, depth: 50, score, in_context: false, pred: '', ...(recaps ? { recaps_written: 1, recaps_hold_answer: recaps[index] } : {}) }));
  const row = (method: string, multiple: number, scores: number[], recaps?: boolean[]): MethodLengthResult => ({ method, model: method, multiple, length: 0, average: 0, tasks: {}, examples: examples(scores, recaps) });
  const n = 200;
  const plain4 = Array.from({ length: n }, (_, i) => (i % 4 === 0 ? 1 : 0)); // 25%
  const arl4 = Array.from({ length: n }, (_, i) => (i % 2 === 0 ? 1 : 0)); // 50%: +100% relative
  const ruler = [
    row('base', 1, Array.from({ length: n }, (_, i) => (i % 10 === 0 ? 0 : 1))),
    row('plain-CPT s1', 4, plain4),
    row('ARL-CPT s1', 4, arl4, arl4.map((s) => s === 1)),
    row('ARL-CPT recaps off s1', 4, plain4),
    row('plain-CPT s1', 1, Array(n).fill(1)),
    row('ARL-CPT s1', 1, Array(n).fill(1)),
  ];
  const claims = checkClaims(ruler, [], [1]);
  const byName = (prefix: string) => claims.find((c) => c.claim.startsWith(prefix))!;
  assert.equal(byName('base retrieves: niah_single').met, true);
  assert.equal(byName('base retrieves: niah_single').n, n);
  const arl = byName('ARL-CPT (recap agent) over plain-CPT');
  assert.ok(Math.abs(arl.gain! - 1) < 1e-9);
  assert.ok(arl.ci95![0] > 0.268 && arl.ci95![1] > arl.gain!);
  assert.equal(arl.met, true);
  assert.equal(byName('ARL not falsified').met, true);
  // No recap holds the answer: falsified, whatever the accuracy.
  const noRecall = checkClaims(ruler.map((r) => (r.method === 'ARL-CPT s1' && r.multiple === 4 ? row('ARL-CPT s1', 4, arl4, arl4.map(() => false)) : r)), [], [1]);
  assert.equal(noRecall.find((c) => c.claim.startsWith('ARL not falsified'))!.met, false);
  // Equal scores: no gain, interval around 0, target missed and falsified by the upper bound.
  const equal = checkClaims(ruler.map((r) => (r.method === 'ARL-CPT s1' && r.multiple === 4 ? row('ARL-CPT s1', 4, plain4, plain4.map((s) => s === 1)) : r)), [], [1]);
  assert.equal(equal.find((c) => c.claim.startsWith('ARL-CPT (recap agent)'))!.met, false);
  assert.match(equal.find((c) => c.claim.startsWith('ARL not falsified'))!.note, /upper bound/);
  // Not evaluated: no verdict.
  assert.equal(checkClaims([], [], [1]).find((c) => c.claim.startsWith('ARL-CPT (recap agent)'))!.met, null);
  // The secondary claim on the gold answer's log-probability: no verdict without it, paired in nats with it.
  const gold = (name: string) => (cs: ReturnType<typeof checkClaims>) => cs.find((c) => c.claim.startsWith(name) && /gold answer log-probability/.test(c.claim))!;
  const goldClaim = gold('ARL-CPT (recap agent) over plain-CPT at 4x T');
  assert.equal(goldClaim(claims).met, null);
  const withGold = (r: MethodLengthResult, logProb: (i: number) => number): MethodLengthResult => ({ ...r, examples: r.examples.map((e, i) => ({ ...e, gold_logprob: logProb(i) })) });
  const logProbs = ruler.map((r) => (r.multiple !== 4 ? r : r.method === 'ARL-CPT s1' ? withGold(r, (i) => -3 + (i % 5) * 0.1) : withGold(r, (i) => -4 + (i % 5) * 0.1)));
  const better = goldClaim(checkClaims(logProbs, [], [1]));
  assert.equal(better.n, n);
  assert.ok(Math.abs(better.gain! - 1) < 1e-9, String(better.gain));
  assert.equal(better.met, true);
});

test('the report splits the ARL answers by whether a recap held the answer, against plain CPT on the same documents', () => {
  const result = (method: string, scores: number[], held?: boolean[]): MethodLengthResult => ({
    method, model: method, multiple: 4, length: 0, average: 0, tasks: {},
    examples: scores.map((score, index) => ({ task: 'niah_single' as const, index, length: 0, depth: 50, score, in_context: false, pred: '', ...(held ? { recaps_written: 1, recaps_hold_answer: held[index] } : {}) })),
  });
  const rows = recapMechanismRows([
    result('plain-CPT s1', [0, 0, 1, 1, 0]),
    result('ARL-CPT s1', [1, 1, 0, 1, 0], [true, true, true, false, false]),
    result('ARL-CPT recaps off s1', [0, 0, 0, 0, 0], [false, false, false, false, false]),
  ]);
  assert.deepEqual(rows, [
    ['ARL-CPT s1', '4x', 'a recap held the answer', '3', '66.7% (2)', '33.3% (1)'],
    ['ARL-CPT s1', '4x', 'no recap held it', '2', '50.0% (1)', '50.0% (1)'],
  ]);
});

test('LIFT stores the needle only if the gold answer gains more than a value the document does not hold', () => {
  const example = (i: number, goldGain: number, controlGain: number | null, qaWithAnswer: number | null = null): LiftExample => ({
    variant: 'paper', index: i, depth: 50, pred: '1', icl_pred: '1', score: 0, icl_score: 0,
    gold_logprob: -50 + goldGain, icl_gold_logprob: -50,
    control_logprob: controlGain === null ? null : -50 + controlGain, icl_control_logprob: controlGain === null ? null : -50, in_context: false,
    qa_pairs_with_answer: qaWithAnswer,
  });
  const stored = (lift: LiftExample[]) => checkClaims([], lift, [1]).find((c) => /stores the needle/.test(c.claim))!;
  // The gold answer gains 2 nats and so does the control: the adapter learned the kind of value, not this one.
  assert.equal(stored(Array.from({ length: 20 }, (_, i) => example(i, 2 + (i % 3) * 0.1, 2 + (i % 3) * 0.1))).met, false);
  assert.equal(stored(Array.from({ length: 20 }, (_, i) => example(i, 3 + (i % 3) * 0.1, 1))).met, true);
  const none = stored(Array.from({ length: 5 }, (_, i) => example(i, 3, null)));
  assert.equal(none.met, null);
  assert.match(none.note, /no control recorded/);
  // Auxiliary QA that holds the test answer is reported as overlap with the test.
  const logProb = (lift: LiftExample[]) => checkClaims([], lift, [1]).find((c) => /^LIFT .*gold answer log-probability/.test(c.claim))!;
  assert.match(logProb(Array.from({ length: 6 }, (_, i) => example(i, 1, 0, i < 2 ? 1 : 0))).note, /auxiliary QA overlaps the test .* in 2 of 6 documents/);
  assert.doesNotMatch(logProb(Array.from({ length: 6 }, (_, i) => example(i, 1, 0))).note, /auxiliary QA/);
});

test('an auxiliary QA pair overlaps the test when it holds the gold answer', () => {
  assert.equal(holdsAnswer({ question: 'One of the special magic', answer: 'numbers for angry-statue is: 4907448.' }, '4907448'), true);
  assert.equal(holdsAnswer({ question: 'That is one of the reasons', answer: 'art is becoming a useless occupation.' }, '4907448'), false);
});

test('continued pretraining takes its own row shares, checked like the base ones', () => {
  const small = resolveSize('small');
  assert.ok(small.cptTaskFraction + small.cptCopyFraction < small.taskFraction + small.copyFraction, 'more CPT text rows than base text rows');
  assert.equal(resolveSize('small', { cptTaskFraction: 0.1, cptCopyFraction: undefined }).cptTaskFraction, 0.1);
  assert.throws(() => resolveSize('small', { cptTaskFraction: 0.8, cptCopyFraction: 0.3 }), (err: unknown) =>
    err instanceof UserError && /--cpt-task-fraction and --cpt-copy-fraction .* \(got 0\.8 \+ 0\.3\)$/.test(err.message));
});
