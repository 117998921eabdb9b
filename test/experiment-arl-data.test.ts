/**
 * The experiment's arl-data stage: progress lines through the log, and `--workers 2` (steps 1-3 per shard in two
 * worker processes, merged by step 4) writing the same augmented data and recording the same result as one
 * process, at the toy size on the deterministic cpu backend. The base's evaluation, the one stage between, is
 * recorded as done so the runs go straight from the trained base to arl-data.
 */
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { AUGMENT_FILES } from '../src/arl/augment.ts';
import { progressText, recapDataProgressLog, StepThrottle } from '../src/arl/progress-log.ts';
import { ShardProgress } from '../src/eval/arl-data-workers.ts';
import { runArl } from './helpers.ts';

const root = mkdtempSync(join(tmpdir(), 'arl-experiment-arl-data-'));
const experiment = (out: string, ...extra: string[]) =>
  runArl('experiment', '--size', 'toy', '--backend', 'cpu', '--base-steps', '1', '--cpt-docs', '2', '--recall-docs', '2', '--out', out, ...extra);

/** Every file of step 4's output, as bytes. */
function stepFourFiles(run: string): Record<string, string> {
  const arl = join(run, 'arl');
  const files: Record<string, string> = {};
  for (const name of [AUGMENT_FILES.records, AUGMENT_FILES.summary]) files[name] = readFileSync(join(arl, name)).toString('base64');
  const prepared = join(arl, AUGMENT_FILES.prepared);
  for (const name of readdirSync(prepared).sort()) files[`${AUGMENT_FILES.prepared}/${name}`] = readFileSync(join(prepared, name)).toString('base64');
  return files;
}

test('arl-data logs its progress, and two workers write the same augmented data and result as one process', async () => {
  const base = join(root, 'base');
  const first = await experiment(base, '--stop-after', 'test-data');
  assert.equal(first.code, 0, first.stderr);
  const state = JSON.parse(readFileSync(join(base, 'state.json'), 'utf8'));
  state.stages['eval base 1x'] = { seconds: 0, finished_at: new Date().toISOString(), result: {} };
  writeFileSync(join(base, 'state.json'), JSON.stringify(state));

  const one = join(root, 'one', 'run');
  const two = join(root, 'two', 'run');
  cpSync(base, one, { recursive: true });
  cpSync(base, two, { recursive: true });
  const single = await experiment(one, '--stop-after', 'arl-data');
  assert.equal(single.code, 0, single.stderr);
  assert.match(single.stderr, /^ {2}arl-data 1\/4 keytokens: 4 documents, \d+ key tokens \([\d.]+ s\)$/m);
  assert.match(single.stderr, /^ {2}arl-data 2\/4 segments: a segment kept for \d+ of \d+ key tokens, \d+ candidates scored \([\d.]+ s\)$/m);
  assert.match(single.stderr, /^ {2}arl-data 4\/4 augment: /m);

  const split = await experiment(two, '--stop-after', 'arl-data', '--workers', '2');
  assert.equal(split.code, 0, split.stderr);
  assert.match(split.stderr, /^ {2}arl-data worker 2 of 2: 1\/4 keytokens: 2 documents, \d+ key tokens \([\d.]+ s\)$/m);
  assert.match(split.stderr, /^ {2}arl-data 4\/4 augment: /m);
  const result = (run: string): unknown => JSON.parse(readFileSync(join(run, 'state.json'), 'utf8')).stages['arl-data'].result;
  assert.deepEqual(result(two), result(one));
  const [oneFiles, twoFiles] = [stepFourFiles(one), stepFourFiles(two)];
  assert.deepEqual(Object.keys(twoFiles), Object.keys(oneFiles));
  for (const name of Object.keys(oneFiles)) {
    // The summary and meta.json name the run's arl folder: the same but for the run folder.
    const [a, b] = [oneFiles[name], twoFiles[name]].map((f) => Buffer.from(f!, 'base64').toString('utf8').replaceAll(join(root, 'two'), join(root, 'one')));
    assert.equal(b, a, name);
  }
  assert.ok(existsSync(join(two, 'arl', 'shard-1-of-2', 'documents.jsonl')), 'the shard folders stay');
  assert.ok(!existsSync(join(two, 'arl', 'workers')), 'the jobs and logs go once merged');
});

