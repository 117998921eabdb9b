/**
 * The Llama decoder in tfjs layers: token embedding, N x (RMSNorm -> grouped-query attention with
 * rotary positions -> residual, RMSNorm -> SwiGLU MLP -> residual), final RMSNorm, LM head
 * (optionally tied to the embedding). No biases. Weight names follow Hugging Face's
 * LlamaForCausalLM so import/export is a rename plus a transpose of the linear kernels
 * (ours are [in, out], HF's are [out, in]).
 *
 * Every tensor stays rank <= 4 (the webgpu backend mis-compiles rank-5 pads), and grouped-query
 * attention never copies K/V per head: the G query heads sharing a KV head are folded into the
 * query-length axis, [B, KV, G*T, hd], so one batched matmul serves the whole group.
 */
import * as tf from '@tensorflow/tfjs';
import type { ModelConfig } from './config.ts';
import { cacheCapacity, cachedAttention, causalSelfAttention, type LayerCache } from '../ops/attention.ts';
import { matmul } from '../ops/matmul.ts';
import { addRmsNorm, rmsNorm } from '../ops/rms-norm.ts';
import { randomNormal } from '../ops/random-normal.ts';
import { residualAdd } from '../ops/residual.ts';
import { swiglu } from '../ops/swiglu.ts';

/**
 * Per-layer keys (rotated) and values, [batch, kvHeads, positions, headDim]: exactly the tokens
 * seen so far, or, when preallocated (where the backend has the cached-attention kernels),
 * `capacity` positions of which the first KVCache.length are filled, written in place: no
 * per-token concatenation, no mask upload, and one attention kernel.
 */
export interface KVCache {
  layers: LayerCache[];
  /** Number of positions already in the cache (the next token's position). */
  length: number;
  /**
   * Sequences of a preallocated cache each at its own cache row and length (DecodeBatch's batched prompts):
   * per sequence of the batch its row, its first new position and its tokens (the rest of the batch's T is
   * padding). Without it, sequence b is row b, all at `length`.
   */
  sequences?: { row: number; start: number; tokens: number }[];
}

const MASKED = -1e9;

/** The linear projections of a decoder block, by their Hugging Face names. */
export type Projection = 'q_proj' | 'k_proj' | 'v_proj' | 'o_proj' | 'gate_proj' | 'up_proj' | 'down_proj';

/**
 * A per-block adapter (LIFT's Gated Memory, LoRA). Each hook is optional; a block without an
 * adapter runs exactly as before (no extra ops).
 */
export interface BlockAdapter {
  /** A term added to projection `name`'s output given its input x [N, in] (LoRA), or null for none. */
  projectionDelta?(name: Projection, x: tf.Tensor2D): tf.Tensor2D | null;
  /** The merged attention heads [N, H*hd] rewritten given each head's query before RoPE [N, H*hd] (Gated Memory). */
  attentionOutput?(attention: tf.Tensor2D, queries: tf.Tensor2D): tf.Tensor2D;
}

/**
 * `variable` (made zero-filled) drawn from N(0, std) with `seed`; a null seed leaves the zeros, for a model whose
 * weights are assigned next from a checkpoint.
 */
function drawNormal(variable: tf.LayerVariable, std: number, seed: number | null): tf.LayerVariable {
  if (seed === null) return variable;
  const values = randomNormal(variable.shape as number[], std, seed);
  variable.write(values);
  values.dispose();
  return variable;
}

const offsetSeed = (seed: number | null, by: number): number | null => (seed === null ? null : seed + by);

/** Inverse rotary frequencies, computed in float32 steps as Hugging Face does, with optional scaling. */
export function ropeInverseFrequencies(config: ModelConfig): Float32Array {
  const { headDim, ropeTheta, ropeScaling } = config;
  const inv = new Float32Array(headDim / 2);
  for (let i = 0; i < headDim / 2; i++) inv[i] = 1 / Math.fround(Math.pow(ropeTheta, Math.fround((2 * i) / headDim)));
  if (ropeScaling.type === 'linear') {
    for (let i = 0; i < inv.length; i++) inv[i] = inv[i] / (ropeScaling.factor ?? 1);
  } else if (ropeScaling.type === 'llama3') {
    const factor = ropeScaling.factor ?? 8;
    const low = ropeScaling.lowFreqFactor ?? 1;
    const high = ropeScaling.highFreqFactor ?? 4;
    const oldLen = ropeScaling.originalMaxPositions ?? 8192;
    const lowWavelen = oldLen / low;
    const highWavelen = oldLen / high;
    for (let i = 0; i < inv.length; i++) {
      const wavelen = (2 * Math.PI) / inv[i];
      if (wavelen > lowWavelen) inv[i] = inv[i] / factor;
      else if (wavelen >= highWavelen) {
        const smooth = (oldLen / wavelen - low) / (high - low);
        inv[i] = (1 - smooth) * (inv[i] / factor) + smooth * inv[i];
      }
    }
  }
  return inv;
}

