/**
 * Causal grouped-query self-attention with rotary positions, for whole sequences (a hand-written
 * gradient over materialised scores, or flash attention's kernels) and for decoding over a KV
 * cache. The kernels (webgpu: ArlSoftmaxMasked, ArlSoftmaxGrad, ArlFlashAttention, ArlKvWrite,
 * ArlCachedAttention) are taken where registered, tfjs ops elsewhere.
 *
 * Autodiff of the plain formulation is correct but expensive on the CPU backends: every
 * broadcasting multiply's gradient casts and reduces, each intermediate is saved (cloned), and
 * the layout transposes and rotary tables are differentiated op by op. causalSelfAttention saves
 * only what the backward pass needs and computes the gradient with a handful of element-wise ops
 * and matmuls; checked against autodiff of the plain formulation in test/kernels.test.ts.
 *
 * Everything a gradient needs is passed to `save`: tensors merely captured by the closure are
 * disposed (the engine tidies the forward pass) before the backward pass runs. Only constants that
 * outlive the step (the model's rotate-half matrix) are captured.
 */
import * as tf from '@tensorflow/tfjs';
import { flashAttentionSwitch } from '../switches.ts';
import { batchedProduct, batchedRunsMixed, toHalf } from './matmul.ts';
import { hasKernel } from './registry.ts';
import { applyRotary } from './rotary.ts';
import { flashAttentionSupports } from './webgpu/flash-attention.ts';

type Saver = tf.GradSaveFunc;

/** Shapes and constants of one causal self-attention call. */
export interface AttentionSpec {
  batch: number;
  seq: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  /** Rotary tables for positions start..start+seq-1, [seq, headDim] (HF "rotate half" layout). */
  cos: tf.Tensor2D;
  sin: tf.Tensor2D;
  /** R with x @ R = rotate_half(x), [headDim, headDim]; R^T = -R. */
  rotate: tf.Tensor2D;
  /** Additive mask [groups*seq, seq]: 0 where visible, a large negative number elsewhere. */
  mask: tf.Tensor2D;
  /** The sliding window the mask was built with (null: none). Given, flash attention may be taken (no mask needed). */
  window?: number | null;
}

/** [B*T, n*hd] -> [B, n, T, hd] */
function toHeads(flat: tf.Tensor, s: AttentionSpec, n: number): tf.Tensor4D {
  return tf.transpose(tf.reshape(flat, [s.batch, s.seq, n, s.headDim]), [0, 2, 1, 3]);
}

/** [B, n, T, hd] -> [B*T, n*hd] */
function fromHeads(heads: tf.Tensor, s: AttentionSpec, n: number): tf.Tensor2D {
  return tf.reshape(tf.transpose(tf.reshape(heads, [s.batch, n, s.seq, s.headDim]), [0, 2, 1, 3]), [s.batch * s.seq, n * s.headDim]);
}

/**
 * Causal grouped-query self-attention with rotary positions, from the projections to the merged
 * heads: q [B*T, H*hd], k and v [B*T, KV*hd] -> [B*T, H*hd]. See causalSelfAttention.
 */
export function causalAttention(q: tf.Tensor2D, k: tf.Tensor2D, v: tf.Tensor2D, s: AttentionSpec): tf.Tensor2D {
  return causalSelfAttention(tf.concat([q, k, v], 1), s);
}

/**
 * Whether attention takes the flash kernels (where registered: webgpu): ARL_FLASH_ATTENTION=1 always, =0 never,
 * and by default only where no gradient is being taken (scoring, evaluation, prefill). On the H200
 * (docs/benchmarks.md, 09:32 run, 29.4M model, T 512) their forward beats the materialised path (280k vs 237k
 * tokens/s) but their backward does not (a training step 105.0 vs 100.5 ms).
 */
function takesFlashAttention(headDim: number): boolean {
  const flag = flashAttentionSwitch();
  if (flag === 'never' || !hasKernel('ArlFlashAttention') || !flashAttentionSupports(headDim)) return false;
  return flag === 'always' || !(tf.engine() as unknown as { isTapeOn(): boolean }).isTapeOn();
}

/** The scale of the queries (so of the scores): 1/sqrt(head size). */
const queryScale = (s: AttentionSpec): number => 1 / Math.sqrt(s.headDim);

/** The kernel attributes of attentionHeads and its gradient. */
function headsAttrs(s: AttentionSpec, half: boolean): tf.NamedAttrMap {
  const { batch, seq, heads, kvHeads, headDim } = s;
  return { batch, seq, heads, kvHeads, headDim, scale: queryScale(s), half };
}

