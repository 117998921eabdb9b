import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { UserError } from './errors.ts';

/** Writes a file via a temp file and rename, so readers never see a half-written file. A folder at `path` is a UserError. */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    const fd = openSync(tmp, 'w');
    try {
      const bytes = typeof data === 'string' ? Buffer.from(data) : data;
      let written = 0;
      while (written < bytes.length) written += writeSync(fd, bytes, written, bytes.length - written);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    if ((err as NodeJS.ErrnoException).code === 'EISDIR') throw new UserError(`${path}: is a folder; pass the path of a file to write`);
    throw err;
  }
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
