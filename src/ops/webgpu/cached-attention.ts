/**
 * KV-cached decoding on webgpu: the cache is preallocated [rows, KV, capacity, hd] (each sequence in
 * a row of it, at its own length) and written in place; ArlKvWrite writes the new keys (rotated) and values, ArlCachedAttention attends each new
 * query over the cache. Rotary positions are applied from the cos/sin tables (HF "rotate half"
 * layout) inside both.
 */
import * as tf from '@tensorflow/tfjs';
import type { CacheShape } from '../attention.ts';
import { allocate, builtins, dispatchRaw, flatIndex, grid, type Uniform } from './runtime.ts';

/**
 * The bindings of a cache write and its per-element store: key element d of the new key at `src`
 * rotated for position `pos` (HF rotate_half) and stored with its value at cache element `dst`.
 * ArlKvWrite below and the decode graph's batched write share it.
 */
export const KV_STORE = `
@group(0) @binding(0) var<storage, read_write> cacheK: array<f32>;
@group(0) @binding(1) var<storage, read_write> cacheV: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> cosT: array<f32>;
@group(0) @binding(5) var<storage, read> sinT: array<f32>;
fn storeKv(src: u32, dst: u32, d: u32, pos: u32, hd: u32) {
  let half = hd / 2u;
  // rotate_half: -x[d + half] in the first half, x[d - half] in the second
  let other = select(1.0, -1.0, d < half) * k[src + select(d - half, d + half, d < half)];
  cacheK[dst] = k[src + d] * cosT[pos * hd + d] + other * sinT[pos * hd + d];
  cacheV[dst] = v[src + d];
}`;

/**
 * The sequences' cache rows and first new positions, (row, start) per sequence: a batch of sequences
 * may sit anywhere in the cache, each at its own length (DecodeBatch's batched prompts).
 */
const SEQUENCE_ROWS = `@group(0) @binding(6) var<storage, read> sequences: array<u32>;`;

/**
 * Thread per (b, t, kv head, d): rotate the new key, store key and value at position start + t of the
 * sequence's cache row. Positions past the capacity (padding after a shorter sequence) are not written.
 */
const KV_WRITE = `${KV_STORE}
${SEQUENCE_ROWS}
struct U { batch: u32, seq: u32, kvHeads: u32, headDim: u32, capacity: u32 };
@group(0) @binding(7) var<uniform> u: U;
@compute @workgroup_size(64) fn main(${builtins}) {
  let i = ${flatIndex(64)};
  let hd = u.headDim;
  if (i >= u.batch * u.seq * u.kvHeads * hd) { return; }
  let d = i % hd;
  let kvh = (i / hd) % u.kvHeads;
  let row = i / (hd * u.kvHeads); // b * seq + t
  let t = row % u.seq;
  let b = row / u.seq;
  let pos = sequences[2u * b + 1u] + t;
  if (pos >= u.capacity) { return; }
  storeKv(row * u.kvHeads * hd + kvh * hd, ((sequences[2u * b] * u.kvHeads + kvh) * u.capacity + pos) * hd + d, d, pos, hd);
}`;

/**
 * A cached-attention kernel of `size` invocations per (b, head, t): the shared bindings, the
 * item's indices, the rotated and scaled query in workgroup memory `qs`, and `kvBase`, the first
 * element of its KV head's cache; then `declarations` (before main) and `body` (inside it).
 */