/**
 * The operands of attention's products from the fused projection qkv [B*T, (H + 2 KV)*hd]: queries rotated and scaled
 * by 1/sqrt(hd), [B, KV, G*T, hd] (the G query heads sharing a KV head folded into the rows), keys rotated and values,
 * [B, KV, T, hd]; as f16 operands (toHalf's layout) with `half`. One kernel where registered (webgpu).
 */
function attentionHeads(qkv: tf.Tensor, s: AttentionSpec, cos: tf.Tensor2D, sin: tf.Tensor2D, half: boolean): tf.Tensor4D[] {
  if (hasKernel('ArlAttentionHeads')) return tf.engine().runKernel('ArlAttentionHeads', { qkv, cos, sin }, headsAttrs(s, half)) as tf.Tensor4D[];
  const { batch, seq, heads, kvHeads, headDim } = s;
  const all = toHeads(qkv, s, heads + 2 * kvHeads); // [B, H + 2 KV, T, hd]
  const qk = applyRotary(tf.slice(all, [0, 0, 0, 0], [batch, heads + kvHeads, seq, headDim]), cos, sin, s.rotate);
  const q = tf.mul(tf.slice(qk, [0, 0, 0, 0], [batch, heads, seq, headDim]), queryScale(s));
  const heads4 = [
    tf.reshape(q, [batch, kvHeads, (heads / kvHeads) * seq, headDim]),
    tf.slice(qk, [0, heads, 0, 0], [batch, kvHeads, seq, headDim]),
    tf.slice(all, [0, heads + kvHeads, 0, 0], [batch, kvHeads, seq, headDim]),
  ];
  return heads4.map((x) => (half ? toHalf(x) : x)) as tf.Tensor4D[];
}

/** The gradient of attentionHeads: dq [B, KV, G*T, hd], dk and dv [B, KV, T, hd] (f32) -> dqkv [B*T, (H + 2 KV)*hd]. */
function attentionHeadsGrad(dq: tf.Tensor, dk: tf.Tensor, dv: tf.Tensor, s: AttentionSpec, cos: tf.Tensor2D, sin: tf.Tensor2D): tf.Tensor2D {
  if (hasKernel('ArlAttentionHeadsGrad')) return tf.engine().runKernel('ArlAttentionHeadsGrad', { dq, dk, dv, cos, sin }, headsAttrs(s, false)) as tf.Tensor2D;
  const { batch, seq, heads, kvHeads, headDim } = s;
  const dqRotated = tf.mul(tf.reshape(dq, [batch, heads, seq, headDim]), queryScale(s));
  const dqk = applyRotary(tf.concat([dqRotated, dk], 1) as tf.Tensor4D, cos, sin, s.rotate, true);
  return fromHeads(tf.concat([dqk, dv], 1), s, heads + 2 * kvHeads);
}

/**
 * Causal grouped-query self-attention with rotary positions on the fused projection
 * qkv [B*T, (H + 2 KV)*hd] (queries, then keys, then values, each head-major) -> [B*T, H*hd].
 * One layout transpose in and one out each way; rotary is applied to queries and keys together.
 * The G = H/KV query heads sharing a KV head are folded into the query-length axis
 * ([B, KV, G*T, hd]) so one batched matmul serves the group and K/V are never copied per head.
 * With the window given, flash attention instead where takesFlashAttention says so.
 */
export function causalSelfAttention(qkv: tf.Tensor2D, s: AttentionSpec): tf.Tensor2D {
  if (s.window !== undefined && takesFlashAttention(s.headDim)) {
    const { batch, seq, heads, kvHeads, headDim, window } = s;
    return flashAttention(qkv, s.cos, s.sin, { batch, seq, heads, kvHeads, headDim, window });
  }
  const { batch, seq, heads, kvHeads, headDim, cos, sin, mask } = s;
  const groups = heads / kvHeads;
  // Under mixed precision each product operand is made f16 once (the forward's kept for the gradient's products).
  const mixed = batchedRunsMixed(groups * seq, seq, headDim);
  const operand = (x: tf.Tensor): tf.Tensor => (mixed ? toHalf(x) : x);
  const op = tf.customGrad((...args: (tf.Tensor | Saver)[]) => {
    const [qkvIn] = args as tf.Tensor[];
    const save = args[1] as Saver;
    const [qo, ko, vo] = attentionHeads(qkvIn, s, cos, sin, mixed);
    const scores = batchedProduct(qo, ko, false, true, { causal: 'scores', seq }); // [B, KV, G*T, T]
    // Under mixed precision the softmax also writes the probabilities as the context product's f16 operand.
    const [probs, po] = mixed ? softmaxMaskedHalf(scores, mask) : Array<tf.Tensor>(2).fill(softmaxMasked(scores, mask, true));
    const context = batchedProduct(po, vo, false, false, { causal: 'queries', seq }); // [B, KV, G*T, hd]
    const value = fromHeads(context, s, heads);
    // The softmax's gradient takes the f32 probabilities, the products their operands as made.
    save([qo, ko, vo, probs, po, cos, sin]);
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [qs, ks, vs, p, ps, cosSaved, sinSaved] = saved as [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D, tf.Tensor4D, tf.Tensor4D, tf.Tensor2D, tf.Tensor2D];
        const dContext = operand(tf.reshape(toHeads(dy, s, heads), [batch, kvHeads, groups * seq, headDim]));
        const dv = batchedProduct(ps, dContext, true, false, { causal: 'keys', seq }); // [B, KV, T, hd]
        const dp = batchedProduct(dContext, vs, false, true, { causal: 'scores', seq }); // [B, KV, G*T, T]
        const dScores = mixed ? softmaxGradHalf(p, dp) : softmaxGrad(p, dp, true);
        const dq = batchedProduct(dScores, ks, false, false, { causal: 'queries', seq }); // gradient w.r.t. the scaled, rotated queries
        const dk = batchedProduct(dScores, qs, true, false, { causal: 'keys', seq }); // [B, KV, T, hd]
        return [attentionHeadsGrad(dq, dk, dv, s, cosSaved, sinSaved)];
      },
    };
  });
  return op(qkv) as tf.Tensor2D;
}

