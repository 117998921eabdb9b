import { createHash } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, rmSync, statSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { replaceDirAtomic, writeFileAtomic } from '../io/atomic.ts';
import { check } from '../io/errors.ts';
import type { Tokenizer } from '../tokenizer/sentencepiece.ts';
import { BROWN_SOURCE, readDocuments } from './corpus.ts';
import {
  dtypeForVocab,
  encodeTokens,
  lookbackFileName,
  MAX_LOOKBACK,
  META_FILE,
  META_FORMAT,
  shardFileName,
  type PrepareMeta,
  type ShardInfo,
  type Split,
  type SplitInfo,
  type TokenDtype,
} from './format.ts';

export interface PrepareOptions {
  /** `brown`, a .txt file, a folder of .txt files, or a .jsonl file (see readDocuments). */
  source: string;
  /** The field of each JSON line holding the text (default "text"). */
  textField?: string;
  tokenizer: Tokenizer;
  /** Folder to (re)create; it is replaced as a whole once everything is written. */
  outDir: string;
  /** Expected share of documents in the val split (default 0.05); with 2+ documents val gets at least one. */
  valFraction?: number;
  /** Seeds the document split (default 0). */
  seed?: number;
  /** Tokens per shard file (default 16M). */
  shardTokens?: number;
  /** Called after each document with the running totals. */
  onProgress?: (docs: number, tokens: number) => void;
  /** With valFraction > 0, refuse (and leave `outDir` as it was) when the val split ends up empty. */
  requireVal?: boolean;
  /** Write a lookback file next to each shard (documents without `lookback` get zeros; see format.ts). */
  lookback?: boolean;
}

export const DEFAULT_VAL_FRACTION = 0.05;
export const DEFAULT_SHARD_TOKENS = 16 * 1024 * 1024;

/**
 * Tokenizes a corpus into train/val shard files plus meta.json, streaming document by document. Documents are
 * assigned to a split by a hash of their id and the seed, so the split is reproducible and independent of order.
 * A single .txt file is split into documents at blank lines, so that some of it can go to val; a corpus
 * that still leaves val empty is refused. Output goes to a temporary sibling folder that replaces `outDir`
 * only when complete.
 */
export async function prepareCorpus(options: PrepareOptions): Promise<PrepareMeta> {
  const { source, tokenizer } = options;
  const splitTextFile = (options.valFraction ?? DEFAULT_VAL_FRACTION) > 0;
  async function* tokenized(): AsyncGenerator<TokenizedDocument> {
    for await (const doc of readDocuments(source, { splitTextFile, textField: options.textField })) yield { id: doc.id, tokens: [tokenizer.bosId, ...tokenizer.encode(doc.text), tokenizer.eosId] };
  }
  return writePrepared(tokenized(), { requireVal: true, ...options, source: source === BROWN_SOURCE ? source : resolve(source) });
}

/** A document ready for the shards: its id (which picks the split) and its tokens, BOS and EOS included. */
export interface TokenizedDocument {
  id: string;
  tokens: number[];
  /** Per token, how far back a row must reach to train on it (format.ts); absent means 0 everywhere. */
  lookback?: number[];
}

/**
 * Writes already tokenized documents as a prepared-data folder (what `prepareCorpus` writes for a text corpus):
 * the same hash split, shard format and atomic replacement of `outDir`. `source` is recorded in meta.json as is.
 */
