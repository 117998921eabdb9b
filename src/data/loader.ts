import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { check, UserError } from '../io/errors.ts';
import { makeRng, randomInt, shuffleInPlace } from '../core/random.ts';
import { fsErrorReason } from './fs-errors.ts';
import { bytesPerToken, decodeTokens, lookbackFileName, readPrepareMeta, type PrepareMeta, type Split, type TokenDtype } from './format.ts';

/**
 * Where the next batch starts: a shard, a token offset in it (or, when shuffling, an index into
 * the shard's shuffled row order), and how many times the split has been read through.
 */
export interface LoaderPosition {
  shard: number;
  offset: number;
  epoch: number;
}

/** Inputs and next-token targets, each `[batch, seq]` flattened row-major; optional loss weights per target (default 1). */
export interface Batch {
  x: Int32Array;
  y: Int32Array;
  w?: Float32Array;
}

/**
 * Reads a prepared split as one endless token stream, so a run resumed from a saved `position`
 * sees exactly the batches it would have seen. Only one shard is in memory at a time.
 * In order by default (evaluation); with `shuffleSeed`, each shard is cut into rows of seq+1
 * tokens that are visited in a seeded random order, new each epoch, so a batch mixes documents
 * and genres instead of walking through the corpus in file order (training).
 */
export class TokenLoader {
  private shard = 0;
  private offset = 0;
  private epoch = 0;
  private loaded: { index: number; tokens: Uint16Array | Uint32Array; lookback: Uint16Array | null } | undefined;
  private rowOrder: { key: string; starts: Uint32Array } | undefined;

  private constructor(
    readonly dir: string,
    readonly split: Split,
    readonly meta: PrepareMeta,
    readonly shuffleSeed: number | undefined,
  ) {}

  /** Opens `split` of the prepared folder `dir`; a missing, malformed or empty split is a UserError. */
  static open(dir: string, split: Split, options: { shuffleSeed?: number } = {}): TokenLoader {
    const absDir = resolve(dir);
    const meta = readPrepareMeta(absDir);
    check(meta.splits[split].tokens > 0, `${absDir}: the ${split} split is empty; prepare more documents`);
    return new TokenLoader(absDir, split, meta, options.shuffleSeed);
  }

  /** Vocabulary size of the tokenizer the data was prepared with. */
  get vocabSize(): number {
    return this.meta.vocabSize;
  }

  get totalTokens(): number {
    return this.meta.splits[this.split].tokens;
  }

  get position(): LoaderPosition {
    return { shard: this.shard, offset: this.offset, epoch: this.epoch };
  }

  /** Continues from a position saved earlier from `position` (e.g. in a checkpoint). */
  seek(position: LoaderPosition): void {
    const { shard, offset, epoch } = position;
    const shards = this.meta.splits[this.split].shards;
    check(
      Number.isInteger(shard) && shard >= 0 && shard < shards.length &&
        Number.isInteger(offset) && offset >= 0 && offset < shards[shard]!.tokens &&
        Number.isInteger(epoch) && epoch >= 0,
      `${this.dir}: cannot resume the ${this.split} data at ${JSON.stringify(position)}; ` +
        'it does not fit this data (was it prepared again?)',
    );
    this.shard = shard;
    this.offset = offset;
    this.epoch = epoch;
  }

  /**
   * The next `batch` rows, each a window of seq+1 consecutive tokens: x is its first seq tokens, y its last seq.
   * Consecutive windows overlap by one token, so every token is a target once per epoch; the stream wraps to the
   * start of the split after its last token. Data with lookbacks (format.ts) also gives weights: 0 for a target
   * whose lookback reaches before the row's first token, 1 otherwise.
   */
  nextBatch(batch: number, seq: number): Batch {
    if (!Number.isInteger(batch) || batch < 1 || !Number.isInteger(seq) || seq < 1) {
      throw new RangeError(`batch and seq must be positive integers, got ${batch} and ${seq}`);
    }
    check(
      this.totalTokens > seq,
      `${this.dir}: the ${this.split} split has ${this.totalTokens} tokens, too few for sequences of ${seq}`,
    );
    const x = new Int32Array(batch * seq);
    const y = new Int32Array(batch * seq);
    const w = this.meta.lookback ? new Float32Array(batch * seq) : undefined;
    const window = new Int32Array(seq + 1);
    const lookback = w ? new Uint16Array(seq + 1) : null;
    for (let row = 0; row < batch; row++) {
      if (this.shuffleSeed === undefined) {
        this.take(window, lookback, seq);
        window[seq] = this.shardTokens()[this.offset]!; // the next window starts with this token
        if (lookback) lookback[seq] = this.loaded!.lookback![this.offset]!;
      } else {
        this.takeShuffledRow(window, lookback, seq);
      }
      x.set(window.subarray(0, seq), row * seq);
      y.set(window.subarray(1), row * seq);
      // Target j is window[j + 1]; the row shows it j + 1 tokens of context.
      if (w) for (let j = 0; j < seq; j++) w[row * seq + j] = lookback![j + 1]! <= j + 1 ? 1 : 0;
    }
    return w ? { x, y, w } : { x, y };
  }

