/**
 * Whether a model and what it is paired with use the same tokenizer. A checkpoint carries a copy of
 * its tokenizer (tokenizer.model); prepared data records its tokenizer's sha256 in meta.json; a
 * --tokenizer flag names a file. All comparisons go through checkSameTokenizer.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../io/errors.ts';
import { sha256File } from '../io/sha256.ts';
import { BUNDLED_TOKENIZER_PATH } from '../tokenizer/sentencepiece.ts';
import type { PrepareMeta } from './format.ts';

const short = (sha: string): string => `${sha.slice(0, 12)}…`;

/** What a checkpoint is paired with: prepared data (its folder and meta.json) or a tokenizer file. */
export type TokenizerPairing = { data: string; meta: PrepareMeta } | { tokenizer: string; sha256?: string };

/**
 * Throws a UserError when the checkpoint in `checkpointDir` has its own tokenizer and `other` was made
 * with (or is) a different one. A checkpoint without tokenizer.model has nothing to compare.
 */
export function checkSameTokenizer(checkpointDir: string, other: TokenizerPairing): void {
  const own = join(checkpointDir, 'tokenizer.model');
  if (!existsSync(own)) return;
  const ownSha = sha256File(own);
  if ('data' in other) {
    if (other.meta.tokenizer.sha256 === ownSha) return;
    throw new UserError(
      `${other.data}: prepared with another tokenizer (sha256 ${short(other.meta.tokenizer.sha256)}) than the model in ${checkpointDir} (sha256 ${short(ownSha)}); run \`arl prepare --tokenizer ${own} --out DIR\` and pass that --data`,
    );
  }
  const otherSha = other.sha256 ?? sha256File(other.tokenizer);
  if (otherSha === ownSha) return;
  throw new UserError(
    `${other.tokenizer}: not the tokenizer of the model in ${checkpointDir} (sha256 ${short(otherSha)}, the checkpoint's is ${short(ownSha)}); drop --tokenizer to use the checkpoint's own`,
  );
}

/**
 * The tokenizer file prepared data in `dataDir` was made with: the path in meta.json or, when that file
 * is gone, the first of `copies` (default: the bundled tokenizer) with the same sha256. A changed or
 * missing file is a UserError.
 */
export function preparedTokenizerPath(dataDir: string, meta: PrepareMeta, copies: string[] = [BUNDLED_TOKENIZER_PATH]): string {
  const { path, sha256 } = meta.tokenizer;
  if (existsSync(path)) {
    const now = sha256File(path);
    if (now !== sha256) {
      throw new UserError(`${dataDir}: prepared with a tokenizer of sha256 ${short(sha256)}, but ${path} is now ${short(now)}; run \`arl prepare --out ${dataDir}\` again`);
    }
    return path;
  }
  const copy = copies.find((file) => existsSync(file) && sha256File(file) === sha256);
  if (copy !== undefined) return copy;
  throw new UserError(`${path}: the tokenizer ${dataDir} was prepared with is gone (meta.json tokenizer.path); put it back there, or run \`arl prepare --tokenizer FILE --out ${dataDir}\` again`);
}