/**
 * softmax(scores + mask) over the last axis; mask [R, C] repeats over the leading rows of scores [..., R, C]. `causal`:
 * scores are causal attention's [..., G*T, T] and the mask hides at least the keys after each row's token, which our
 * kernel then does not read.
 */
export function softmaxMasked<T extends tf.Tensor>(scores: T, mask: tf.Tensor2D, causal = false): T {
  if (hasKernel('ArlSoftmaxMasked')) return tf.engine().runKernel('ArlSoftmaxMasked', { scores, mask }, { causal }) as T;
  return tf.softmax(tf.add(scores, mask)) as T;
}

/** The softmax's input gradient p * (dp - sum(dp * p)) over the last axis, from its output p and dp (`causal`: as softmaxMasked's). */
export function softmaxGrad<T extends tf.Tensor>(p: T, dp: T, causal = false): T {
  if (hasKernel('ArlSoftmaxGrad')) return tf.engine().runKernel('ArlSoftmaxGrad', { p, dp }, { causal }) as T;
  return tf.mul(p, tf.sub(dp, tf.sum(tf.mul(dp, p), -1, true)));
}

/** softmaxMasked of causal attention under mixed precision (our webgpu kernels): [p, p as an f16 product operand], written in one pass. */
function softmaxMaskedHalf<T extends tf.Tensor>(scores: T, mask: tf.Tensor2D): [T, tf.Tensor] {
  return tf.engine().runKernel('ArlSoftmaxMasked', { scores, mask }, { half: true, causal: true }) as unknown as [T, tf.Tensor];
}

/** softmaxGrad of causal attention under mixed precision (our webgpu kernels): the gradient as an f16 product operand only. */
function softmaxGradHalf(p: tf.Tensor, dp: tf.Tensor): tf.Tensor {
  return tf.engine().runKernel('ArlSoftmaxGrad', { p, dp }, { half: true, causal: true }) as tf.Tensor;
}

/** Shapes of one flash-attention call. */
export interface FlashAttentionSpec {
  batch: number;
  seq: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  /** Sliding window (a query sees the `window` latest keys, itself included); null: all earlier keys. */
  window: number | null;
}

/**
 * Causal (optionally windowed) grouped-query self-attention with rotary positions on the fused
 * projection qkv [B*T, (H + 2 KV)*hd] -> [B*T, H*hd], differentiable w.r.t. qkv, never
 * materialising the scores. cos/sin [T, hd] are the tables for positions 0..T-1. Only where
 * ArlFlashAttention is registered and flashAttentionSupports(headDim).
 */
export function flashAttention(qkv: tf.Tensor2D, cos: tf.Tensor2D, sin: tf.Tensor2D, spec: FlashAttentionSpec): tf.Tensor2D {
  const attrs = { ...spec } as unknown as tf.NamedAttrMap;
  const op = tf.customGrad((...args: (tf.Tensor | Saver)[]) => {
    const [qkvIn] = args as tf.Tensor[];
    const save = args[1] as Saver;
    const [value, lse] = tf.engine().runKernel('ArlFlashAttention', { qkv: qkvIn, cos, sin }, attrs) as tf.Tensor[];
    save([qkvIn, cos, sin, value, lse]);
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [q, c, sn, out, l] = saved;
        return [tf.engine().runKernel('ArlFlashAttentionGrad', { qkv: q, cos: c, sin: sn, out, lse: l, dy }, attrs) as tf.Tensor];
      },
    };
  });
  return op(qkv) as tf.Tensor2D;
}