function cachedAttentionShader(size: number, declarations: string, body: string): string {
  return `
@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> cacheK: array<f32>;
@group(0) @binding(3) var<storage, read> cacheV: array<f32>;
@group(0) @binding(4) var<storage, read> cosT: array<f32>;
@group(0) @binding(5) var<storage, read> sinT: array<f32>;
${SEQUENCE_ROWS}
struct U { batch: u32, seq: u32, heads: u32, kvHeads: u32, headDim: u32, capacity: u32, window: u32, scale: f32 };
@group(0) @binding(7) var<uniform> u: U;
var<workgroup> qs: array<f32, 256>;
${declarations}
@compute @workgroup_size(${size}) fn main(${builtins}) {
  let item = wid.x + wid.y * nwg.x;
  if (item >= u.batch * u.heads * u.seq) { return; }
  let hd = u.headDim;
  let half = hd / 2u;
  let t = item % u.seq;
  let h = (item / u.seq) % u.heads;
  let b = item / (u.seq * u.heads);
  let kvh = h / (u.heads / u.kvHeads);
  // A query past the capacity is padding after a shorter sequence: computed at the last position, never read.
  let pos = min(sequences[2u * b + 1u] + t, u.capacity - 1u);
  var lo = 0u;
  if (u.window > 0u && pos + 1u > u.window) { lo = pos + 1u - u.window; }
  let qBase = (b * u.seq + t) * u.heads * hd + h * hd;
  for (var d = lid; d < hd; d += ${size}u) {
    let other = select(1.0, -1.0, d < half) * q[qBase + select(d - half, d + half, d < half)];
    qs[d] = (q[qBase + d] * cosT[pos * hd + d] + other * sinT[pos * hd + d]) * u.scale;
  }
  workgroupBarrier();
  let kvBase = (sequences[2u * b] * u.kvHeads + kvh) * u.capacity * hd;
${body}}`;
}

/**
 * Workgroup per (b, head, t): the rotated, scaled query against keys [lo, pos] in tiles of 64 with
 * an online softmax (flash-decoding within one workgroup); never materialises the score row.
 */
const CACHED_ATTENTION = cachedAttentionShader(64, 'var<workgroup> scores: array<f32, 64>;', `
  var acc = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
  var runMax = -3.0e38;
  var runSum = 0.0;
  for (var tile = lo; tile <= pos; tile += 64u) {
    let j = tile + lid;
    var s = -3.0e38;
    if (j <= pos) {
      s = 0.0;
      for (var d = 0u; d < hd; d++) { s += qs[d] * cacheK[kvBase + j * hd + d]; }
    }
    scores[lid] = s;
    workgroupBarrier();
    let count = min(64u, pos + 1u - tile);
    var tileMax = -3.0e38;
    for (var x = 0u; x < count; x++) { tileMax = max(tileMax, scores[x]); }
    let newMax = max(runMax, tileMax);
    let correction = exp(runMax - newMax);
    runSum = runSum * correction;
    for (var r = 0u; r < 4u; r++) { acc[r] = acc[r] * correction; }
    for (var x = 0u; x < count; x++) {
      let p = exp(scores[x] - newMax);
      runSum += p;
      let row = kvBase + (tile + x) * hd;
      for (var r = 0u; r < 4u; r++) {
        let d = lid + r * 64u;
        if (d < hd) { acc[r] += p * cacheV[row + d]; }
      }
    }
    runMax = newMax;
    workgroupBarrier();
  }
  let outBase = (b * u.seq + t) * u.heads * hd + h * hd;
  for (var r = 0u; r < 4u; r++) {
    let d = lid + r * 64u;
    if (d < hd) { out[outBase + d] = acc[r] / runSum; }
  }
`);

/**
 * The same for few new tokens (decoding): 256 threads share one query's keys. Keys in chunks of
 * 1,024: scores in workgroup memory, chunk max and sum by workgroup reductions, then 256/hd
 * groups of hd threads accumulate the values of interleaved keys and are added up; chunks
 * combine with the online-softmax correction.
 */
