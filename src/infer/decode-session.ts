/**
 * KV-cached decoding states. A DecodeSession is one sequence: tokens appended run through the model
 * once and the next-token logits after the last of them come back. A DecodeBatch is a group of
 * sessions decoding together: their caches are rows of one preallocated cache, and the single
 * tokens they append in the same turn of the event loop go through the decode graph
 * (ops/webgpu/decode-graph.ts) as one step, so N sessions awaiting their next token concurrently
 * cost about one step, not N. Prompts (several tokens) asked for together go through the tfjs model as
 * one forward, each into its own row from its own position (padded to the longest of similar length).
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

/** A single token to decode through the graph, or several (a prompt) to run through the tfjs model, for one row. */
type Pending =
  | { kind: 'token'; row: DecodeRow; greedy: boolean; resolve: (result: number | Float32Array) => void; reject: (error: unknown) => void }
  | { kind: 'prompt'; slot: number; start: number; ids: number[]; resolve: (logits: Float32Array) => void; reject: (error: unknown) => void };

/**
 * Up to `rows` sessions of one model decoding together (see the file comment). Sessions come from
 * session() and give their row back on dispose. With `closeWhenIdle` the batch frees its cache and
 * graph when its last session is disposed (a later session() opens them again).
 */
export class DecodeBatch {
  private cache: LayerCache[] | null = null;
  private graph: DecodeGraph | null = null;
  private readonly freeRows: number[] = [];
  private pending: Pending[] = [];
  private stepping = false;
  private scheduled = false;
  /** Batched steps run and the tokens they decoded; prompt forwards run and the prompts in them. */
  readonly stats = { steps: 0, tokens: 0, promptForwards: 0, prompts: 0 };

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

