/** The CLI end to end: help, import -> generate parity, export round trip, and one-line errors for bad input. */
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { readSafetensors } from '../src/io/safetensors.ts';
import { assertUserError, prepareTinyCorpus, REPO_ROOT, runArl, TEST_FIXTURES } from './helpers.ts';

const ARL = join(REPO_ROOT, 'bin', 'arl.js');
const FIXTURE = join(TEST_FIXTURES, 'tiny-llama');
const arl = runArl;

const work = mkdtempSync(join(tmpdir(), 'arl-cli-'));
const imported = join(work, 'imported');

describe('arl CLI', () => {
  before(async () => {
    const r = await arl('import', '--hf', FIXTURE, '--out', imported);
    assert.equal(r.code, 0, r.stderr);
  });

  test('--help lists the commands with examples', async () => {
    const r = await arl('--help');
    assert.equal(r.code, 0);
    for (const cmd of ['prepare', 'train', 'generate', 'eval', 'import', 'export', 'bench', 'demo']) assert.match(r.stdout, new RegExp(`arl ${cmd}`));
    const train = await arl('train', '--help');
    assert.match(train.stdout, /Examples:/);
  });

  test('generate --json on the imported HF model reproduces the reference greedy continuation', async () => {
    const ref = JSON.parse(readFileSync(join(FIXTURE, 'reference.json'), 'utf8')) as { greedy: { prompt: number[]; output: number[] } };
    const { prompt, output } = ref.greedy;
    const r = await arl('generate', '--checkpoint', imported, '--prompt-ids', prompt.join(','), '--max-new-tokens', '16', '--greedy', '--json', '--no-stop-at-eos', '--backend', 'cpu');
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout).ids, output.slice(prompt.length));
  });

  test('export --format hf round-trips the HF weights bit for bit', async () => {
    const out = join(work, 'exported');
    const r = await arl('export', '--checkpoint', imported, '--format', 'hf', '--out', out);
    assert.equal(r.code, 0, r.stderr);
    const original = readSafetensors(join(FIXTURE, 'model.safetensors'));
    const exported = readSafetensors(join(out, 'model.safetensors'));
    assert.deepEqual([...exported.keys()].sort(), [...original.keys()].sort());
    for (const [name, arr] of original) {
      assert.deepEqual(exported.get(name)!.shape, arr.shape, name);
      assert.ok(Buffer.from(exported.get(name)!.data.buffer).equals(Buffer.from(arr.data.buffer)), name);
    }
    const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
    assert.equal(config.num_key_value_heads, 2);
  });

  test('bad input: one line on stderr, exit code 2, no stack trace', async () => {
    const truncated = join(work, 'truncated');
    cpSync(imported, truncated, { recursive: true });
    truncateSync(join(truncated, 'model.safetensors'), 5000);
    const mismatched = join(work, 'mismatched');
    cpSync(imported, mismatched, { recursive: true });
    const config = JSON.parse(readFileSync(join(mismatched, 'config.json'), 'utf8'));
    writeFileSync(join(mismatched, 'config.json'), JSON.stringify({ ...config, intermediate_size: 100 }));
    const emptyCorpus = join(work, 'empty');
    mkdirSync(emptyCorpus);
    mkdirSync(join(work, 'not-a-checkpoint'));
    writeFileSync(join(work, 'not-a-checkpoint', 'notes.txt'), 'keep me');
    const badJsonl = join(work, 'bad.jsonl');
    writeFileSync(badJsonl, '{"text": "fine"}\n{"text": oops}\n');
    const noTokenizer = join(work, 'vocab-mismatch');
    cpSync(imported, noTokenizer, { recursive: true });

    const cases: [string[], RegExp][] = [
      [['generate', '--checkpoint', join(work, 'nope'), '--prompt', 'x'], /nope: no such checkpoint/],
      [['generate', '--checkpoint', truncated, '--prompt-ids', '1,2'], /model\.safetensors: .*truncated/],
      [['generate', '--checkpoint', mismatched, '--prompt-ids', '1,2'], /mlp\.gate_proj\.weight has shape .* config and weights do not match/],
      [['import', '--hf', mismatched, '--out', join(work, 'import-mismatched')], /mlp\.gate_proj\.weight has shape .* config and weights do not match/],
      [['import', '--hf', truncated, '--out', join(work, 'import-truncated')], /model\.safetensors: .*truncated/],
      [['generate', '--checkpoint', noTokenizer, '--prompt', 'hello'], /tokenizer has 4096 tokens but the model .* vocabulary of 256/],
      [['generate', '--checkpoint', imported, '--prompt-ids', '1,x'], /--prompt-ids: expected comma-separated/],
      [['generate', '--checkpoint', imported, '--prompt-ids', '1,999'], /id 999 is outside the model's vocabulary of 256/],
      [['export', '--checkpoint', imported, '--format', 'hf', '--out', emptyCorpus.replace('empty', 'not-a-checkpoint')], /not-a-checkpoint: exists and is not a checkpoint/],
      [['prepare', '--corpus', emptyCorpus, '--out', join(work, 'p1')], /no documents|no \.txt/],
      [['prepare', '--corpus', badJsonl, '--out', join(work, 'p2')], /bad\.jsonl:2: not valid JSON/],
      [['train', '--data', join(work, 'nowhere'), '--out', join(work, 'r1')], /nowhere.*arl prepare/],
    ];
    const results = await Promise.all(cases.map(([args]) => arl(...args)));
    results.forEach((r, i) => assertUserError(r, cases[i][1]));
    assert.equal(readFileSync(join(work, 'not-a-checkpoint', 'notes.txt'), 'utf8'), 'keep me');
    for (const failed of ['import-mismatched', 'import-truncated']) assert.deepEqual(readdirSync(work).filter((f) => f.startsWith(failed)), [], `${failed} left files behind`);
  });

  test('train runs from the CLI, refuses to overwrite a run without --resume, and resumes with it', async () => {
    const data = await prepareTinyCorpus(6);
    const out = join(work, 'run');
    const common = ['--data', data, '--out', out, '--backend', 'cpu', '--dim', '32', '--layers', '1', '--heads', '2', '--max-seq', '32', '--seq', '16', '--batch', '2', '--eval-every', '0', '--save-every', '2'];
    const first = await arl('train', ...common, '--steps', '2');
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /loss .* -> .* over 2 steps/);
    assertUserError(await arl('train', ...common, '--steps', '4'), /already holds a training run; pass --resume/);
    const resumed = await arl('train', ...common, '--steps', '4', '--resume');
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stdout, /over 2 steps; checkpoint .*ckpt-000004/);
    assert.equal(readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').length, 4);
  });
});