/** One layer's keys and values [B, KV, positions, hd]; `capacity` set when preallocated (see cacheCapacity). */
export type LayerCache = { k: tf.Tensor4D; v: tf.Tensor4D; capacity?: number };

/** Positions to preallocate in a KV cache for sequences up to maxSeq, or null where caches grow by concatenation. */
export function cacheCapacity(maxSeq: number): number | null {
  return hasKernel('ArlCachedAttention') ? maxSeq : null;
}

/** Shapes of one cached-attention call. */
export interface CacheShape {
  batch: number;
  seq: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  /** Positions the cache holds (its third axis). */
  capacity: number;
  /** Sliding attention window, or null for full causal attention. */
  window: number | null;
}

/** One cached-attention call: shapes, positions, and the model's constants. */
export interface CachedAttentionSpec {
  batch: number;
  seq: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  /** Position of the first new token. */
  start: number;
  window: number | null;
  /** Rotary tables for every position [maxSeq, hd], and R with x @ R = rotate_half(x). */
  cos: tf.Tensor2D;
  sin: tf.Tensor2D;
  rotate: tf.Tensor2D;
  /** Additive mask [groups*T, start+T] for a growing cache (unused by a preallocated one). */
  mask: tf.Tensor2D | null;
  /** A preallocated cache's (cache row, first new position) per sequence, int32 [2B] (see KVCache.sequences). */
  rows: tf.Tensor1D | null;
}

/**
 * Attention of T new tokens over the cache plus themselves: q [B*T, H*hd], k and v [B*T, KV*hd]
 * (before rotary) -> the merged heads [B*T, H*hd] and the extended cache. A preallocated cache is
 * written in place (ArlKvWrite) and attended by one kernel (ArlCachedAttention); the returned cache
 * holds new handles on the same buffers, so the caller may dispose the old one as usual. A growing
 * cache is concatenated, and attended with tfjs ops.
 */
export function cachedAttention(q: tf.Tensor2D, k: tf.Tensor2D, v: tf.Tensor2D, cache: LayerCache, s: CachedAttentionSpec): { out: tf.Tensor2D; cache: LayerCache } {
  const { batch, seq, heads, kvHeads, headDim, start } = s;
  if (cache.capacity !== undefined) {
    if (!s.rows) throw new Error('a preallocated cache needs the sequences\' cache rows and positions');
    const attrs = { batch, seq, heads, kvHeads, headDim, capacity: cache.capacity, window: s.window } satisfies CacheShape as unknown as tf.NamedAttrMap;
    tf.engine().runKernel('ArlKvWrite', { cacheK: cache.k, cacheV: cache.v, k, v, cos: s.cos, sin: s.sin, rows: s.rows }, attrs);
    const out = tf.engine().runKernel('ArlCachedAttention', { q, cacheK: cache.k, cacheV: cache.v, cos: s.cos, sin: s.sin, rows: s.rows }, attrs) as tf.Tensor2D;
    return { out, cache: { k: tf.clone(cache.k), v: tf.clone(cache.v), capacity: cache.capacity } };
  }
  const groups = heads / kvHeads;
  // [B*T, n*hd] -> [B, n, T, hd] with rotary positions applied
  const toHeads = (flat: tf.Tensor2D, n: number): tf.Tensor4D => tf.transpose(tf.reshape(flat, [batch, seq, n, headDim]), [0, 2, 1, 3]);
  const cos = tf.slice(s.cos, [start, 0], [seq, headDim]);
  const sin = tf.slice(s.sin, [start, 0], [seq, headDim]);
  const qh = applyRotary(toHeads(q, heads), cos, sin, s.rotate);
  const kAll = tf.concat([cache.k, applyRotary(toHeads(k, kvHeads), cos, sin, s.rotate)], 2);
  const vAll = tf.concat([cache.v, toHeads(v, kvHeads)], 2);

  // Fold each KV group's query heads into the length axis: [B, KV, G*T, hd].
  const qGrouped = tf.mul(tf.reshape(qh, [batch, kvHeads, groups * seq, headDim]), 1 / Math.sqrt(headDim));
  const scores = tf.add(tf.matMul(qGrouped, kAll, false, true), s.mask!);
  const context = tf.matMul(tf.softmax(scores), vAll); // [B, KV, G*T, hd]
  const out = tf.reshape(tf.transpose(tf.reshape(context, [batch, heads, seq, headDim]), [0, 2, 1, 3]), [batch * seq, heads * headDim]) as tf.Tensor2D;
  return { out, cache: { k: kAll, v: vAll } };
}