/** cos/sin tables [maxSeq, headDim] in HF's "rotate half" layout (frequencies repeated twice). */
export function ropeTables(config: ModelConfig): { cos: tf.Tensor2D; sin: tf.Tensor2D } {
  const inv = ropeInverseFrequencies(config);
  const half = config.headDim / 2;
  const cos = new Float32Array(config.maxSeq * config.headDim);
  const sin = new Float32Array(config.maxSeq * config.headDim);
  for (let p = 0; p < config.maxSeq; p++) {
    for (let i = 0; i < half; i++) {
      const angle = Math.fround(p * inv[i]);
      const base = p * config.headDim;
      cos[base + i] = cos[base + half + i] = Math.cos(angle);
      sin[base + i] = sin[base + half + i] = Math.sin(angle);
    }
  }
  return { cos: tf.tensor2d(cos, [config.maxSeq, config.headDim]), sin: tf.tensor2d(sin, [config.maxSeq, config.headDim]) };
}

/** The matrix R with x @ R = rotate_half(x) = concat(-x2, x1): one matmul instead of two slices and a concat. */
export function rotateHalfMatrix(headDim: number): tf.Tensor2D {
  const half = headDim / 2;
  const r = new Float32Array(headDim * headDim);
  for (let i = 0; i < half; i++) {
    r[(half + i) * headDim + i] = -1; // out[i] = -x[half + i]
    r[i * headDim + half + i] = 1; // out[half + i] = x[i]
  }
  return tf.tensor2d(r, [headDim, headDim]);
}

/** Additive mask [groups*T, start+T]: 0 where query (absolute position start+t) may see key j, else -1e9. */
export function attentionMask(queryLen: number, start: number, groups: number, window: number | null): tf.Tensor2D {
  const keyLen = start + queryLen;
  const values = new Float32Array(groups * queryLen * keyLen);
  for (let g = 0; g < groups; g++) {
    for (let t = 0; t < queryLen; t++) {
      const pos = start + t;
      const row = (g * queryLen + t) * keyLen;
      for (let j = 0; j < keyLen; j++) {
        const visible = j <= pos && (window === null || pos - j < window);
        if (!visible) values[row + j] = MASKED;
      }
    }
  }
  return tf.tensor2d(values, [groups * queryLen, keyLen]);
}

/** Constants shared by all blocks during one forward pass. */
interface ForwardContext {
  start: number;
  /** The cos/sin tables [maxSeq, headDim]. */
  cos: tf.Tensor2D;
  sin: tf.Tensor2D;
  /** Their rows at this pass's positions, sliced once for all blocks; null where a cache's kernel indexes the tables itself. */
  positions: { cos: tf.Tensor2D; sin: tf.Tensor2D } | null;
  rotate: tf.Tensor2D;
  /** Additive attention mask; null when a preallocated cache's kernel masks by position itself. */
  mask: tf.Tensor2D | null;
  /** A preallocated cache's (row, first new position) per sequence (CachedAttentionSpec.rows). */
  rows: tf.Tensor1D | null;
}

export class RMSNorm extends tf.layers.Layer {
  static className = 'RMSNorm';
  weight!: tf.LayerVariable;

  constructor(private readonly dim: number, private readonly eps: number, name: string) {
    super({ name });
  }

  override build(): void {
    this.weight = this.addWeight('weight', [this.dim], 'float32', tf.initializers.ones());
    this.built = true;
  }

  /** Normalises over the last axis; any rank. Fused, with a hand-written gradient (ops/rms-norm.ts). */
  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const flat = x.rank === 2 ? (x as tf.Tensor2D) : tf.reshape(x, [-1, this.dim]) as tf.Tensor2D;
      const y = rmsNorm(flat, this.weight.read() as tf.Tensor1D, this.eps);
      return x.rank === 2 ? y : tf.reshape(y, x.shape);
    });
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return this.forward(Array.isArray(inputs) ? inputs[0] : inputs);
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), dim: this.dim, eps: this.eps };
  }
}

