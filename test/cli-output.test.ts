/** What the CLI prints by default and with --verbose: the backend line and the grouped command list. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
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
