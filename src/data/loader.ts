import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { check, UserError } from '../io/errors.ts';
import { fsErrorReason } from './fs-errors.ts';
import { bytesPerToken, decodeTokens, readPrepareMeta, type PrepareMeta, type Split } from './format.ts';

/** Where the next batch starts: a token in a shard, and how many times the split has been read through. */
export interface LoaderPosition {
  shard: number;
  offset: number;
  epoch: number;
}

/** Inputs and next-token targets, each `[batch, seq]` flattened row-major. */
export interface Batch {
  x: Int32Array;
  y: Int32Array;
}

/**
 * Reads a prepared split as one endless token stream, in order, so a run resumed from a saved `position`
 * sees exactly the batches it would have seen. Only one shard is in memory at a time.
 */
export class TokenLoader {
  private shard = 0;
  private offset = 0;
  private epoch = 0;
  private loaded: { index: number; tokens: Uint16Array | Uint32Array } | undefined;

  private constructor(
    readonly dir: string,
    readonly split: Split,
    readonly meta: PrepareMeta,
  ) {}

  /** Opens `split` of the prepared folder `dir`; a missing, malformed or empty split is a UserError. */
  static open(dir: string, split: Split): TokenLoader {
    const absDir = resolve(dir);
    const meta = readPrepareMeta(absDir);
    check(meta.splits[split].tokens > 0, `${absDir}: the ${split} split is empty; prepare more documents`);
    return new TokenLoader(absDir, split, meta);
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
   * start of the split after its last token.
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
    const window = new Int32Array(seq + 1);
    for (let row = 0; row < batch; row++) {
      this.take(window, seq);
      window[seq] = this.shardTokens()[this.offset]!; // the next window starts with this token
      x.set(window.subarray(0, seq), row * seq);
      y.set(window.subarray(1), row * seq);
    }
    return { x, y };
  }

  /** Copies the next `count` tokens into `out` and moves past them. */
  private take(out: Int32Array, count: number): void {
    const shards = this.meta.splits[this.split].shards;
    let filled = 0;
    while (filled < count) {
      const tokens = this.shardTokens();
      const n = Math.min(count - filled, tokens.length - this.offset);
      out.set(tokens.subarray(this.offset, this.offset + n), filled);
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

  /** Tokens of the current shard, read from disk when the loader moves to a new shard. */
  private shardTokens(): Uint16Array | Uint32Array {
    if (this.loaded?.index !== this.shard) {
      const info = this.meta.splits[this.split].shards[this.shard]!;
      const path = join(this.dir, info.file);
      this.loaded = undefined; // let the previous shard be collected before reading the next
      let bytes: Buffer;
      try {
        bytes = readFileSync(path);
      } catch (err) {
        throw new UserError(`${path}: cannot read shard (${fsErrorReason(err)}); run \`arl prepare\` again`);
      }
      check(
        bytes.byteLength === info.tokens * bytesPerToken(this.meta.dtype),
        `${path}: shard size does not match meta.json; run \`arl prepare\` again`,
      );
      this.loaded = { index: this.shard, tokens: decodeTokens(bytes, this.meta.dtype) };
    }
    return this.loaded.tokens;
  }
}
