/**
 * `arl experiment --workers N` at the toy size on the deterministic cpu backend: an evaluation stage split
 * across two worker processes writes the same predictions and records the same result as one process; a worker
 * that fails is started again once, alone; one that fails again fails the stage with one line and no merged file,
 * and the rerun completes it; one killed mid-stage recovers on its second try. The LIFT stage with
 * cloze QA is checked the same way on the wasm backend (on the cpu backend each document trains for about 45 s).
 */
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { runArl } from './helpers.ts';

const STAGE = 'eval base 1x';
const root = mkdtempSync(join(tmpdir(), 'arl-experiment-workers-'));
const experiment = (out: string, ...extra: string[]) =>
  runArl('experiment', '--size', 'toy', '--backend', 'cpu', '--base-steps', '1', '--per-length', '3', '--stop-after', STAGE, '--out', out, ...extra);
const predictionsDir = (run: string) => join(run, 'predictions', 'base', '1x');
const stageResult = (run: string): unknown => JSON.parse(readFileSync(join(run, 'state.json'), 'utf8')).stages[STAGE].result;

/** A copy of run folder `from` with its evaluation forgotten: the trained base and the test sets stay. */
function withoutEvaluation(from: string, to: string): string {
  cpSync(from, to, { recursive: true });
  rmSync(join(to, 'predictions'), { recursive: true, force: true });
  const state = JSON.parse(readFileSync(join(to, 'state.json'), 'utf8'));
  delete state.stages[STAGE];
  writeFileSync(join(to, 'state.json'), JSON.stringify(state));
  return to;
}

test('two workers give the same predictions and results as one; a failing worker is one line, and a rerun completes', async () => {
  const one = join(root, 'one');
  const first = await experiment(one);
  assert.equal(first.code, 0, first.stderr);

  const two = withoutEvaluation(one, join(root, 'two'));
  const split = await experiment(two, '--workers', '2');
  assert.equal(split.code, 0, split.stderr);
  assert.match(split.stderr, /^ {2}eval base 1x: 6\/6 examples in 2 workers, [\d.]+\/s, ETA 0 s$/m);
  assert.deepEqual(stageResult(two), stageResult(one));
  for (const file of ['predictions.jsonl', 'predictions-done.jsonl']) {
    assert.equal(readFileSync(join(predictionsDir(two), file), 'utf8'), readFileSync(join(predictionsDir(one), file), 'utf8'), file);
  }
  assert.ok(!existsSync(join(predictionsDir(two), 'workers')), 'the shards are removed once merged');

  // Worker 2 cannot make its shard folder: a file is in the way.
  const failing = withoutEvaluation(one, join(root, 'failing'));
  const blocked = join(predictionsDir(failing), 'workers', 'worker-2-of-2');
  mkdirSync(join(blocked, '..'), { recursive: true });
  writeFileSync(blocked, '');
  const failed = await experiment(failing, '--workers', '2');
  assert.equal(failed.code, 2, failed.stderr);
  const lines = failed.stderr.trim().split('\n').filter((l) => !/^(backend:|\[experiment\]| {2})/.test(l));
  assert.equal(lines.length, 1, failed.stderr);
  assert.match(lines[0]!, /^arl: eval base 1x: worker 2 of 2 failed: EEXIST[^\n]*worker-2-of-2'? \(its log: \S+worker-2-of-2\.log\)$/);
  assert.match(failed.stderr, /^ {2}eval base 1x: worker 2 of 2 failed \(EEXIST[^\n]*\); starting it again alone$/m, 'a failed worker gets one more try');
  assert.ok(!existsSync(join(predictionsDir(failing), 'predictions.jsonl')), 'no merged file');
  assert.equal(JSON.parse(readFileSync(join(failing, 'state.json'), 'utf8')).stages[STAGE], undefined);

  rmSync(blocked);
  const rerun = await experiment(failing, '--workers', '2');
  assert.equal(rerun.code, 0, rerun.stderr);
  assert.deepEqual(stageResult(failing), stageResult(one));
  assert.equal(readFileSync(join(predictionsDir(failing), 'predictions.jsonl'), 'utf8'), readFileSync(join(predictionsDir(one), 'predictions.jsonl'), 'utf8'));
});

/** The pid of a running process whose command line holds `needle` (Linux /proc), if any. */
function pidWith(needle: string): number | undefined {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(join('/proc', entry, 'cmdline'), 'utf8').includes(needle)) return Number(entry);
    } catch {
      // the process ended while we looked
    }
  }
  return undefined;
}