export async function writePrepared(documents: AsyncIterable<TokenizedDocument> | Iterable<TokenizedDocument>, options: Omit<PrepareOptions, 'source'> & { source: string }): Promise<PrepareMeta> {
  const { tokenizer, valFraction = DEFAULT_VAL_FRACTION, seed = 0 } = options;
  const shardTokens = options.shardTokens ?? DEFAULT_SHARD_TOKENS;
  check(valFraction >= 0 && valFraction < 1, `valFraction must be in [0, 1), got ${valFraction}`);
  check(Number.isSafeInteger(seed), `seed must be an integer, got ${seed}`);
  check(
    Number.isSafeInteger(shardTokens) && shardTokens > 0,
    `shardTokens must be a positive integer, got ${shardTokens}`,
  );
  const outDir = resolve(options.outDir);
  checkReplaceable(outDir);

  const tmpDir = `${outDir}.tmp-${process.pid}`;
  rmSync(tmpDir, { recursive: true, force: true });
  mkdirSync(tmpDir, { recursive: true });
  const dtype = dtypeForVocab(tokenizer.vocabSize);
  const withLookback = options.lookback === true;
  const train = new ShardWriter(tmpDir, 'train', dtype, shardTokens, withLookback);
  const val = new ShardWriter(tmpDir, 'val', dtype, shardTokens, withLookback);
  try {
    // The train document whose hash is closest to the val threshold is held back (one document in memory), so
    // that it can go to val if no document falls below the threshold.
    let heldBack: { doc: TokenizedDocument; hash: number } | undefined;
    let docs = 0;
    let tokens = 0;
    for await (const doc of documents) {
      check(doc.lookback === undefined || doc.lookback.length === doc.tokens.length, `document ${doc.id}: ${doc.lookback?.length} lookbacks for ${doc.tokens.length} tokens`);
      const hash = splitHash(doc.id, seed);
      if (hash < valFraction) {
        val.write(doc);
      } else if (valFraction > 0 && (heldBack === undefined || hash < heldBack.hash)) {
        if (heldBack) train.write(heldBack.doc);
        heldBack = { doc, hash };
      } else {
        train.write(doc);
      }
      docs++;
      tokens += doc.tokens.length;
      options.onProgress?.(docs, tokens);
    }
    if (heldBack) (val.docs === 0 && train.docs > 0 ? val : train).write(heldBack.doc);
    check(
      !options.requireVal || valFraction === 0 || val.docs > 0,
      `${options.source}: only one document, so the validation split would be empty; give more documents (blank lines between them in a .txt file, a folder of .txt files, or a .jsonl file), or pass --val-fraction 0 and train with --eval-every 0`,
    );

    const meta: PrepareMeta = {
      format: META_FORMAT,
      vocabSize: tokenizer.vocabSize,
      dtype,
      tokenizer: { path: tokenizer.modelPath, sha256: tokenizer.sha256 },
      source: options.source,
      seed,
      valFraction,
      splits: { train: train.close(), val: val.close() },
      ...(withLookback && { lookback: true }),
    };
    writeFileAtomic(join(tmpDir, META_FILE), JSON.stringify(meta, null, 2) + '\n');
    replaceDirAtomic(tmpDir, outDir);
    return meta;
  } catch (err) {
    train.close();
    val.close();
    rmSync(tmpDir, { recursive: true, force: true });
    throw err;
  }
}

/** Refuses to replace anything but an empty folder or earlier prepare output, so a typo cannot wipe a folder. */
function checkReplaceable(outDir: string): void {
  let stats;
  try {
    stats = statSync(outDir);
  } catch {
    return; // nothing there yet
  }
  check(
    stats.isDirectory() && (readdirSync(outDir).length === 0 || existsSync(join(outDir, META_FILE))),
    `${outDir}: exists and is not a prepared-data folder; refusing to replace it`,
  );
}

/** Uniform value in [0, 1) from the document id and seed; a document goes to val when it is below valFraction. */
export function splitHash(id: string, seed: number): number {
  const digest = createHash('sha256').update(`${seed}\0${id}`).digest();
  return digest.readUIntBE(0, 6) / 2 ** 48;
}

/** Appends documents to consecutive shard files of one split, starting a new file every `shardTokens` tokens. */
class ShardWriter {
  private readonly shards: ShardInfo[] = [];
  private fd: number | undefined;
  private lookbackFd: number | undefined;
  docs = 0;

  constructor(
    private readonly dir: string,
    private readonly split: Split,
    private readonly dtype: TokenDtype,
    private readonly shardTokens: number,
    private readonly withLookback: boolean,
  ) {}

  write({ tokens, lookback }: TokenizedDocument): void {
    this.docs++;
    let start = 0;
    while (start < tokens.length) {
      let shard = this.shards.at(-1);
      if (shard === undefined || shard.tokens === this.shardTokens) shard = this.startShard();
      const end = Math.min(tokens.length, start + this.shardTokens - shard.tokens);
      writeAll(this.fd!, encodeTokens(tokens.slice(start, end), this.dtype));
      if (this.withLookback) {
        const distances = lookback ? lookback.slice(start, end).map((d) => Math.min(d, MAX_LOOKBACK)) : new Array<number>(end - start).fill(0);
        writeAll(this.lookbackFd!, encodeTokens(distances, 'uint16'));
      }
      if (start === 0) shard.docs++;
      shard.tokens += end - start;
      start = end;
    }
  }

  /** Closes the current file (safe to repeat) and returns the split's totals. */
  close(): SplitInfo {
    this.closeFile();
    const tokens = this.shards.reduce((sum, shard) => sum + shard.tokens, 0);
    return { shards: this.shards, tokens, docs: this.docs };
  }

  private startShard(): ShardInfo {
    this.closeFile();
    const shard: ShardInfo = { file: shardFileName(this.split, this.shards.length), tokens: 0, docs: 0 };
    this.fd = openSync(join(this.dir, shard.file), 'w');
    if (this.withLookback) this.lookbackFd = openSync(join(this.dir, lookbackFileName(shard.file)), 'w');
    this.shards.push(shard);
    return shard;
  }

  private closeFile(): void {
    for (const fd of [this.fd, this.lookbackFd]) {
      if (fd === undefined) continue;
      fsyncSync(fd); // durable before the folder is renamed into place
      closeSync(fd);
    }
    this.fd = undefined;
    this.lookbackFd = undefined;
  }
}

function writeAll(fd: number, bytes: Buffer): void {
  for (let written = 0; written < bytes.length; ) written += writeSync(fd, bytes, written);
}
