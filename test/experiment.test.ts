/**
 * The experiment runner at its toy size (a 1-layer model, a few steps, one sample per length): it completes,
 * writes results.json, results.md and the plots, and a rerun redoes only the stages not recorded as done.
 * Runs on the wasm backend: the pure-JS cpu backend takes minutes for the same work.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { checkClaims, LENGTH_MULTIPLES, METHODS, type MethodLengthResult } from '../src/eval/experiment.ts';
import { assertUserError, runArl } from './helpers.ts';

const out = join(mkdtempSync(join(tmpdir(), 'arl-experiment-')), 'run');
const experiment = (...extra: string[]) => runArl('experiment', '--size', 'toy', '--backend', 'wasm', '--out', out, ...extra);

test('the toy experiment completes, writes every output, and a rerun only redoes unfinished stages', async () => {
  const first = await experiment();
  assert.equal(first.code, 0, first.stderr);
  const results = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'));
  assert.equal(results.ruler.length, METHODS.length * LENGTH_MULTIPLES.length);
  for (const r of results.ruler as MethodLengthResult[]) {
    if (r.skipped) continue;
    assert.ok(r.examples.length > 0, `${r.method} ${r.multiple}x has no examples`);
    assert.ok(r.average >= 0 && r.average <= 100);
  }
  assert.deepEqual(Object.keys(results.longppl), ['base', 'cpt-plain', 'cpt-arl']);
  assert.ok(results.longppl.base.perplexity > 1);
  assert.equal(results.claims.length, 2);
  const markdown = readFileSync(join(out, 'results.md'), 'utf8');
  assert.match(markdown, /^\| method \| 1x T \(\d+ tok\) \| 2x T/m);
  assert.match(markdown, /^\| plain-CPT \|/m);
  for (const plot of ['plots/ruler-vs-length.svg', 'plots/training-loss.svg']) {
    const svg = readFileSync(join(out, plot), 'utf8');
    assert.match(svg, /^<svg [^>]*>[\s\S]*<\/svg>$/);
    assert.match(svg, /class="series"/);
  }

  // Forget two finished stages, as if the run had stopped before them.
  const statePath = join(out, 'state.json');
  const state = JSON.parse(readFileSync(statePath, 'utf8'));
  const stages = Object.keys(state.stages);
  assert.ok(stages.includes('train-base') && stages.includes('longppl') && stages.includes('ruler base 2x'));
  delete state.stages.longppl;
  delete state.stages['ruler base 2x'];
  writeFileSync(statePath, JSON.stringify(state));
  const second = await experiment();
  assert.equal(second.code, 0, second.stderr);
  const started = [...second.stderr.matchAll(/^\[experiment\] (.+) \.\.\.$/gm)].map((m) => m[1]);
  assert.deepEqual(started, ['ruler base 2x', 'longppl']);
  const skipped = [...second.stderr.matchAll(/^\[experiment\] (.+): done earlier/gm)].map((m) => m[1]);
  assert.equal(skipped.length, stages.length - 2);
  const again = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'));
  assert.deepEqual(again.ruler, results.ruler);

  // Other evaluation settings redo the evaluation only; other training settings are refused rather than mixed in.
  const third = await experiment('--per-length', '2');
  assert.equal(third.code, 0, third.stderr);
  const redone = [...third.stderr.matchAll(/^\[experiment\] (.+) \.\.\.$/gm)].map((m) => m[1]!);
  assert.ok(!redone.some((name) => name.startsWith('train') || name === 'data' || name === 'arl-data'), redone.join(', '));
  assert.ok(redone.includes('ruler-data') && redone.includes('longppl'));
  const twice = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'));
  assert.equal(twice.ruler.find((r: MethodLengthResult) => r.method === 'base' && r.multiple === 1).examples.length, 2);
  assertUserError(await experiment('--base-steps', '3'), /started with other settings/);
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
  assertUserError(await run('--corpus', small), /two\.jsonl: the corpus has 2 documents; the experiment asks for 6 \(--base-docs 3 \+ --cpt-docs 2 \+ --heldout-docs 1\)/);
  assertUserError(await run('--corpus', small, '--base-docs', '1', '--cpt-docs', '1', '--heldout-docs', '1'), /two\.jsonl: the corpus has 2 documents; the experiment asks for 3/);
  assertUserError(await run('--corpus', join(dir, 'missing.jsonl')), /missing\.jsonl/);
});

test('claims: relative gains, and no verdict without the method', () => {
  const row = (method: string, multiple: number, average: number, examples: MethodLengthResult['examples'] = []): MethodLengthResult => ({ method, multiple, length: 0, average, tasks: {}, examples });
  const example = (score: number, inContext: boolean, iclScore?: number) => ({ task: 'niah_single' as const, index: 0, length: 0, depth: 50, score, in_context: inContext, pred: '', icl_score: iclScore });
  const [arl, lift] = checkClaims([
    row('plain-CPT', 4, 20),
    row('ARL-CPT', 4, 30),
    row('LIFT (base)', 8, 0, [example(0, true, 1), example(0.4, false, 0.2), example(0.2, false, 0.2)]),
  ]);
  assert.ok(Math.abs(arl!.relative! - 0.5) < 1e-12);
  assert.equal(arl!.met, true);
  assert.ok(Math.abs(lift!.relative! - 0.5) < 1e-9);
  assert.equal(lift!.met, true);
  const [missing] = checkClaims([row('plain-CPT', 4, 20)]);
  assert.equal(missing!.met, null);
  const [below] = checkClaims([row('plain-CPT', 4, 20), row('ARL-CPT', 4, 22)]);
  assert.equal(below!.met, false);
});