  /** Copies the next row of the current shard's shuffled order into `out` (seq+1 tokens), and its lookbacks into `lookbackOut`. */
  private takeShuffledRow(out: Int32Array, lookbackOut: Uint16Array | null, seq: number): void {
    const shards = this.meta.splits[this.split].shards;
    check(
      shards.some((s) => s.tokens > seq),
      `${this.dir}: no ${this.split} shard holds more than ${seq} tokens; use a shorter --seq`,
    );
    for (;;) {
      const starts = this.shuffledRowStarts(seq);
      if (this.offset < starts.length) {
        const start = starts[this.offset++]!;
        out.set(this.shardTokens().subarray(start, start + seq + 1));
        lookbackOut?.set(this.loaded!.lookback!.subarray(start, start + seq + 1));
        return;
      }
      this.offset = 0;
      this.shard++;
      if (this.shard === shards.length) {
        this.shard = 0;
        this.epoch++;
      }
    }
  }

  /**
   * Start offsets of the current shard's rows (stride seq, seq+1 tokens each) in a seeded order for this epoch.
   * The first epoch cuts rows at offset 0, later ones at a seeded phase in [0, seq): with fixed cuts, text split by
   * a row boundary (a recap and the segment it recaps) would never be seen in one row however many epochs ran.
   */
  private shuffledRowStarts(seq: number): Uint32Array {
    const key = `${this.shard}/${this.epoch}/${seq}`;
    if (this.rowOrder?.key !== key) {
      const rng = makeRng((this.shuffleSeed! * 1_000_003 + this.epoch * 7919 + this.shard) >>> 0);
      const phase = this.epoch === 0 ? 0 : randomInt(rng, 0, seq);
      const rows = Math.max(0, Math.floor((this.meta.splits[this.split].shards[this.shard]!.tokens - 1 - phase) / seq));
      const starts = Uint32Array.from({ length: rows }, (_, i) => phase + i * seq);
      shuffleInPlace(rng, starts);
      this.rowOrder = { key, starts };
    }
    return this.rowOrder.starts;
  }

  /** Copies the next `count` tokens into `out` (and their lookbacks into `lookbackOut`) and moves past them. */
  private take(out: Int32Array, lookbackOut: Uint16Array | null, count: number): void {
    const shards = this.meta.splits[this.split].shards;
    let filled = 0;
    while (filled < count) {
      const tokens = this.shardTokens();
      const n = Math.min(count - filled, tokens.length - this.offset);
      out.set(tokens.subarray(this.offset, this.offset + n), filled);
      lookbackOut?.set(this.loaded!.lookback!.subarray(this.offset, this.offset + n), filled);
      filled += n;
      this.offset += n;
      if (this.offset === tokens.length) {
        this.offset = 0;
        this.shard++;
        if (this.shard === shards.length) {
          this.shard = 0;
          this.epoch++;
        }
      }
    }
  }

  /** Tokens of the current shard (and its lookbacks, where the data has them), read when the loader moves to a new shard. */
  private shardTokens(): Uint16Array | Uint32Array {
    if (this.loaded?.index !== this.shard) {
      const info = this.meta.splits[this.split].shards[this.shard]!;
      this.loaded = undefined; // let the previous shard be collected before reading the next
      const tokens = decodeTokens(this.readShardFile(info.file, this.meta.dtype, info.tokens), this.meta.dtype);
      const lookback = this.meta.lookback ? (decodeTokens(this.readShardFile(lookbackFileName(info.file), 'uint16', info.tokens), 'uint16') as Uint16Array) : null;
      this.loaded = { index: this.shard, tokens, lookback };
    }
    return this.loaded.tokens;
  }

  private readShardFile(file: string, dtype: TokenDtype, tokens: number): Buffer {
    const path = join(this.dir, file);
    let bytes: Buffer;
    try {
      bytes = readFileSync(path);
    } catch (err) {
      throw new UserError(`${path}: cannot read shard (${fsErrorReason(err)}); run \`arl prepare\` again`);
    }
    check(bytes.byteLength === tokens * bytesPerToken(dtype), `${path}: shard size does not match meta.json; run \`arl prepare\` again`);
    return bytes;
  }
}
