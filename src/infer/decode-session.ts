/**
 * KV-cached decoding states. A DecodeSession is one sequence: tokens appended run through the model
 * once and the next-token logits after the last of them come back. A DecodeBatch is a group of
 * sessions decoding together: their caches are rows of one preallocated cache, and the single
 * tokens they append in the same turn of the event loop go through the decode graph
 * (ops/webgpu/decode-graph.ts) as one step, so N sessions awaiting their next token concurrently
 * cost about one step, not N. Prompts (several tokens) go through the tfjs model into the same rows.
 * Off webgpu (no preallocated cache) each session has its own growing cache and the tfjs path.
 */
import * as tf from '@tensorflow/tfjs';
import { cacheCapacity, type LayerCache } from '../ops/attention.ts';
import { disposeCache, type KVCache, type LlamaModel } from '../model/llama.ts';
import { DecodeGraph, decodeGraphSupported, type DecodeRow } from '../ops/webgpu/decode-graph.ts';
import { argmax } from './sampling.ts';

/** The logits after the last position of `hidden` [1, T, dim]. */
export async function lastLogits(model: LlamaModel, hidden: tf.Tensor3D): Promise<Float32Array> {
  const logits = tf.tidy(() => {
    const [, t, d] = hidden.shape;
    const last = tf.reshape(tf.slice(hidden, [0, t - 1, 0], [1, 1, d]), [1, d]) as tf.Tensor2D;
    return model.project(last);
  });
  const values = (await logits.data()) as Float32Array;
  logits.dispose();
  return values;
}

interface PendingToken {
  row: DecodeRow;
  greedy: boolean;
  resolve: (result: number | Float32Array) => void;
  reject: (error: unknown) => void;
}

/**
 * Up to `rows` sessions of one model decoding together (see the file comment). Sessions come from
 * session() and give their row back on dispose. With `closeWhenIdle` the batch frees its cache and
 * graph when its last session is disposed (a later session() opens them again).
 */
export class DecodeBatch {
  private cache: LayerCache[] | null = null;
  private graph: DecodeGraph | null = null;
  private readonly freeRows: number[] = [];
  private pending: PendingToken[] = [];
  private stepping = false;
  private scheduled = false;
  /** Batched steps run, and the tokens they decoded (tokens / steps: how many sessions shared a step). */
  readonly stats = { steps: 0, tokens: 0 };

  constructor(private readonly model: LlamaModel, readonly rows: number, private readonly closeWhenIdle = false) {
    if (!Number.isInteger(rows) || rows < 1) throw new Error(`a decode batch needs a positive whole number of rows, got ${rows}`);
  }

  /** True where sessions share this batch's cache (webgpu's preallocated cache); elsewhere each has its own. */
  get shared(): boolean {
    return cacheCapacity(this.model.config.maxSeq) !== null;
  }

  /** A new session in a free row; throws when all `rows` are taken. */
  session(): DecodeSession {
    return new DecodeSession(this.model, this);
  }

  /** A free row's cache (new handles on the shared buffers, to dispose as any cache); null off the shared path. */
  takeRow(): KVCache | null {
    if (!this.shared) return null;
    if (!this.cache) {
      const { kvHeads, headDim, maxSeq } = this.model.config;
      this.cache = this.model.blocks.map(() => ({ k: tf.zeros([this.rows, kvHeads, maxSeq, headDim]) as tf.Tensor4D, v: tf.zeros([this.rows, kvHeads, maxSeq, headDim]) as tf.Tensor4D, capacity: maxSeq }));
      this.freeRows.push(...Array.from({ length: this.rows }, (_, r) => this.rows - 1 - r));
    }
    const row = this.freeRows.pop();
    if (row === undefined) throw new Error(`all ${this.rows} rows of the decode batch are in use`);
    return { layers: this.cache.map((l) => ({ k: tf.clone(l.k), v: tf.clone(l.v), capacity: l.capacity, row })), length: 0 };
  }

  giveBack(row: number): void {
    this.freeRows.push(row);
    if (this.closeWhenIdle && this.freeRows.length === this.rows) this.dispose();
  }

  /** Decodes `row.token` at `row.pos` of cache row `row.slot` in the next batched step; resolves to the next logits, or the argmax with `greedy`. */
  decodeToken(row: DecodeRow, greedy: true): Promise<number>;
  decodeToken(row: DecodeRow, greedy: false): Promise<Float32Array>;
  decodeToken(row: DecodeRow, greedy: boolean): Promise<number | Float32Array> {
    return new Promise((resolve, reject) => {
      this.pending.push({ row, greedy, resolve, reject });
      this.schedule();
    });
  }

