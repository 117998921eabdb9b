/** Corpus sharding for ARL: `--shard i/N` takes the documents whose corpus index % N == i, so shards are disjoint, cover the corpus, and never split a document. */
import { UserError } from '../io/errors.js';

export interface Shard {
  index: number;
  count: number;
}

/** Parses `i/N` (integers, 0 <= i < N); `flag` names the option in the error. */
export function parseShard(text: string, flag = '--shard'): Shard {
  const match = /^(\d+)\/(\d+)$/.exec(text.trim());
  const index = match ? Number(match[1]) : NaN;
  const count = match ? Number(match[2]) : NaN;
  if (!match || !(count >= 1) || !(index < count)) {
    throw new UserError(`${flag} ${JSON.stringify(text)}: expected i/N with integers 0 <= i < N, e.g. ${flag} 0/4`);
  }
  return { index, count };
}

/** True when the document at `documentIndex` (position in corpus order) belongs to `shard`. */
export function inShard(documentIndex: number, shard: Shard): boolean {
  return documentIndex % shard.count === shard.index;
}
