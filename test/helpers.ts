/** Shared test set-up: the deterministic pure-JS cpu backend, and paths to fixtures. */
import * as tf from '@tensorflow/tfjs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { selectBackend } from '../src/backend.ts';

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
export const SHARED_FIXTURES = join(REPO_ROOT, '..', 'shared', 'fixtures');
export const TEST_FIXTURES = join(REPO_ROOT, 'test', 'fixtures');

export async function useCpu(): Promise<void> {
  await selectBackend('cpu');
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

export { tf };
