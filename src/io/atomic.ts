import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { UserError } from './errors.ts';

/** writeSync moves at most 2 GiB per call. */
const IO_BYTES = 1 << 30;

function writeAll(fd: number, bytes: Uint8Array): void {
  for (let written = 0; written < bytes.length; ) written += writeSync(fd, bytes, written, Math.min(bytes.length - written, IO_BYTES));
}

function failed(path: string, tmp: string, err: unknown): never {
  rmSync(tmp, { force: true });
  if ((err as NodeJS.ErrnoException).code === 'EISDIR') throw new UserError(`${path}: is a folder; pass the path of a file to write`);
  throw err;
}

/** The temp file beside `path`, open for writing. */
function openTemp(path: string): { fd: number; tmp: string } {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    return { fd: openSync(tmp, 'w'), tmp };
  } catch (err) {
    failed(path, tmp, err);
  }
}

/** Closes and removes the temp file after a failed write, then reports the failure. */
function abandonTemp(path: string, { fd, tmp }: { fd: number; tmp: string }, err: unknown): never {
  closeSync(fd);
  failed(path, tmp, err);
}

/** Syncs the temp file and renames it into place. */
function commitTemp(path: string, { fd, tmp }: { fd: number; tmp: string }): void {
  try {
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (err) {
    failed(path, tmp, err);
  }
}

/** Writes a file via a temp file and rename, so readers never see a half-written file. A folder at `path` is a UserError. */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  const temp = openTemp(path);
  try {
    writeAll(temp.fd, typeof data === 'string' ? Buffer.from(data) : data);
  } catch (err) {
    abandonTemp(path, temp, err);
  }
  commitTemp(path, temp);
}

/** writeFileAtomic for data produced piece by piece, so a file never has to fit in one Buffer. Returns the bytes written. */
export async function writeFileAtomicStream(path: string, chunks: AsyncIterable<Uint8Array>): Promise<number> {
  const temp = openTemp(path);
  let total = 0;
  try {
    for await (const chunk of chunks) {
      writeAll(temp.fd, chunk);
      total += chunk.length;
    }
  } catch (err) {
    abandonTemp(path, temp, err);
  }
  commitTemp(path, temp);
  return total;
}

/** Replaces directory `path` with `tmpDir` (already fully written) as atomically as the filesystem allows. */
export function replaceDirAtomic(tmpDir: string, path: string): void {
  const old = `${path}.old-${process.pid}`;
  let moved = false;
  try {
    renameSync(path, old);
    moved = true;
  } catch {
    // no previous directory
  }
  renameSync(tmpDir, path);
  if (moved) rmSync(old, { recursive: true, force: true });
}
