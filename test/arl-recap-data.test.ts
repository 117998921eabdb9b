/** `arl recap-data`: steps 1-4 in one command; SIGKILLed mid-run and rerun, it ends with the files of an uninterrupted run. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { AUGMENT_FILES } from '../src/arl/augment.ts';
import { KEY_TOKEN_FILES } from '../src/arl/key-tokens.ts';
import { RECAP_FILES } from '../src/arl/recap.ts';
import { SEGMENT_FILES } from '../src/arl/relevant-segment.ts';
import { makeTinyArlInputs, REPO_ROOT, runArl, useCpu } from './helpers.ts';

const work = mkdtempSync(join(tmpdir(), 'arl-recap-data-'));
let inputs: { checkpoint: string; corpus: string };

/** recap-data flags: a margin that keeps every segment, so all four steps have work; one candidate per forward pass, so step 2 searches each document in a pass of its own and a kill can land between two. */
const flags = (out: string): string[] => ['recap-data', '--checkpoint', inputs.checkpoint, '--corpus', inputs.corpus, '--out', out, '--recapper', 'extractive', '--top-k', '3', '--margin', '-100', '--max-recap-tokens', '12', '--mix', '1', '--segment-batch', '1', '--backend', 'cpu'];

/** The outputs that must not depend on interruptions (summaries name their folder, so they are compared by content elsewhere). */
function outputs(dir: string): Record<string, string> {
  const files: Record<string, string> = {};
  for (const name of [KEY_TOKEN_FILES.records, KEY_TOKEN_FILES.documents, SEGMENT_FILES.records, AUGMENT_FILES.records]) files[name] = readFileSync(join(dir, name), 'utf8');
  // Recaps are appended as they finish; compare them as a set of lines.
  files[RECAP_FILES.records] = readFileSync(join(dir, RECAP_FILES.records), 'utf8').trim().split('\n').sort().join('\n');
  const shards = join(dir, AUGMENT_FILES.prepared);
  for (const name of readdirSync(shards).filter((f) => f.endsWith('.bin')).sort()) files[name] = readFileSync(join(shards, name)).toString('base64');
  return files;
}

describe('arl recap-data', () => {
  before(async () => {
    await useCpu();
    inputs = await makeTinyArlInputs(work, 3);
  });

  test('one line per step; SIGKILL mid-run then a rerun gives the uninterrupted run\'s files', async () => {
    const reference = join(work, 'reference');
    const r = await runArl(...flags(reference));
    assert.equal(r.code, 0, r.stderr);
    for (const step of ['1/4 keytokens', '2/4 segments', '3/4 recaps', '4/4 augment']) assert.match(r.stdout, new RegExp(`^${step} .*\\(\\d+\\.\\d s\\)$`, 'm'));
    assert.match(r.stdout, /4\/4 augment 3 documents, 2 with recaps; 2 written with them/);

    // Kill the second run once step 1 is done and step 2 has finished a document.
    const killed = join(work, 'killed');
    const child = spawn(process.execPath, [join(REPO_ROOT, 'bin', 'arl.js'), ...flags(killed)], { cwd: REPO_ROOT, stdio: 'ignore' });
    const progress = join(killed, `${SEGMENT_FILES.documents}.partial`);
    const signal = await new Promise<NodeJS.Signals | null>((resolve) => {
      const poll = setInterval(() => {
        if (existsSync(progress) && readFileSync(progress, 'utf8').includes('\n')) {
          child.kill('SIGKILL');
          clearInterval(poll);
        }
      }, 5);
      child.on('exit', (_code, sig) => {
        clearInterval(poll);
        resolve(sig);
      });
    });
    assert.equal(signal, 'SIGKILL', 'the run was killed before it finished');
    assert.ok(!existsSync(join(killed, AUGMENT_FILES.records)), 'killed before step 4');

    const rerun = await runArl(...flags(killed));
    assert.equal(rerun.code, 0, rerun.stderr);
    assert.match(rerun.stdout, /3\/4 recaps \d+ of \d+ segments have recaps \(extractive: \d+ made now, 0 cached, 0 done before\)/);
    assert.deepEqual(outputs(killed), outputs(reference));
    const summary = (dir: string) => {
      const { keytokens: _k, ...rest } = JSON.parse(readFileSync(join(dir, AUGMENT_FILES.summary), 'utf8'));
      return rest;
    };
    assert.deepEqual(summary(killed), summary(reference));
  });

  test('--precision mixed off webgpu is refused with one line before the output folder is written', async () => {
    const out = join(work, 'mixed');
    const r = await runArl(...flags(out), '--precision', 'mixed');
    assert.equal(r.code, 2, r.stderr);
    const lines = r.stderr.trim().split('\n').filter((l) => !l.startsWith('backend:'));
    assert.deepEqual(lines, ['arl: --precision mixed: mixed precision unavailable: the f16 matmul needs the webgpu backend (this run uses cpu)']);
    assert.deepEqual(existsSync(out) ? readdirSync(out).filter((f) => !f.startsWith('.')) : [], []);
  });
});