test('progress lines: done of total, what was found, rate of this run, ETA; at most one per interval per step', () => {
  assert.equal(progressText(1, { done: 30, doneNow: 20, total: 60, found: 240 }, 10), '30/60 documents, 240 key tokens, 2.00/s, ETA 15 s');
  assert.equal(progressText(2, { done: 100, doneNow: 100, total: 100, found: 7 }, 4), '100/100 key tokens, 7 segments kept, 25/s, ETA 0 s');
  assert.equal(progressText(3, { done: 0, doneNow: 0, total: 5, found: 0 }, 1), '0/5 segments, 0 failed, 0.00/s, ETA unknown');

  const throttle = new StepThrottle(0);
  assert.notEqual(throttle.due(1), null);
  const slow = new StepThrottle(60_000);
  slow.begin(1);
  assert.equal(slow.due(1), null, 'no line before the interval has passed since the step began');

  const lines: string[] = [];
  const progress = recapDataProgressLog((m) => lines.push(m), { documents: 3, label: 'arl-data', everyMs: 0 });
  progress.onDocument!({ documents: 1, tokensScoredNow: 50, keyTokens: 8 });
  progress.onStep!({ step: 'keytokens', seconds: 1.25, summary: { documents: 3, key_tokens: 24 } as never });
  progress.onKeyToken!({ keyTokens: 1, segments: 1 });
  assert.match(lines[0]!, /^ {2}arl-data 1\/4 keytokens: 1\/3 documents, 8 key tokens, [\d.]+\/s, ETA \d+ s$/);
  assert.equal(lines[1], '  arl-data 1/4 keytokens: 3 documents, 24 key tokens (1.3 s)');
  assert.match(lines[2]!, /^ {2}arl-data 2\/4 segments: 1\/24 key tokens, 1 segments kept, /);

  // Across workers: the earliest step any worker is in, its counts summed.
  const merged: string[] = [];
  const shards = new ShardProgress(2, (m) => merged.push(m), 'arl-data', 0);
  shards.update(0, 1, { done: 2, doneNow: 2, total: 3, found: 16 });
  assert.equal(merged.length, 0, 'no line until every worker has counted');
  shards.update(1, 1, { done: 1, doneNow: 1, total: 3, found: 8 });
  shards.update(0, 2, { done: 5, doneNow: 5, total: 24, found: 1 });
  assert.match(merged[0]!, /^ {2}arl-data 1\/4 keytokens: 3\/6 documents, 24 key tokens, [\d.]+\/s, ETA \d+ s \(2 workers, 2 still in this step\)$/);
  assert.match(merged.at(-1)!, /^ {2}arl-data 1\/4 keytokens: 3\/6 documents, 24 key tokens, .* \(2 workers, 1 still in this step\)$/);

  // A shard without documents counts nothing, and the others' lines go on past it.
  const empty: string[] = [];
  const withEmpty = new ShardProgress(2, (m) => empty.push(m), 'arl-data', 0);
  withEmpty.stepDone(1, 'keytokens');
  withEmpty.update(0, 1, { done: 1, doneNow: 1, total: 1, found: 8 });
  withEmpty.stepDone(1, 'segments');
  withEmpty.stepDone(0, 'keytokens');
  withEmpty.update(0, 2, { done: 3, doneNow: 3, total: 8, found: 1 });
  assert.match(empty[0]!, /^ {2}arl-data 1\/4 keytokens: 1\/1 documents, 8 key tokens, .* \(2 workers, 1 still in this step\)$/);
  assert.match(empty.at(-1)!, /^ {2}arl-data 2\/4 segments: 3\/8 key tokens, 1 segments kept, .* \(2 workers, 1 still in this step\)$/);
});