  /**
   * One step at a time (the graph's scratch and read-back buffer are shared): the tokens asked for
   * while a step runs wait for the next. setImmediate lets every session that a step's results
   * wake ask for its next token first, so they all go in one step.
   */
  private schedule(): void {
    if (this.stepping || this.scheduled || this.pending.length === 0) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.step();
    });
  }

  private async step(): Promise<void> {
    if (this.stepping || this.pending.length === 0) return;
    this.stepping = true;
    const tokens = this.pending.splice(0, this.rows);
    try {
      const graph = this.currentGraph();
      const greedy = tokens.every((t) => t.greedy);
      const rows = tokens.map((t) => t.row);
      const results: (number | Float32Array)[] = greedy ? await graph.step(rows, true) : await graph.step(rows, false);
      this.stats.steps++;
      this.stats.tokens += rows.length;
      tokens.forEach((t, i) => t.resolve(t.greedy && !greedy ? argmax(results[i] as Float32Array) : results[i]!));
    } catch (error) {
      for (const t of tokens) t.reject(error);
    } finally {
      this.stepping = false;
      this.schedule();
    }
  }

  private currentGraph(): DecodeGraph {
    if (this.graph && !this.graph.bindsCurrentWeights()) {
      this.graph.dispose();
      this.graph = null;
    }
    this.graph ??= new DecodeGraph(this.model, this.rows, this.cache!);
    return this.graph;
  }

  dispose(): void {
    this.graph?.dispose();
    this.graph = null;
    if (this.cache) for (const l of this.cache) tf.dispose([l.k, l.v]);
    this.cache = null;
    this.freeRows.length = 0;
  }
}

/**
 * A KV-cached decoding state for one sequence. generate() and the recap agent (recap-agent.ts)
 * both decode through it. Without a batch it has one of its own (one row), closed with the session.
 * Holds its cache's tensors until dispose().
 */
export class DecodeSession {
  private cache: KVCache;
  private readonly batch: DecodeBatch;
  private readonly row: number | null;

  constructor(private readonly model: LlamaModel, batch?: DecodeBatch) {
    this.batch = batch ?? new DecodeBatch(model, 1, true);
    const cache = this.batch.takeRow();
    this.row = cache ? cache.layers[0]!.row! : null;
    this.cache = cache ?? model.emptyCache(1);
  }

  /** Tokens in the cache. */
  get length(): number {
    return this.cache.length;
  }

  /** Runs `ids` (one forward) after the cached ones; returns the logits that follow the last. */
  async append(ids: number[]): Promise<Float32Array> {
    if (this.usesGraph(ids)) return this.advance(await this.batch.decodeToken(this.nextRow(ids[0]!), false));
    const out = tf.tidy(() => {
      const r = this.model.hidden(tf.tensor2d(ids, [1, ids.length], 'int32'), this.cache);
      return { hidden: r.hidden, layers: r.cache!.layers };
    });
    const next: KVCache = { layers: out.layers, length: this.cache.length + ids.length };
    disposeCache(this.cache);
    this.cache = next;
    const logits = await lastLogits(this.model, out.hidden);
    out.hidden.dispose();
    return logits;
  }

  /** Like append, but returns only the most likely next token (greedy decoding reads back one id, not the logits). */
  async appendGreedy(ids: number[]): Promise<number> {
    return this.usesGraph(ids) ? this.advance(await this.batch.decodeToken(this.nextRow(ids[0]!), true)) : argmax(await this.append(ids));
  }

  /** Drops the cached tokens and starts over from `ids` (a preallocated cache is reused: positions past the length are never read). */
  async restart(ids: number[]): Promise<Float32Array> {
    if (this.row !== null) this.cache.length = 0;
    else {
      disposeCache(this.cache);
      this.cache = this.model.emptyCache(1);
    }
    return this.append(ids);
  }

  dispose(): void {
    disposeCache(this.cache);
    if (this.row !== null) this.batch.giveBack(this.row);
  }

  private usesGraph(ids: number[]): boolean {
    return ids.length === 1 && this.row !== null && decodeGraphSupported(this.model);
  }

  private nextRow(token: number): DecodeRow {
    return { slot: this.row!, pos: this.cache.length, token };
  }

  /** One token was written into the cache in place. */
  private advance<T>(result: T): T {
    this.cache.length += 1;
    return result;
  }
}