const CACHED_ATTENTION_DECODE = cachedAttentionShader(
  256,
  `
var<workgroup> scores: array<f32, 1024>;
var<workgroup> red: array<f32, 256>;
fn reduce(value: f32, lid: u32, isMax: bool) -> f32 {
  red[lid] = value;
  workgroupBarrier();
  for (var stride = 128u; stride > 0u; stride = stride >> 1u) {
    if (lid < stride) { red[lid] = select(red[lid] + red[lid + stride], max(red[lid], red[lid + stride]), isMax); }
    workgroupBarrier();
  }
  let total = red[0];
  workgroupBarrier();
  return total;
}
`,
  `
  let parts = 256u / hd;
  let d = lid % hd;
  let part = lid / hd;
  var acc = 0.0;
  var runMax = -3.0e38;
  var runSum = 0.0;
  for (var c0 = lo; c0 <= pos; c0 += 1024u) {
    let count = min(1024u, pos + 1u - c0);
    var localMax = -3.0e38;
    for (var j = lid; j < count; j += 256u) {
      let row = kvBase + (c0 + j) * hd;
      var s = 0.0;
      for (var x = 0u; x < hd; x++) { s += qs[x] * cacheK[row + x]; }
      scores[j] = s;
      localMax = max(localMax, s);
    }
    let newMax = max(runMax, reduce(localMax, lid, true));
    var localSum = 0.0;
    for (var j = lid; j < count; j += 256u) {
      let p = exp(scores[j] - newMax);
      scores[j] = p;
      localSum += p;
    }
    let chunkSum = reduce(localSum, lid, false); // its barriers also publish scores[]
    var partial = 0.0;
    if (part < parts) {
      for (var j = part; j < count; j += parts) { partial += scores[j] * cacheV[kvBase + (c0 + j) * hd + d]; }
    }
    red[lid] = partial;
    workgroupBarrier();
    let correction = exp(runMax - newMax);
    if (lid < hd) {
      var chunkAcc = 0.0;
      for (var p = 0u; p < parts; p++) { chunkAcc += red[p * hd + lid]; }
      acc = acc * correction + chunkAcc;
    }
    runSum = runSum * correction + chunkSum;
    runMax = newMax;
    workgroupBarrier();
  }
  if (lid < hd) { out[(b * u.seq + t) * u.heads * hd + h * hd + lid] = acc / runSum; }
`,
);

/** New tokens up to which decoding uses CACHED_ATTENTION_DECODE (a workgroup of 256 per query). */
const DECODE_TOKENS = 8;

function cacheUniforms(c: CacheShape, fields: (keyof CacheShape)[]): Uniform[] {
  return fields.map((f) => ({ type: 'uint32', data: [f === 'window' ? c.window ?? 0 : (c[f] as number)] }));
}

export function kvWriteKernel(args: { inputs: tf.NamedTensorInfoMap; attrs?: tf.NamedAttrMap }): tf.TensorInfo[] {
  const { cacheK, cacheV, k, v, cos, sin, rows } = args.inputs as Record<string, tf.TensorInfo>;
  const c = args.attrs as unknown as CacheShape;
  const count = c.batch * c.seq * c.kvHeads * c.headDim;
  dispatchRaw('ArlKvWrite', KV_WRITE, [cacheK, cacheV, k, v, cos, sin, rows], cacheUniforms(c, ['batch', 'seq', 'kvHeads', 'headDim', 'capacity']), grid(Math.ceil(count / 64)));
  return [];
}

export function cachedAttentionKernel(args: { inputs: tf.NamedTensorInfoMap; attrs?: tf.NamedAttrMap }): tf.TensorInfo {
  const { q, cacheK, cacheV, cos, sin, rows } = args.inputs as Record<string, tf.TensorInfo>;
  const c = args.attrs as unknown as CacheShape;
  if (c.headDim > 256 || c.headDim % 2 !== 0) throw new Error(`ArlCachedAttention: head dimension ${c.headDim} must be even and at most 256`);
  const out = allocate([c.batch * c.seq, c.heads * c.headDim]);
  const uniforms = [...cacheUniforms(c, ['batch', 'seq', 'heads', 'kvHeads', 'headDim', 'capacity', 'window']), { type: 'float32' as const, data: [1 / Math.sqrt(c.headDim)] }];
  const decode = c.seq <= DECODE_TOKENS && 256 % c.headDim === 0;
  dispatchRaw('ArlCachedAttention', decode ? CACHED_ATTENTION_DECODE : CACHED_ATTENTION, [out, q, cacheK, cacheV, cos, sin, rows], uniforms, grid(c.batch * c.heads * c.seq));
  return out;
}
