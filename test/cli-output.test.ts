/** What the CLI prints: the backend line (short, or with --verbose why) and `arl --help`'s commands grouped by workflow. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { COMMAND_GROUPS } from '../src/cli/command-groups.ts';
import { backendLines } from '../src/cli/common.ts';
import { runArl } from './helpers.ts';

test('backendLines: one short line; the reason only when verbose', () => {
  const choice = { name: 'webgpu', detail: 'NVIDIA H200', reason: 'auto: hardware WebGPU adapter nvidia hopper NVIDIA H200' } as const;
  assert.equal(backendLines(choice, false), 'backend: webgpu (NVIDIA H200)');
  assert.equal(backendLines(choice, true), 'backend: webgpu (NVIDIA H200)\nbackend: auto: hardware WebGPU adapter nvidia hopper NVIDIA H200');
});

test('the backend line names the backend and its threads; --verbose adds why it was taken', async () => {
  const missing = '/nonexistent/checkpoint';
  const [plain, verbose] = await Promise.all([
    runArl('eval', '--backend', 'wasm', '--checkpoint', missing),
    runArl('eval', '--backend', 'wasm', '--checkpoint', missing, '--verbose'),
  ]);
  const backendOf = (stderr: string) => stderr.split('\n').filter((line) => line.startsWith('backend:'));
  assert.equal(backendOf(plain.stderr).length, 1, plain.stderr);
  assert.match(backendOf(plain.stderr)[0]!, /^backend: wasm \(\d+ threads?\)$/);
  assert.deepEqual(backendOf(verbose.stderr).slice(0, 1), backendOf(plain.stderr));
  assert.match(backendOf(verbose.stderr)[1]!, /^backend: requested; \d+ thread\(s\)$/);
});

test('arl --help lists the commands by workflow, each registered command exactly once; arl <cmd> --help still works', async () => {
  const [help, train, rulerEval] = await Promise.all([runArl('--help'), runArl('train', '--help'), runArl('ruler', 'eval', '--help')]);
  assert.equal(help.code, 0, help.stderr);
  const headings = help.stdout.split('\n').filter((line) => /^[A-Za-z][\w ,]*:$/.test(line));
  assert.deepEqual(headings, ['Options:', 'Commands, by workflow:', 'Data:', 'Train:', 'ARL:', 'LIFT:', 'Evaluate:', 'Export:', 'Tools:']);
  assert.doesNotMatch(help.stdout, /^Commands:$/m, 'no flat list besides the groups');
  const listed = [...help.stdout.matchAll(/^ {2}arl (\S+)/gm)].map((m) => m[1]);
  const registered = COMMAND_GROUPS.flatMap((group) => group.commands.map((command) => String(command.command)));
  assert.equal(new Set(registered).size, registered.length, 'a command registered twice');
  assert.deepEqual([...listed].sort(), [...registered].sort());
  const every = ['prepare', 'train', 'plot', 'keytokens', 'segments', 'recaps', 'augment', 'recap-data', 'answer', 'demo-arl', 'inspect', 'lift', 'lift-demo', 'eval', 'ruler', 'longbench', 'experiment', 'import', 'export', 'generate', 'bench', 'demo'];
  assert.deepEqual([...registered].sort(), [...every].sort());
  assert.equal(train.code, 0, train.stderr);
  assert.match(train.stdout, /^arl train\n\nTrain a model/);
  assert.match(train.stdout, /Examples:/);
  assert.equal(rulerEval.code, 0, rulerEval.stderr);
  assert.match(rulerEval.stdout, /^arl ruler eval\n\nRun a checkpoint on generated samples/);
});

test("every flag in every command's --help has a description", async () => {
  const commands = COMMAND_GROUPS.flatMap((group) => group.commands.map((command) => String(command.command))).filter((c) => c !== 'ruler');
  const all = [...commands.map((c) => [c]), ['ruler', 'generate'], ['ruler', 'score'], ['ruler', 'eval']];
  const helps = await Promise.all(all.map((c) => runArl(...c, '--help')));
  for (const [k, help] of helps.entries()) {
    assert.equal(help.code, 0, help.stderr);
    // yargs prints a flag without a description as its name followed straight by its [type] or [default].
    const bare = help.stdout.split('\n').filter((line) => /^ {2}(-\w, )?--[\w-]+(, --[\w-]+)? +\[/.test(line));
    assert.deepEqual(bare, [], `arl ${all[k].join(' ')} --help`);
  }
});