test('Ctrl-C during training saves a checkpoint at the step in flight and exits cleanly', async () => {
  const { spawn } = await import('node:child_process');
  const { existsSync } = await import('node:fs');
  const data = await prepareTinyCorpus(6);
  const out = join(work, 'interrupted');
  const child = spawn(process.execPath, [ARL, 'train', '--data', data, '--out', out, '--backend', 'cpu', '--dim', '32', '--layers', '1', '--heads', '2', '--max-seq', '32', '--seq', '16', '--batch', '2', '--eval-every', '0', '--steps', '100000', '--save-every', '100000'], { cwd: REPO_ROOT });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => {
    stderr += d;
    if (/train \d+\/100000/.test(stderr) && !child.killed) child.kill('SIGINT');
  });
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  assert.equal(code, 0, stderr);
  const stoppedAt = Number(/stopped at step (\d+)/.exec(stdout)?.[1]);
  assert.ok(stoppedAt >= 1, stdout);
  assert.ok(existsSync(join(out, `ckpt-${String(stoppedAt).padStart(6, '0')}`, 'model.safetensors')));
  const state = JSON.parse(readFileSync(join(out, `ckpt-${String(stoppedAt).padStart(6, '0')}`, 'state.json'), 'utf8'));
  assert.equal(state.step, stoppedAt);
});