test('a worker killed mid-stage is started again alone, and the stage ends with the answers of one process', async () => {
  const one = join(root, 'one');
  const killed = withoutEvaluation(one, join(root, 'killed'));
  const job = join(predictionsDir(killed), 'workers', 'worker-1-of-2.job.json');
  let kills = 0;
  const poll = setInterval(() => {
    const pid = kills === 0 && existsSync(job) ? pidWith(job) : undefined;
    if (pid === undefined) return;
    process.kill(pid, 'SIGKILL');
    kills++;
  }, 5);
  const run = await experiment(killed, '--workers', '2');
  clearInterval(poll);
  assert.equal(kills, 1, 'worker 1 was killed once');
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stderr, /^ {2}eval base 1x: worker 1 of 2 failed \([^\n]*\); starting it again alone$/m);
  assert.deepEqual(stageResult(killed), stageResult(one));
  assert.equal(readFileSync(join(predictionsDir(killed), 'predictions.jsonl'), 'utf8'), readFileSync(join(predictionsDir(one), 'predictions.jsonl'), 'utf8'));
});

test('LIFT with cloze QA in two workers records the same results and predictions as in one', async () => {
  const stage = 'lift paper + cloze QA';
  const lift = (out: string, ...extra: string[]) =>
    runArl('experiment', '--size', 'toy', '--backend', 'wasm', '--base-steps', '1', '--lift-docs', '2', '--stop-after', stage, '--out', out, ...extra);
  const predictions = (run: string) => join(run, 'predictions', 'lift-paper-cloze-QA');
  // Training time is the one field that may differ between runs.
  const withoutTimes = (file: string) => readFileSync(file, 'utf8').replace(/,"lift_train_seconds":[\d.]+/g, '');
  const one = join(root, 'lift-one');
  const first = await lift(one);
  assert.equal(first.code, 0, first.stderr);
  const two = join(root, 'lift-two');
  cpSync(one, two, { recursive: true });
  rmSync(predictions(two), { recursive: true, force: true });
  const state = JSON.parse(readFileSync(join(two, 'state.json'), 'utf8'));
  delete state.stages[stage];
  writeFileSync(join(two, 'state.json'), JSON.stringify(state));
  const split = await lift(two, '--workers', '2');
  assert.equal(split.code, 0, split.stderr);
  assert.deepEqual(started(split.stderr), [stage]);
  const result = (run: string): unknown => JSON.parse(readFileSync(join(run, 'state.json'), 'utf8')).stages[stage].result;
  assert.deepEqual(result(two), result(one));
  for (const file of ['predictions.jsonl', 'predictions-done.jsonl']) {
    assert.equal(withoutTimes(join(predictions(two), file)), withoutTimes(join(predictions(one), file)), file);
  }
  assert.match(readFileSync(join(predictions(one), 'predictions.jsonl'), 'utf8'), /"qa_pairs":10/);
});

const started = (stderr: string) => [...stderr.matchAll(/^\[experiment\] (.+) \.\.\.$/gm)].map((m) => m[1]);

test('--workers must be a positive integer', async () => {
  const r = await runArl('experiment', '--size', 'toy', '--backend', 'cpu', '--out', join(root, 'bad'), '--workers', '0');
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /--workers must be a positive integer \(got 0\)/);
});