export class TokenEmbedding extends tf.layers.Layer {
  static className = 'TokenEmbedding';
  weight!: tf.LayerVariable;

  constructor(private readonly vocabSize: number, private readonly dim: number, private readonly seed: number | null, name: string) {
    super({ name });
  }

  override build(): void {
    this.weight = drawNormal(this.addWeight('weight', [this.vocabSize, this.dim], 'float32', tf.initializers.zeros()), 0.02, this.seed);
    this.built = true;
  }

  /** ids [B, T] -> [B, T, dim] */
  forward(ids: tf.Tensor2D): tf.Tensor3D {
    return tf.gather(this.weight.read(), ids) as tf.Tensor3D;
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return this.forward((Array.isArray(inputs) ? inputs[0] : inputs) as tf.Tensor2D);
  }

  override computeOutputShape(inputShape: tf.Shape): tf.Shape {
    return [...inputShape, this.dim];
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), vocabSize: this.vocabSize, dim: this.dim, seed: this.seed };
  }
}

/** Output projection to vocabulary logits (used when embeddings are not tied). */
export class LMHead extends tf.layers.Layer {
  static className = 'LMHead';
  weight!: tf.LayerVariable;

  constructor(private readonly dim: number, private readonly vocabSize: number, private readonly seed: number | null) {
    super({ name: 'lm_head' });
  }

  override build(): void {
    this.weight = drawNormal(this.addWeight('weight', [this.dim, this.vocabSize], 'float32', tf.initializers.zeros()), 0.02, this.seed);
    this.built = true;
  }

  forward(hidden2d: tf.Tensor2D): tf.Tensor2D {
    return matmul(hidden2d, this.weight.read() as tf.Tensor2D);
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return this.forward((Array.isArray(inputs) ? inputs[0] : inputs) as tf.Tensor2D);
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), dim: this.dim, vocabSize: this.vocabSize, seed: this.seed };
  }
}

/** One decoder layer: attention and MLP sublayers with pre-norm residuals. */
export class DecoderBlock extends tf.layers.Layer {
  static className = 'DecoderBlock';
  attnNorm: RMSNorm;
  mlpNorm: RMSNorm;
  wq!: tf.LayerVariable;
  wk!: tf.LayerVariable;
  wv!: tf.LayerVariable;
  wo!: tf.LayerVariable;
  wGate!: tf.LayerVariable;
  wUp!: tf.LayerVariable;
  wDown!: tf.LayerVariable;
  /** Optional adapter (src/lift); its weights are its own, never among trainableWeights. */
  adapter: BlockAdapter | null = null;

  constructor(private readonly c: ModelConfig, private readonly index: number, private readonly seed: number | null) {
    super({ name: `layers.${index}` });
    this.attnNorm = new RMSNorm(c.dim, c.normEps, `layers.${index}.input_layernorm`);
    this.mlpNorm = new RMSNorm(c.dim, c.normEps, `layers.${index}.post_attention_layernorm`);
  }

  override build(): void {
    const { dim, heads, kvHeads, headDim, hiddenDim, layers } = this.c;
    const std = 0.02;
    const residualStd = std / Math.sqrt(2 * layers); // GPT-2: keep the residual stream's variance flat in depth
    const s = this.seed;
    this.attnNorm.build();
    this.mlpNorm.build();
    this.wq = drawNormal(this.addWeight('q_proj', [dim, heads * headDim], 'float32', tf.initializers.zeros()), std, offsetSeed(s, 1));
    this.wk = drawNormal(this.addWeight('k_proj', [dim, kvHeads * headDim], 'float32', tf.initializers.zeros()), std, offsetSeed(s, 2));
    this.wv = drawNormal(this.addWeight('v_proj', [dim, kvHeads * headDim], 'float32', tf.initializers.zeros()), std, offsetSeed(s, 3));
    this.wo = drawNormal(this.addWeight('o_proj', [heads * headDim, dim], 'float32', tf.initializers.zeros()), residualStd, offsetSeed(s, 4));
    this.wGate = drawNormal(this.addWeight('gate_proj', [dim, hiddenDim], 'float32', tf.initializers.zeros()), std, offsetSeed(s, 5));
    this.wUp = drawNormal(this.addWeight('up_proj', [dim, hiddenDim], 'float32', tf.initializers.zeros()), std, offsetSeed(s, 6));
    this.wDown = drawNormal(this.addWeight('down_proj', [hiddenDim, dim], 'float32', tf.initializers.zeros()), residualStd, offsetSeed(s, 7));
    this.built = true;
  }