  /** A free row of the shared cache; null off the shared path. */
  takeRow(): number | null {
    if (!this.shared) return null;
    if (!this.cache) {
      const { kvHeads, headDim, maxSeq } = this.model.config;
      this.cache = this.model.blocks.map(() => ({ k: tf.zeros([this.rows, kvHeads, maxSeq, headDim]) as tf.Tensor4D, v: tf.zeros([this.rows, kvHeads, maxSeq, headDim]) as tf.Tensor4D, capacity: maxSeq }));
      this.freeRows.push(...Array.from({ length: this.rows }, (_, r) => this.rows - 1 - r));
    }
    const row = this.freeRows.pop();
    if (row === undefined) throw new Error(`all ${this.rows} rows of the decode batch are in use`);
    return row;
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
      this.pending.push({ kind: 'token', row, greedy, resolve, reject });
      this.schedule();
    });
  }

  /** Runs `ids` into cache row `slot` from position `start` in the next step, with the other prompts of similar length; resolves to the logits after the last. */
  prompt(slot: number, start: number, ids: number[]): Promise<Float32Array> {
    return new Promise((resolve, reject) => {
      this.pending.push({ kind: 'prompt', slot, start, ids, resolve, reject });
      this.schedule();
    });
  }

  /**
   * One step at a time (the graph's scratch and read-back buffer are shared): what is asked for while
   * a step runs waits for the next. setImmediate lets every session that a step's results wake ask
   * for its next tokens first, so they all go in one step.
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
    const work = this.pending.splice(0);
    const tokens = work.filter((w) => w.kind === 'token');
    const prompts = work.filter((w) => w.kind === 'prompt');
    // Prompts of similar length share a forward (padded to the longest): lengths within a factor of 2.
    const byLength = new Map<number, typeof prompts>();
    for (const p of prompts) {
      const bucket = Math.ceil(Math.log2(p.ids.length));
      const group = byLength.get(bucket);
      if (group) group.push(p);
      else byLength.set(bucket, [p]);
    }
    try {
      await Promise.all([...(tokens.length > 0 ? [this.decodeTokens(tokens)] : []), ...[...byLength.values()].map((group) => this.runPrompts(group))]);
    } finally {
      this.stepping = false;
      this.schedule();
    }
  }

  private async decodeTokens(tokens: Extract<Pending, { kind: 'token' }>[]): Promise<void> {
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
    }
  }

  /** One forward through the tfjs model of several prompts, each into its own row from its own position. */
  private async runPrompts(prompts: Extract<Pending, { kind: 'prompt' }>[]): Promise<void> {
    try {
      const length = Math.max(...prompts.map((p) => p.ids.length));
      const ids = new Int32Array(prompts.length * length);
      prompts.forEach((p, b) => ids.set(p.ids, b * length));
      const cache: KVCache = { layers: this.cache!, length: 0, sequences: prompts.map((p) => ({ row: p.slot, start: p.start, tokens: p.ids.length })) };
      const logits = tf.tidy(() => {
        const { hidden } = this.model.hidden(tf.tensor2d(ids, [prompts.length, length], 'int32'), cache);
        const last = tf.gather(tf.reshape(hidden, [-1, this.model.config.dim]), tf.tensor1d(prompts.map((p, b) => b * length + p.ids.length - 1), 'int32')) as tf.Tensor2D;
        return this.model.project(last);
      });
      const values = (await logits.data()) as Float32Array;
      logits.dispose();
      this.stats.promptForwards++;
      this.stats.prompts += prompts.length;
      const vocab = this.model.config.vocabSize;
      prompts.forEach((p, b) => p.resolve(values.slice(b * vocab, (b + 1) * vocab)));
    } catch (error) {
      for (const p of prompts) p.reject(error);
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
 * On webgpu its tokens live in a row of the batch's cache; elsewhere it holds a growing cache of its own.
 */
export class DecodeSession {
  private readonly batch: DecodeBatch;
  private readonly row: number | null;
  /** The session's own cache where there is no shared one (row null). */
  private own: KVCache | null;
  private tokens = 0;

  constructor(private readonly model: LlamaModel, batch?: DecodeBatch) {
    this.batch = batch ?? new DecodeBatch(model, 1, true);
    this.row = this.batch.takeRow();
    this.own = this.row === null ? model.emptyCache(1) : null;
  }

  /** Tokens in the cache. */
  get length(): number {
    return this.tokens;
  }

  /** Runs `ids` (one forward) after the cached ones; returns the logits that follow the last. */
  async append(ids: number[]): Promise<Float32Array> {
    this.checkRoom(ids.length);
    if (this.row === null) return this.appendOwn(ids);
    const logits = this.usesGraph(ids) ? await this.batch.decodeToken(this.nextRow(ids[0]!), false) : await this.batch.prompt(this.row, this.tokens, ids);
    this.tokens += ids.length;
    return logits;
  }

  /** Like append, but returns only the most likely next token (greedy decoding reads back one id, not the logits). */
  async appendGreedy(ids: number[]): Promise<number> {
    if (!this.usesGraph(ids)) return argmax(await this.append(ids));
    this.checkRoom(1);
    const next = await this.batch.decodeToken(this.nextRow(ids[0]!), true);
    this.tokens += 1;
    return next;
  }

  /** Drops the cached tokens and starts over from `ids` (a shared row is reused: positions past the length are never read). */
  async restart(ids: number[]): Promise<Float32Array> {
    this.tokens = 0;
    if (this.own) {
      disposeCache(this.own);
      this.own = this.model.emptyCache(1);
    }
    return this.append(ids);
  }

  dispose(): void {
    if (this.own) disposeCache(this.own);
    if (this.row !== null) this.batch.giveBack(this.row);
  }

  private async appendOwn(ids: number[]): Promise<Float32Array> {
    const out = tf.tidy(() => {
      const r = this.model.hidden(tf.tensor2d(ids, [1, ids.length], 'int32'), this.own!);
      return { hidden: r.hidden, layers: r.cache!.layers };
    });
    disposeCache(this.own!);
    this.own = { layers: out.layers, length: this.tokens + ids.length };
    this.tokens += ids.length;
    const logits = await lastLogits(this.model, out.hidden);
    out.hidden.dispose();
    return logits;
  }

  /** Checked here, not only where the step runs: one session's overflow must not fail the other sessions' shared step. */
  private checkRoom(count: number): void {
    const { maxSeq } = this.model.config;
    if (this.tokens + count > maxSeq) throw new Error(`sequence of ${this.tokens + count} tokens exceeds the model's maxSeq ${maxSeq}`);
  }

  private usesGraph(ids: number[]): boolean {
    return ids.length === 1 && this.row !== null && decodeGraphSupported(this.model);
  }

  private nextRow(token: number): DecodeRow {
    return { slot: this.row!, pos: this.tokens, token };
  }
}
