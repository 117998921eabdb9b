/** ARL step 4 over a sharded run: the N shard folders of steps 1-3 read back as one, in corpus order (see shard.ts). */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { UserError } from '../io/errors.ts';
import { readJsonLines } from '../io/jsonl.ts';
import { KEY_TOKEN_FILES, type KeyTokenDocument, type KeyTokenSummary } from './key-tokens.ts';
import { RECAP_FILES } from './recap.ts';
import { readKeyTokenSummary, SEGMENT_FILES } from './relevant-segment.ts';
import { shardName, shardSize } from './shard.ts';

/** Settings every shard of one run must share: step 1's (paths left out: they differ between machines), step 2's and step 3's. */
const SHARED_SETTINGS: { file: string; keys: string[] }[] = [
  { file: KEY_TOKEN_FILES.summary, keys: ['shard_count', 'checkpoint_sha256', 'corpus_sha256', 'corpus_documents', 'tokenizer', 'S', 'W', 'K', 'alpha', 'beta', 'select', 'per_sentence', 'long_stride'] },
  { file: SEGMENT_FILES.summary, keys: ['checkpoint_sha256', 'S', 'segment_tokens', 'margin'] },
  { file: RECAP_FILES.summary, keys: ['recapper', 'model', 'prompt_sha256', 'max_recap_tokens'] },
];

function readJson(file: string, missing: string): Record<string, unknown> {
  if (!existsSync(file)) throw new UserError(`${file}: missing; ${missing}`);
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch {
    throw new UserError(`${file}: not valid JSON; rerun the step that wrote it`);
  }
}

/** The documents of step 1's output folders in corpus order: one unsharded folder, or all N shard folders of one run. */
export interface KeyTokenInputs {
  dirs: string[];
  /** The first folder's summary (the settings all shards share). */
  summary: KeyTokenSummary;
  documents: KeyTokenDocument[];
}

/**
 * Reads step 1's documents from one folder, or from the N shard folders of one `--shard` run, checked
 * to be each shard once, from the same corpus, checkpoint and step 1-3 settings, each finished.
 */
export function readKeyTokenInputs(given: readonly string[]): KeyTokenInputs {
  const dirs = given.map((dir) => resolve(dir));
  const summaries = dirs.map((dir) => readKeyTokenSummary(dir));
  const readDocuments = (dir: string): KeyTokenDocument[] => readJsonLines<KeyTokenDocument>(join(dir, KEY_TOKEN_FILES.documents));
  const sharded = summaries.map((s) => typeof s.shard_count === 'number' && s.shard_count > 1);
  if (dirs.length === 1 && !sharded[0]) return { dirs, summary: summaries[0], documents: readDocuments(dirs[0]) };

  const unsharded = sharded.indexOf(false);
  if (unsharded >= 0) throw new UserError(`${dirs[unsharded]}: not a shard folder (made without --shard); pass either one unsharded folder or all the shard folders of one run`);
  const count = Number(summaries[0].shard_count);
  const byIndex = new Map<number, string>();
  for (const [k, dir] of dirs.entries()) {
    const shard = { index: Number(summaries[k].shard_index), count: Number(summaries[k].shard_count) };
    if (shard.count !== count) throw new UserError(`${dir}: shard ${shardName(shard)}, but ${dirs[0]} is one of ${count}; pass the shard folders of one run`);
    const other = byIndex.get(shard.index);
    if (other !== undefined) throw new UserError(`${other} and ${dir} are both shard ${shardName(shard)}; pass each shard once`);
    byIndex.set(shard.index, dir);
  }
  const missing = Array.from({ length: count }, (_, index) => index).filter((index) => !byIndex.has(index));
  if (missing.length > 0) throw new UserError(`shard${missing.length > 1 ? 's' : ''} ${missing.map((index) => shardName({ index, count })).join(', ')} missing; pass all ${count} shard folders of the run`);

  for (const { file, keys } of SHARED_SETTINGS) {
    const first = readJson(join(dirs[0], file), `finish steps 1-3 in ${dirs[0]} first`);
    for (const dir of dirs.slice(1)) {
      const settings = readJson(join(dir, file), `finish steps 1-3 in ${dir} first`);
      for (const key of keys) {
        if (settings[key] !== first[key]) {
          throw new UserError(`${join(dir, file)}: ${key} ${JSON.stringify(settings[key])}, but ${dirs[0]} has ${JSON.stringify(first[key])}; every shard needs the same corpus, checkpoint and settings`);
        }
      }
    }
  }

  const total = Number(summaries[0].corpus_documents);
  const perShard = Array.from({ length: count }, (_, index) => {
    const dir = byIndex.get(index)!;
    const documents = readDocuments(dir);
    const expected = shardSize(total, { index, count });
    if (documents.length !== expected) {
      throw new UserError(`${dir}: ${documents.length} documents, but shard ${shardName({ index, count })} of a corpus of ${total} has ${expected}; rerun \`arl keytokens --shard ${shardName({ index, count })}\` to finish it`);
    }
    return documents;
  });
  const documents = Array.from({ length: total }, (_, k) => perShard[k % count][Math.floor(k / count)]);
  return { dirs: [...byIndex.keys()].sort((a, b) => a - b).map((index) => byIndex.get(index)!), summary: summaries[0], documents };
}

/** Where `arl augment` writes a merge by default: the folder holding all the shard folders, if they share one. */
export function mergeOutDir(dirs: readonly string[]): string | null {
  const parents = new Set(dirs.map((dir) => dirname(resolve(dir))));
  return parents.size === 1 ? [...parents][0] : null;
}
