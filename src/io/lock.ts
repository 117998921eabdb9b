/**
 * One writer per output folder: `<dir>/.lock`, created exclusively (O_EXCL), holds the owner's pid, host,
 * command line and start time. A second writer is refused with one line naming the owner; a lock whose
 * process is gone (a crash, a kill) is taken over with a note on stderr. The lock is removed when the
 * command releases it or the process exits.
 */
import { closeSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { fsErrorReason } from '../data/fs-errors.ts';
import { UserError } from './errors.ts';

export const LOCK_FILE = '.lock';

export interface LockOwner {
  pid: number;
  host: string;
  command: string;
  started: string;
}

/** A lock file younger than this with no owner written yet is being created, not abandoned. */
const CREATING_MS = 5000;

/** The command line of this process, as `arl ...`. */
export function commandLine(): string {
  return ['arl', ...process.argv.slice(2)].join(' ');
}

function readOwner(path: string): LockOwner | null {
  try {
    const owner = JSON.parse(readFileSync(path, 'utf8')) as LockOwner;
    return Number.isInteger(owner.pid) ? owner : null;
  } catch {
    return null;
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // alive, owned by another user
  }
}

/** Locks held by this process: folder lock path -> number of holders (a command may lock a folder it already holds). */
const held = new Map<string, number>();
let exitHookInstalled = false;

function removeHeldLocks(): void {
  for (const path of held.keys()) rmSync(path, { force: true });
  held.clear();
}

/**
 * Takes the lock of output folder `dir` (created if missing) for `command`; returns the function that
 * releases it. Throws a UserError when another running process holds it.
 */
export function lockFolder(dir: string, command: string = commandLine()): () => void {
  const path = join(dir, LOCK_FILE);
  try {
    mkdirSync(dir, { recursive: true });
  } catch (err) {
    throw new UserError(`${dir}: cannot create the output folder (${fsErrorReason(err)})`);
  }
  const release = (): void => {
    const count = held.get(path) ?? 0;
    if (count > 1) held.set(path, count - 1);
    else if (count === 1) {
      held.delete(path);
      rmSync(path, { force: true });
    }
  };
  if (held.has(path)) {
    held.set(path, held.get(path)! + 1);
    return release;
  }
  const me: LockOwner = { pid: process.pid, host: hostname(), command, started: new Date().toISOString() };
  for (let attempt = 0; attempt < 3; attempt++) {
    let fd: number;
    try {
      fd = openSync(path, 'wx');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new UserError(`${path}: cannot create the lock of this output folder (${fsErrorReason(err)})`);
      takeOverIfStale(dir, path);
      continue;
    }
    try {
      writeSync(fd, `${JSON.stringify(me)}\n`);
    } finally {
      closeSync(fd);
    }
    if (!exitHookInstalled) process.on('exit', removeHeldLocks);
    exitHookInstalled = true;
    held.set(path, 1);
    return release;
  }
  throw new UserError(`${path}: other processes keep taking this folder's lock; run one command at a time on ${dir}`);
}

/** Removes the lock at `path` if its owner is gone (with a note on stderr); throws a UserError naming a live owner. */
function takeOverIfStale(dir: string, path: string): void {
  const owner = readOwner(path);
  if (owner === null) {
    let age = Infinity;
    try {
      age = Date.now() - statSync(path).mtimeMs;
    } catch {
      return; // released meanwhile
    }
    if (age < CREATING_MS) throw new UserError(`${dir}: another process is taking this folder's lock (${path}); wait for it to finish or choose another output folder`);
    process.stderr.write(`note: ${path}: taking over an unreadable lock left by a process that is gone\n`);
  } else {
    const sameHost = owner.host === undefined || owner.host === hostname();
    if (!sameHost || isRunning(owner.pid)) {
      const where = sameHost ? '' : ` on ${owner.host}`;
      throw new UserError(`${dir}: already being written by pid ${owner.pid}${where} (${owner.command}, since ${owner.started}); wait for it to finish, or choose another output folder`);
    }
    process.stderr.write(`note: ${path}: taking over the lock of pid ${owner.pid} (${owner.command}), which is no longer running\n`);
  }
  // Moved aside rather than deleted, so that of two processes taking over at once only one removes it.
  const aside = `${path}.stale-${process.pid}`;
  try {
    renameSync(path, aside);
  } catch {
    return; // another process moved it first
  }
  const moved = readOwner(aside);
  if (moved !== null && owner !== null && moved.pid !== owner.pid) {
    // A fresh lock was created between our read and the move: put it back.
    renameSync(aside, path);
    return;
  }
  rmSync(aside, { force: true });
}
