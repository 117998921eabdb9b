/** The sha256 of a file, as checkpoints, prepared data and recap caches record it. */
import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import { fsErrorReason } from '../data/fs-errors.ts';
import { UserError } from './errors.ts';

const CHUNK_BYTES = 1 << 20;

/** Hex sha256 of the file's bytes, read in 1 MiB chunks (weights and GGUF files can be gigabytes). */
export function sha256File(path: string): string {
  return sha256Files([path]);
}

/** Hex sha256 of the files' bytes one after another (a sharded checkpoint's files). */
export function sha256Files(paths: string[]): string {
  const hash = createHash('sha256');
  const chunk = Buffer.alloc(CHUNK_BYTES);
  for (const path of paths) {
    let fd: number | undefined;
    try {
      fd = openSync(path, 'r');
      for (let read = readSync(fd, chunk); read > 0; read = readSync(fd, chunk)) hash.update(chunk.subarray(0, read));
    } catch (err) {
      throw new UserError(`${path}: cannot read (${fsErrorReason(err)})`);
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
  }
  return hash.digest('hex');
}