  override get trainableWeights(): tf.LayerVariable[] {
    return [this.attnNorm.weight, this.wq, this.wk, this.wv, this.wo, this.mlpNorm.weight, this.wGate, this.wUp, this.wDown];
  }

  /** x [B, T, dim] -> [B, T, dim]; with a cache entry, also returns this layer's extended K/V. */
  forward(x: tf.Tensor3D, ctx: ForwardContext, cache?: LayerCache): { y: tf.Tensor3D; cache?: LayerCache } {
    const [batch, seq, dim] = x.shape;
    const rows = batch * seq;
    const x2 = tf.reshape(x, [rows, dim]) as tf.Tensor2D;
    const h = this.attnNorm.forward(x2) as tf.Tensor2D;
    // Whole sequences (training, scoring) take the fused attention with hand-written gradients;
    // incremental decoding attends over the cached keys and values.
    const attention: { out: tf.Tensor2D; cache?: LayerCache } = cache ? this.cachedAttention(h, batch, seq, ctx, cache) : { out: this.fusedAttention(h, batch, seq, ctx) };
    const attnOut = this.project('o_proj', attention.out, this.wo);
    let x1: tf.Tensor2D;
    let h2: tf.Tensor2D;
    if (cache) {
      // Decoding (no gradients): the residual add and its norm in one kernel where there is one.
      [x1, h2] = addRmsNorm(x2, attnOut, this.mlpNorm.weight.read() as tf.Tensor1D, this.c.normEps);
    } else {
      x1 = residualAdd(x2, attnOut);
      h2 = this.mlpNorm.forward(x1) as tf.Tensor2D;
    }
    const mlp = this.project('down_proj', swiglu(this.project('gate_proj', h2, this.wGate), this.project('up_proj', h2, this.wUp)), this.wDown);
    const y = tf.reshape(residualAdd(x1, mlp), [batch, seq, dim]) as tf.Tensor3D;
    return attention.cache ? { y, cache: attention.cache } : { y };
  }

  /** x @ w, plus the adapter's term for this projection if it has one. */
  private project(name: Projection, x: tf.Tensor2D, w: tf.LayerVariable): tf.Tensor2D {
    const y = matmul(x, w.read() as tf.Tensor2D);
    const delta = this.adapter?.projectionDelta?.(name, x);
    return delta ? tf.add(y, delta) : y;
  }

  /** The adapter's rewrite of the merged attention heads, given the pre-RoPE queries [N, H*hd]. */
  private adaptAttention(out: tf.Tensor2D, queries: () => tf.Tensor2D): tf.Tensor2D {
    return this.adapter?.attentionOutput ? this.adapter.attentionOutput(out, queries()) : out;
  }

  /** Normed input [B*T, dim] -> attention output [B*T, heads*headDim] for whole sequences. */
  private fusedAttention(h: tf.Tensor2D, batch: number, seq: number, ctx: ForwardContext): tf.Tensor2D {
    const { heads, kvHeads, headDim } = this.c;
    // One projection for queries, keys and values (one product and one weight gradient, not three).
    let qkv = matmul(h, tf.concat([this.wq.read(), this.wk.read(), this.wv.read()], 1) as tf.Tensor2D);
    if (this.adapter?.projectionDelta) {
      const widths = { q_proj: heads * headDim, k_proj: kvHeads * headDim, v_proj: kvHeads * headDim };
      const deltas = (['q_proj', 'k_proj', 'v_proj'] as const).map((n) => this.adapter!.projectionDelta!(n, h) ?? tf.zeros([h.shape[0], widths[n]]));
      qkv = tf.add(qkv, tf.concat(deltas, 1));
    }
    const out = causalSelfAttention(qkv, {
      batch,
      seq,
      heads,
      kvHeads,
      headDim,
      cos: ctx.positions!.cos,
      sin: ctx.positions!.sin,
      rotate: ctx.rotate,
      mask: ctx.mask!,
      window: this.c.attentionWindow,
    });
    return this.adaptAttention(out, () => tf.slice(qkv, [0, 0], [batch * seq, heads * headDim]));
  }

