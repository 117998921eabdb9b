/** Output-folder locks: one writer per folder, a second one refused with the owner named, stale locks taken over. */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { before, describe, test } from 'node:test';
import { UserError } from '../src/io/errors.ts';
import { LOCK_FILE, lockFolder } from '../src/io/lock.ts';
import { assertUserError, type CliResult, prepareTinyCorpus, REPO_ROOT, runArl } from './helpers.ts';

const work = mkdtempSync(join(tmpdir(), 'arl-lock-'));

/** The pid of a process that has exited. */
function deadPid(): number {
  return Number(execFileSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }));
}

describe('lockFolder', () => {
  test('creates the folder and .lock with pid, command and start time; release removes it', () => {
    const dir = join(work, 'a', 'b');
    const release = lockFolder(dir, 'arl test one');
    const owner = JSON.parse(readFileSync(join(dir, LOCK_FILE), 'utf8'));
    assert.equal(owner.pid, process.pid);
    assert.equal(owner.command, 'arl test one');
    assert.ok(!Number.isNaN(Date.parse(owner.started)));
    const again = lockFolder(dir, 'arl test nested');
    again();
    assert.ok(existsSync(join(dir, LOCK_FILE)), 'a nested hold of the same folder keeps the lock');
    release();
    assert.ok(!existsSync(join(dir, LOCK_FILE)));
  });

  test('a lock held by a live process on this host is refused with its pid and command', () => {
    const dir = join(work, 'live');
    lockFolder(dir, 'x')();
    writeFileSync(join(dir, LOCK_FILE), JSON.stringify({ pid: process.ppid, host: hostname(), command: 'arl train --out live', started: '2026-01-01T00:00:00.000Z' }));
    assert.throws(() => lockFolder(dir), (err) => err instanceof UserError && err.message === `${dir}: already being written by pid ${process.ppid} (arl train --out live, since 2026-01-01T00:00:00.000Z); wait for it to finish, or choose another output folder`);
  });

  test('a lock from another host is not taken over', () => {
    const dir = join(work, 'remote');
    lockFolder(dir, 'x')();
    writeFileSync(join(dir, LOCK_FILE), JSON.stringify({ pid: deadPid(), host: `not-${hostname()}`, command: 'arl experiment', started: 'then' }));
    assert.throws(() => lockFolder(dir), /already being written by pid \d+ on not-.* \(arl experiment, since then\)/);
  });

  test('a stale lock (its process is gone) is taken over', () => {
    const dir = join(work, 'stale');
    lockFolder(dir, 'x')();
    const pid = deadPid();
    writeFileSync(join(dir, LOCK_FILE), JSON.stringify({ pid, host: hostname(), command: 'arl keytokens', started: 'then' }));
    const release = lockFolder(dir, 'arl test');
    assert.equal(JSON.parse(readFileSync(join(dir, LOCK_FILE), 'utf8')).pid, process.pid);
    release();
  });
});

describe('commands take the lock of their output folder', () => {
  let data: string;
  const train = (out: string) => runArl('train', '--data', data, '--out', out, '--backend', 'cpu', '--dim', '16', '--layers', '1', '--heads', '2', '--max-seq', '32', '--seq', '16', '--batch', '2', '--eval-every', '0', '--steps', '1');
  before(async () => {
    data = await prepareTinyCorpus(4);
  });

  test('a second writer is refused with one line naming the first (pid, command)', async () => {
    const out = join(work, 'run-held');
    const release = lockFolder(out, 'arl train --out run-held (the first writer)');
    try {
      assertUserError(await train(out), new RegExp(`run-held: already being written by pid ${process.pid} \\(arl train --out run-held \\(the first writer\\), since .*\\); wait for it to finish, or choose another output folder`));
      assert.ok(!existsSync(join(out, 'latest')));
    } finally {
      release();
    }
    const r = await train(out);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!existsSync(join(out, LOCK_FILE)), 'released at exit');
  });

  test('demo-arl refuses to start while another process writes its folder, before any training', async () => {
    const cwd = join(work, 'demo-cwd');
    const out = join(cwd, 'checkpoints', 'demo-arl');
    const release = lockFolder(out, 'arl demo-arl (the first writer)');
    try {
      const r = await promisify(execFile)(process.execPath, [join(REPO_ROOT, 'bin', 'arl.js'), 'demo-arl', '--backend', 'cpu'], { cwd, env: { ...process.env, FORCE_COLOR: '0' } })
        .then(({ stdout, stderr }) => ({ code: 0, stdout, stderr }), (err: CliResult) => ({ code: err.code, stdout: err.stdout, stderr: err.stderr }));
      assertUserError(r, /checkpoints\/demo-arl: already being written by pid \d+ \(arl demo-arl \(the first writer\), since .*\)/);
      assert.ok(!existsSync(join(cwd, 'checkpoints', 'demo')), 'the base model was not trained');
    } finally {
      release();
    }
  });

  test('a stale lock left by a killed run is taken over with a note on stderr', async () => {
    const out = join(work, 'run-stale');
    lockFolder(out, 'x')();
    const pid = deadPid();
    writeFileSync(join(out, LOCK_FILE), JSON.stringify({ pid, host: hostname(), command: 'arl train --out run-stale', started: 'then' }));
    const r = await train(out);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`note: .*run-stale/\\.lock: taking over the lock of pid ${pid} \\(arl train --out run-stale\\), which is no longer running`));
    assert.ok(existsSync(join(out, 'latest')) && !existsSync(join(out, LOCK_FILE)));
  });
});
