/**
 * On-disk format of a prepared-data folder: `meta.json` plus shard files `train_00000.bin`, `val_00000.bin`, …
 * holding token ids as little-endian uint16 (vocabularies up to 65535) or uint32. Every document is stored as
 * BOS, its tokens, EOS; documents follow each other and may continue from one shard into the next.
 *
 * ARL's augmented data adds a lookback file per shard (`train_00000.lookback.bin`, uint16, one per token): how far
 * back a training row must reach for the token to be trained on, i.e. for a recap token the distance to the start
 * of the segment it recaps (0 for every other token). A row that starts later cannot show the model what the
 * recap says, so the loader gives that target weight 0 rather than teach the model to write recaps of nothing.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { check, UserError } from '../io/errors.ts';

export const META_FILE = 'meta.json';
export const META_FORMAT = 1;
export const SPLITS = ['train', 'val'] as const;
export type Split = (typeof SPLITS)[number];
export type TokenDtype = 'uint16' | 'uint32';

export interface ShardInfo {
  file: string;
  tokens: number;
  /** Documents that start in this shard. */
  docs: number;
}

export interface SplitInfo {
  shards: ShardInfo[];
  tokens: number;
  docs: number;
}

export interface PrepareMeta {
  format: typeof META_FORMAT;
  vocabSize: number;
  dtype: TokenDtype;
  tokenizer: { path: string; sha256: string };
  source: string;
  seed: number;
  valFraction: number;
  splits: Record<Split, SplitInfo>;
  /** Each shard has a lookback file (see above). */
  lookback?: boolean;
}

/** Lookbacks are stored as uint16; a longer one is stored as this, beyond any row. */
export const MAX_LOOKBACK = 65535;

export function lookbackFileName(shardFile: string): string {
  return shardFile.replace(/\.bin$/, '.lookback.bin');
}

export function shardFileName(split: Split, index: number): string {
  return `${split}_${String(index).padStart(5, '0')}.bin`;
}

export function dtypeForVocab(vocabSize: number): TokenDtype {
  return vocabSize <= 65535 ? 'uint16' : 'uint32';
}

export function bytesPerToken(dtype: TokenDtype): number {
  return dtype === 'uint16' ? 2 : 4;
}

export function encodeTokens(tokens: ArrayLike<number>, dtype: TokenDtype): Buffer {
  const size = bytesPerToken(dtype);
  const bytes = Buffer.allocUnsafe(tokens.length * size);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < tokens.length; i++) {
    if (size === 2) view.setUint16(i * 2, tokens[i]!, true);
    else view.setUint32(i * 4, tokens[i]!, true);
  }
  return bytes;
}

export function decodeTokens(bytes: Uint8Array, dtype: TokenDtype): Uint16Array | Uint32Array {
  const size = bytesPerToken(dtype);
  const count = bytes.byteLength / size;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (size === 2) {
    const tokens = new Uint16Array(count);
    for (let i = 0; i < count; i++) tokens[i] = view.getUint16(i * 2, true);
    return tokens;
  }
  const tokens = new Uint32Array(count);
  for (let i = 0; i < count; i++) tokens[i] = view.getUint32(i * 4, true);
  return tokens;
}

/** Reads and validates `dir/meta.json`; a missing or malformed file is a UserError. */
export function readPrepareMeta(dir: string): PrepareMeta {
  const path = join(dir, META_FILE);
  let meta: PrepareMeta;
  try {
    meta = JSON.parse(readFileSync(path, 'utf8')) as PrepareMeta;
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : (err as Error).message;
    throw new UserError(`${path}: no prepared data (${reason}); run \`arl prepare\` to create it`);
  }
  const invalid = `${path}: not a prepared-data file of format ${META_FORMAT}; run \`arl prepare\` again`;
  check(meta?.format === META_FORMAT, invalid);
  check(Number.isInteger(meta.vocabSize) && meta.vocabSize > 0, invalid);
  check(meta.dtype === dtypeForVocab(meta.vocabSize), invalid);
  check(typeof meta.tokenizer?.sha256 === 'string', invalid);
  check(meta.lookback === undefined || typeof meta.lookback === 'boolean', invalid);
  for (const split of SPLITS) {
    const info = meta.splits?.[split];
    check(Array.isArray(info?.shards), invalid);
    let tokens = 0;
    for (const shard of info.shards) {
      check(typeof shard?.file === 'string' && Number.isInteger(shard.tokens) && shard.tokens > 0, invalid);
      tokens += shard.tokens;
    }
    check(tokens === info.tokens, invalid);
  }
  return meta;
}