  /** Attention of T new tokens over the cache plus themselves; returns the output and the extended K/V. */
  private cachedAttention(h: tf.Tensor2D, batch: number, seq: number, ctx: ForwardContext, cache: LayerCache): { out: tf.Tensor2D; cache: LayerCache } {
    const { heads, kvHeads, headDim } = this.c;
    const queries = this.project('q_proj', h, this.wq);
    const spec = { batch, seq, heads, kvHeads, headDim, start: ctx.start, window: this.c.attentionWindow, cos: ctx.cos, sin: ctx.sin, rotate: ctx.rotate, mask: ctx.mask, rows: ctx.rows };
    const attention = cachedAttention(queries, this.project('k_proj', h, this.wk), this.project('v_proj', h, this.wv), cache, spec);
    return { out: this.adaptAttention(attention.out, () => queries), cache: attention.cache };
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), modelConfig: this.c as unknown as tf.serialization.ConfigDictValue, index: this.index, seed: this.seed };
  }
}

/** The whole decoder. Holds its layers and the rotary constants; `dispose()` frees them all. */
export class LlamaModel {
  readonly embedding: TokenEmbedding;
  readonly blocks: DecoderBlock[];
  readonly finalNorm: RMSNorm;
  readonly lmHead: LMHead | null;
  /** Rotary tables [maxSeq, headDim] (ropeTables); the webgpu decode graph binds them too. */
  readonly cos: tf.Tensor2D;
  readonly sin: tf.Tensor2D;
  private readonly rotate: tf.Tensor2D;

  /** `seed` null: zero weights, to be assigned from a checkpoint. */
  constructor(readonly config: ModelConfig, seed: number | null = 1234) {
    this.embedding = new TokenEmbedding(config.vocabSize, config.dim, seed, 'embed_tokens');
    this.embedding.build();
    this.blocks = [];
    for (let i = 0; i < config.layers; i++) {
      const block = new DecoderBlock(config, i, offsetSeed(seed, 100 * (i + 1)));
      block.build();
      this.blocks.push(block);
    }
    this.finalNorm = new RMSNorm(config.dim, config.normEps, 'norm');
    this.finalNorm.build();
    this.lmHead = config.tieEmbeddings ? null : new LMHead(config.dim, config.vocabSize, offsetSeed(seed, 7));
    this.lmHead?.build();
    ({ cos: this.cos, sin: this.sin } = ropeTables(config));
    this.rotate = rotateHalfMatrix(config.headDim);
  }

  /**
   * Weights by Hugging Face name (our kernels are [in, out]; `transposed` marks those stored
   * transposed relative to HF). Order is stable: it is the optimizer-state and checkpoint order.
   */
  namedWeights(): { name: string; variable: tf.LayerVariable; transposed: boolean }[] {
    const out: { name: string; variable: tf.LayerVariable; transposed: boolean }[] = [];
    out.push({ name: 'model.embed_tokens.weight', variable: this.embedding.weight, transposed: false });
    for (const [i, b] of this.blocks.entries()) {
      const p = `model.layers.${i}`;
      out.push({ name: `${p}.input_layernorm.weight`, variable: b.attnNorm.weight, transposed: false });
      out.push({ name: `${p}.self_attn.q_proj.weight`, variable: b.wq, transposed: true });
      out.push({ name: `${p}.self_attn.k_proj.weight`, variable: b.wk, transposed: true });
      out.push({ name: `${p}.self_attn.v_proj.weight`, variable: b.wv, transposed: true });
      out.push({ name: `${p}.self_attn.o_proj.weight`, variable: b.wo, transposed: true });
      out.push({ name: `${p}.post_attention_layernorm.weight`, variable: b.mlpNorm.weight, transposed: false });
      out.push({ name: `${p}.mlp.gate_proj.weight`, variable: b.wGate, transposed: true });
      out.push({ name: `${p}.mlp.up_proj.weight`, variable: b.wUp, transposed: true });
      out.push({ name: `${p}.mlp.down_proj.weight`, variable: b.wDown, transposed: true });
    }
    out.push({ name: 'model.norm.weight', variable: this.finalNorm.weight, transposed: false });
    if (this.lmHead) out.push({ name: 'lm_head.weight', variable: this.lmHead.weight, transposed: true });
    return out;
  }

