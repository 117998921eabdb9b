/**
 * Sharded ARL data prep: `--shard i/N` splits a corpus across machines for steps 1-3, and step 4
 * (augment) merges the N shard folders into exactly the output of one unsharded run.
 *
 * Shard i of N takes the documents whose index in the corpus (0-based, after --max-docs) is i mod N:
 * round-robin, so a corpus sorted by length or source still gives the shards similar work. Every shard
 * still reads the whole corpus (only its own documents are tokenized and scored) and records the
 * corpus's document count and a hash of it, so the merge can check that the shards read the same
 * documents, and can put them back in corpus order: merged document k is document k div N of shard k mod N.
 * A shard writes into `<out>/shard-i-of-N`, so the folders of N machines can be copied side by side.
 */
import { createHash, type Hash } from 'node:crypto';
import { join } from 'node:path';
import { UserError } from '../io/errors.ts';

export interface Shard {
  /** i, in 0..count-1. */
  index: number;
  /** N. */
  count: number;
}

/** What step 1 records about its shard: the shard, plus the checkpoint's weights hash (paths differ between machines). */
export interface ShardSettings {
  shard_index: number;
  shard_count: number;
  checkpoint_sha256: string;
}

/** Parses `--shard i/N`. */
export function parseShard(text: string): Shard {
  const match = /^(\d+)\/(\d+)$/.exec(text.trim());
  const index = match ? Number(match[1]) : NaN;
  const count = match ? Number(match[2]) : NaN;
  if (!(Number.isSafeInteger(index) && Number.isSafeInteger(count) && index < count)) {
    throw new UserError(`--shard must be i/N with N >= 1 and 0 <= i < N, e.g. --shard 0/4 for the first of 4 (got ${JSON.stringify(text)})`);
  }
  return { index, count };
}

export function shardName(shard: Shard): string {
  return `${shard.index}/${shard.count}`;
}

/** The output folder of a shard inside the run's `--out` folder. */
export function shardFolder(out: string, shard: Shard): string {
  return join(out, `shard-${shard.index}-of-${shard.count}`);
}

/** Whether the document at `documentIndex` (0-based, in corpus order) belongs to `shard`. */
export function inShard(documentIndex: number, shard: Shard): boolean {
  return documentIndex % shard.count === shard.index;
}

/** Documents of a corpus of `total` that fall in `shard`. */
export function shardSize(total: number, shard: Shard): number {
  return Math.max(0, Math.ceil((total - shard.index) / shard.count));
}

/** A running hash of every document a shard reads (all of the corpus, not only its share). */
export class CorpusHash {
  private readonly hash: Hash = createHash('sha256');
  documents = 0;

  add(id: string, text: string): void {
    this.hash.update(`${JSON.stringify([id, text])}\n`);
    this.documents++;
  }

  digest(): string {
    return this.hash.digest('hex');
  }
}