  /** The tf.Variables to train, in namedWeights() order. */
  variables(): tf.Variable[] {
    return this.namedWeights().map((w) => w.variable.read() as tf.Variable);
  }

  /**
   * ids [B, T] -> final hidden states [B, T, dim]. With a cache, T new tokens are appended after
   * cache.length positions and the extended cache is returned (the caller owns both caches; a
   * preallocated one is written in place, so the old cache is only good for disposing).
   */
  hidden(ids: tf.Tensor2D, cache?: KVCache): { hidden: tf.Tensor3D; cache?: KVCache } {
    const start = cache?.length ?? 0;
    const [batch, seq] = ids.shape;
    const sequences = cache?.sequences ?? Array.from({ length: batch }, (_, b) => ({ row: b, start, tokens: seq }));
    const longest = Math.max(...sequences.map((r) => r.start + r.tokens));
    if (longest > this.config.maxSeq) throw new Error(`sequence of ${longest} tokens exceeds the model's maxSeq ${this.config.maxSeq}`);
    if (sequences.length !== batch || sequences.some((r) => r.tokens > seq)) throw new Error(`the cache's ${sequences.length} sequences do not fit the batch of ${batch} x ${seq} tokens`);
    const groups = this.config.heads / this.config.kvHeads;
    const preallocated = cache?.layers[0]?.capacity !== undefined;
    const mask = preallocated ? null : attentionMask(seq, start, groups, this.config.attentionWindow);
    const rows = preallocated ? tf.tensor1d(sequences.flatMap((r) => [r.row, r.start]), 'int32') : null;
    const { headDim } = this.config;
    const positions = cache ? null : { cos: tf.slice(this.cos, [start, 0], [seq, headDim]), sin: tf.slice(this.sin, [start, 0], [seq, headDim]) };
    const ctx: ForwardContext = { start, cos: this.cos, sin: this.sin, positions, rotate: this.rotate, mask, rows };
    let x = this.embedding.forward(ids);
    const newLayers: LayerCache[] = [];
    for (const [i, block] of this.blocks.entries()) {
      // One block's intermediates at a time: what a gradient needs, the ops have saved for themselves.
      const out = tf.tidy(() => block.forward(x, ctx, cache?.layers[i]));
      x.dispose();
      x = out.y;
      if (out.cache) newLayers.push(out.cache);
    }
    const hidden = this.finalNorm.forward(x) as tf.Tensor3D;
    // Its kernels are recorded; the backend frees its buffer once they have run.
    rows?.dispose();
    return cache ? { hidden, cache: { layers: newLayers, length: start + seq } } : { hidden };
  }

  /** Hidden states [N, dim] -> logits [N, vocab]. */
  project(hidden2d: tf.Tensor2D): tf.Tensor2D {
    return this.lmHead ? this.lmHead.forward(hidden2d) : matmul(hidden2d, this.embedding.weight.read() as tf.Tensor2D, false, true);
  }

  /** ids [B, T] -> logits [B, T, vocab]. Call inside tf.tidy. */
  logits(ids: tf.Tensor2D): tf.Tensor3D {
    const { hidden } = this.hidden(ids);
    const [b, t, d] = hidden.shape;
    return tf.reshape(this.project(tf.reshape(hidden, [b * t, d])), [b, t, this.config.vocabSize]);
  }

  /** An empty cache for `batch` sequences: preallocated to maxSeq positions where the backend has the cached-attention kernels, growing elsewhere. */
  emptyCache(batch: number): KVCache {
    const { kvHeads, headDim, maxSeq } = this.config;
    const capacity = cacheCapacity(maxSeq);
    const positions = capacity ?? 0;
    const layers = this.blocks.map(() => ({ k: tf.zeros([batch, kvHeads, positions, headDim]) as tf.Tensor4D, v: tf.zeros([batch, kvHeads, positions, headDim]) as tf.Tensor4D, ...(capacity ? { capacity } : {}) }));
    return { layers, length: 0 };
  }

  dispose(): void {
    for (const w of this.namedWeights()) w.variable.dispose();
    tf.dispose([this.cos, this.sin, this.rotate]);
  }
}

export function disposeCache(cache: KVCache): void {
  for (const l of cache.layers) tf.dispose([l.k, l.v]);
}

for (const cls of [RMSNorm, TokenEmbedding, LMHead, DecoderBlock]) tf.serialization.registerClass(cls);
