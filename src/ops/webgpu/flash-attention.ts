/**
 * Flash-style causal self-attention for training on the webgpu backend (FlashAttention-2's
 * schedule): forward and backward never materialise the [T, T] scores.
 *
 * Input is the fused projection qkv [B*T, (H + 2 KV)*hd] (queries, keys, values, head-major) and
 * the rotary tables [T, hd] (HF rotate-half layout); rotary is applied on load, so no layout
 * transposes or rotary dispatches are needed either side. Output [B*T, H*hd] (heads merged).
 *
 * - Forward (1 dispatch): a workgroup of ROWS invocations takes ROWS query rows of one (batch,
 *   head), one row per invocation with q and the output accumulator in vec4 registers; tiles of
 *   KEY_TILE keys and values of the matching KV head (GQA: head h reads kv head h / (H/KV)) are
 *   staged in workgroup memory; online softmax; key tiles above the diagonal or outside the
 *   sliding window are never visited. Also writes the row's logsumexp [B, H, T] for the backward.
 * - Backward (2 dispatches; WGSL has no float atomics): dQ per query block (recomputing P from
 *   the logsumexp, and D = rowsum(dO * O), which it also stores), then dK and dV per key block
 *   looping over the query tiles of every query head of the KV head. Both apply rotary's
 *   transpose and write straight into dqkv in the input layout.
 *
 * Checked against the tfjs formulation (causalSelfAttention's materialised path), values and
 * gradients, in test/webgpu-flash-attention.test.ts.
 */
import * as tf from '@tensorflow/tfjs';
import type { FlashAttentionSpec } from '../attention.ts';
import { allocate, dispatchRaw, grid, release, shaderText, type Uniform } from './runtime.ts';

/** Rows (queries, or keys in the dK/dV kernel) per workgroup, one per invocation. */
const ROWS = 64;
/** Keys per workgroup-memory tile in the forward and dQ kernels. */
const KEY_TILE = 16;

/**
 * Head dimensions the kernels take: whole vec4 halves (rotate-half pairs group c with c +- hd/8),
 * at most 128 (q and the accumulators live in registers). On software adapters at most 16:
 * lavapipe's LLVM compile time grows steeply with the registers (uncached, on a loaded 2-core
 * machine: hd 16 ~50 s for the three kernels, hd 32 minutes, hd 64 ~6 minutes unloaded).
 */
export function flashAttentionSupports(headDim: number): boolean {
  const adapter = (tf.backend() as unknown as { adapterInfo?: { architecture?: string } }).adapterInfo;
  return headDim % 8 === 0 && headDim <= (adapter?.architecture === 'software' ? 16 : 128);
}

/** Query rows per tile of the dK/dV kernel: q and dO tiles within WebGPU's default 16 KB of workgroup memory. */
const queryTile = (headDim: number): number => (headDim > 64 ? 8 : 16);

/** `f(c)` for every vec4 group c of a head, joined. */
function each(vecs: number, f: (c: number) => string, sep = '\n  '): string {
  return Array.from({ length: vecs }, (_, c) => f(c)).join(sep);
}

/** Declarations shared by the three kernels, for head dimension 4 * vecs. */
function common(vecs: number): string {
  return `
const V = ${vecs}u;
const HALF = ${vecs / 2}u;
const ROWS = ${ROWS}u;
struct U { batch: u32, seq: u32, heads: u32, kvHeads: u32, window: u32, scale: f32 };
/** First vec4 of head slot \`slot\` (queries 0..H-1, keys H.., values H+KV..) of token t in qkv. */
fn slotRow(b: u32, t: u32, slot: u32) -> u32 { return ((b * u.seq + t) * (u.heads + 2u * u.kvHeads) + slot) * V; }
/** First vec4 of head h of token t in the merged-heads layout [B*T, H*hd]. */
fn headRow(b: u32, t: u32, h: u32) -> u32 { return ((b * u.seq + t) * u.heads + h) * V; }
fn visible(query: u32, key: u32) -> bool { return key <= query && (u.window == 0u || query - key < u.window); }
/** Group c of rotary(x) for the row of qkv at base, position t: x cos + rotate_half(x) sin. */
fn rotated(base: u32, t: u32, c: u32) -> vec4<f32> {
  let partner = select(c - HALF, c + HALF, c < HALF);
  let sign = select(1.0, -1.0, c < HALF);
  return qkv[base + c] * cosT[t * V + c] + sign * qkv[base + partner] * sinT[t * V + c];
}`;
}

/** Key tile loads (rotated keys, values) shared by the forward and dQ kernels. */
const LOAD_KEY_TILE = `
var<workgroup> kTile: array<vec4<f32>, ${KEY_TILE} * V>;
var<workgroup> vTile: array<vec4<f32>, ${KEY_TILE} * V>;
fn loadKeyTile(b: u32, kvh: u32, k0: u32, lid: u32) {
  for (var e = lid; e < ${KEY_TILE}u * V; e += ROWS) {
    let key = min(k0 + e / V, u.seq - 1u);
    let c = e % V;
    kTile[e] = rotated(slotRow(b, key, u.heads + kvh), key, c);
    vTile[e] = qkv[slotRow(b, key, u.heads + u.kvHeads + kvh) + c];
  }
}
/** The first key tile a query block starting at \`first\` needs (sliding window), tile-aligned. */
fn firstKeyTile(first: u32) -> u32 {
  if (u.window > 0u && first + 1u > u.window) { return (first + 1u - u.window) / ${KEY_TILE}u * ${KEY_TILE}u; }
  return 0u;
}`;

/** Rotary's transpose on the vec4 registers `${name}c`: dx = dy cos + rotate_half^T(dy sin). */
function rotaryBackward(vecs: number, name: string, t: string): (c: number) => string {
  const half = vecs / 2;
  return (c) => (c < half ? `${name}${c} * cosT[${t} * V + ${c}u] + ${name}${c + half} * sinT[${t} * V + ${c + half}u]` : `${name}${c} * cosT[${t} * V + ${c}u] - ${name}${c - half} * sinT[${t} * V + ${c - half}u]`);
}

/** Workgroup -> (batch, head, block) and this invocation's row, clamped (rows past T compute but never store). */
const BLOCK_INDEX = (headCount: string, row = 'lid'): string => `
  let blocks = (u.seq + ROWS - 1u) / ROWS;
  let item = wid.x + wid.y * nwg.x;
  if (item >= u.batch * ${headCount} * blocks) { return; }
  let first = (item % blocks) * ROWS;
  let head = (item / blocks) % ${headCount};
  let b = item / (blocks * ${headCount});
  let t = min(first + ${row}, u.seq - 1u);
  let stores = first + ${row} < u.seq;
  let last = min(first + ROWS, u.seq) - 1u;`;

const ENTRY = (size = ROWS): string => `@compute @workgroup_size(${size}) fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>)`;

/**
 * A kernel over blocks of ROWS query rows of one (batch, head) (the forward and dQ): bindings
 * `outputs`, then qkv, cosT, sinT, then `inputs`, then the uniforms; the key-tile loader; and in
 * main, the block's indices and this row's rotated, scaled query in registers q0.., then `body`.
 */
function queryBlockShader(vecs: number, outputs: string[], inputs: string[], body: string): string {
  const bindings = [...outputs, 'var<storage, read> qkv: array<vec4<f32>>', 'var<storage, read> cosT: array<vec4<f32>>', 'var<storage, read> sinT: array<vec4<f32>>', ...inputs];
  return `
${bindings.map((b, i) => `@group(0) @binding(${i}) ${b};`).join('\n')}
@group(0) @binding(${bindings.length}) var<uniform> u: U;
${common(vecs)}
${LOAD_KEY_TILE}
${ENTRY()} {
  ${BLOCK_INDEX('u.heads')}
  let kvh = head / (u.heads / u.kvHeads);
  let qBase = slotRow(b, t, head);
  ${each(vecs, (c) => `let q${c} = rotated(qBase, t, ${c}u) * u.scale;`)}
${body}
}`;
}

function forwardShader(vecs: number): string {
  const keys = Array.from({ length: KEY_TILE }, (_, j) => j);
  const dotQ = (j: number): string => each(vecs, (c) => `dot(q${c}, kTile[${j * vecs + c}u])`, ' + ');
  return queryBlockShader(vecs, ['var<storage, read_write> out: array<vec4<f32>>', 'var<storage, read_write> lse: array<f32>'], [], `
  ${each(vecs, (c) => `var a${c} = vec4<f32>(0.0);`)}
  var m = -3.0e38;
  var l = 0.0;
  for (var k0 = firstKeyTile(first); k0 <= last; k0 += ${KEY_TILE}u) {
    loadKeyTile(b, kvh, k0, lid);
    workgroupBarrier();
    // Masked scores are -3e38: they never raise the maximum and their p is zeroed below.
    ${keys.map((j) => `let s${j} = select(-3.0e38, ${dotQ(j)}, visible(t, k0 + ${j}u));`).join('\n    ')}
    let mNew = max(m, ${keys.slice(1).reduce((acc, j) => `max(${acc}, s${j})`, 's0')});
    let correction = exp(m - mNew);
    ${keys.map((j) => `let p${j} = select(0.0, exp(s${j} - mNew), s${j} > -1.0e38);`).join('\n    ')}
    l = l * correction + ${keys.map((j) => `p${j}`).join(' + ')};
    ${each(vecs, (c) => `a${c} = a${c} * correction + ${keys.map((j) => `p${j} * vTile[${j * vecs + c}u]`).join(' + ')};`, '\n    ')}
    m = mNew;
    workgroupBarrier();
  }
  if (stores) {
    let inv = 1.0 / l;
    let o = headRow(b, t, head);
    ${each(vecs, (c) => `out[o + ${c}u] = a${c} * inv;`, '\n    ')}
    lse[(b * u.heads + head) * u.seq + t] = m + log(l);
  }`);
}

/** dQ per query block; also D = rowsum(dO * O), stored for the dK/dV kernel. */
function gradQueryShader(vecs: number): string {
  return queryBlockShader(
    vecs,
    ['var<storage, read_write> dqkv: array<vec4<f32>>', 'var<storage, read_write> dsum: array<f32>'],
    ['var<storage, read> out: array<vec4<f32>>', 'var<storage, read> dOut: array<vec4<f32>>', 'var<storage, read> lse: array<f32>'],
    `
  let o = headRow(b, t, head);
  ${each(vecs, (c) => `let do${c} = dOut[o + ${c}u];`)}
  let d = ${each(vecs, (c) => `dot(do${c}, out[o + ${c}u])`, ' + ')};
  let row = (b * u.heads + head) * u.seq + t;
  let rowLse = lse[row];
  ${each(vecs, (c) => `var g${c} = vec4<f32>(0.0);`)}
  for (var k0 = firstKeyTile(first); k0 <= last; k0 += ${KEY_TILE}u) {
    loadKeyTile(b, kvh, k0, lid);
    workgroupBarrier();
    for (var j = 0u; j < ${KEY_TILE}u; j++) {
      let kb = j * V;
      let p = select(0.0, exp(${each(vecs, (c) => `dot(q${c}, kTile[kb + ${c}u])`, ' + ')} - rowLse), visible(t, k0 + j));
      let ds = p * (${each(vecs, (c) => `dot(do${c}, vTile[kb + ${c}u])`, ' + ')} - d);
      ${each(vecs, (c) => `g${c} += ds * kTile[kb + ${c}u];`, '\n      ')}
    }
    workgroupBarrier();
  }
  if (stores) {
    dsum[row] = d;
    ${each(vecs, (c) => `let dq${c} = g${c} * u.scale;`, '\n    ')}
    ${each(vecs, (c) => `dqkv[qBase + ${c}u] = ${rotaryBackward(vecs, 'dq', 't')(c)};`, '\n    ')}
  }`,
  );
}

/**
 * dK and dV per key block of one KV head, summing over its query heads and their query tiles.
 * Two invocations per key: the first 64 accumulate dV = sum p dO, the next 64 dK = sum ds q (whole
 * warps per role, so the role branches do not diverge), which keeps k, v and one accumulator in
 * registers (3 hd floats) instead of k, v, dK and dV (4 hd: spills at hd 64).
 */
function gradKeyValueShader(vecs: number): string {
  const tile = queryTile(vecs * 4);
  return `
@group(0) @binding(0) var<storage, read_write> dqkv: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> qkv: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> cosT: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> sinT: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> dOut: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> lse: array<f32>;
@group(0) @binding(6) var<storage, read> dsum: array<f32>;
@group(0) @binding(7) var<uniform> u: U;
${common(vecs)}
const TILE = ${tile}u;
/** Rotated queries of the tile at [0, TILE*V), their output gradients at [TILE*V, 2*TILE*V). */
var<workgroup> qdo: array<vec4<f32>, 2u * TILE * V>;
var<workgroup> lseTile: array<f32, TILE>;
var<workgroup> dTile: array<f32, TILE>;
${ENTRY(2 * ROWS)} {
  let role = lid / ROWS; // 0: dV, 1: dK
  ${BLOCK_INDEX('u.kvHeads', 'lid % ROWS')}
  let kBase = slotRow(b, t, u.heads + head);
  let vBase = slotRow(b, t, u.heads + u.kvHeads + head);
  ${each(vecs, (c) => `let k${c} = rotated(kBase, t, ${c}u);`)}
  ${each(vecs, (c) => `let v${c} = qkv[vBase + ${c}u];`)}
  ${each(vecs, (c) => `var acc${c} = vec4<f32>(0.0);`)}
  let source = (1u - role) * TILE * V;
  let groups = u.heads / u.kvHeads;
  // Queries that see this block's keys: from its first key to its last key's window end.
  var queryEnd = u.seq - 1u;
  if (u.window > 0u) { queryEnd = min(queryEnd, last + u.window - 1u); }
  for (var h = head * groups; h < (head + 1u) * groups; h++) {
    for (var q0 = first / TILE * TILE; q0 <= queryEnd; q0 += TILE) {
      for (var e = lid; e < TILE * V; e += ${2 * ROWS}u) {
        let query = min(q0 + e / V, u.seq - 1u);
        let c = e % V;
        qdo[e] = rotated(slotRow(b, query, h), query, c);
        qdo[TILE * V + e] = dOut[headRow(b, query, h) + c];
      }
      if (lid < TILE) {
        let row = (b * u.heads + h) * u.seq + min(q0 + lid, u.seq - 1u);
        lseTile[lid] = lse[row];
        dTile[lid] = dsum[row];
      }
      workgroupBarrier();
      for (var i = 0u; i < TILE; i++) {
        let qb = i * V;
        let query = q0 + i;
        let s = (${each(vecs, (c) => `dot(k${c}, qdo[qb + ${c}u])`, ' + ')}) * u.scale;
        var w = select(0.0, exp(s - lseTile[i]), query < u.seq && visible(query, t)); // p
        if (role == 1u) { w = w * (${each(vecs, (c) => `dot(v${c}, qdo[TILE * V + qb + ${c}u])`, ' + ')} - dTile[i]); } // ds
        ${each(vecs, (c) => `acc${c} += w * qdo[source + qb + ${c}u];`, '\n        ')}
      }
      workgroupBarrier();
    }
  }
  if (stores && role == 0u) {
    ${each(vecs, (c) => `dqkv[vBase + ${c}u] = acc${c};`, '\n    ')}
  }
  if (stores && role == 1u) {
    ${each(vecs, (c) => `let dkScaled${c} = acc${c} * u.scale;`, '\n    ')}
    ${each(vecs, (c) => `dqkv[kBase + ${c}u] = ${rotaryBackward(vecs, 'dkScaled', 't')(c)};`, '\n    ')}
  }
}`;
}

function uniforms(s: FlashAttentionSpec): Uniform[] {
  return [
    ...[s.batch, s.seq, s.heads, s.kvHeads, s.window ?? 0].map((v): Uniform => ({ type: 'uint32', data: [v] })),
    { type: 'float32', data: [1 / Math.sqrt(s.headDim)] },
  ];
}

const blocks = (s: FlashAttentionSpec, heads: number): [number, number, number] => grid(s.batch * heads * Math.ceil(s.seq / ROWS));

/** ArlFlashAttention: {qkv, cos, sin} -> [out [B*T, H*hd], logsumexp [B*H*T]]. */
export function flashAttentionKernel(args: { inputs: tf.NamedTensorInfoMap; attrs?: tf.NamedAttrMap }): tf.TensorInfo[] {
  const { qkv, cos, sin } = args.inputs as Record<string, tf.TensorInfo>;
  const s = args.attrs as unknown as FlashAttentionSpec;
  const out = allocate([s.batch * s.seq, s.heads * s.headDim]);
  const lse = allocate([s.batch * s.heads * s.seq]);
  dispatchRaw('ArlFlashAttention', shaderText(`flash ${s.headDim}`, () => forwardShader(s.headDim / 4)), [out, lse, qkv, cos, sin], uniforms(s), blocks(s, s.heads));
  return [out, lse];
}

/** ArlFlashAttentionGrad: {qkv, cos, sin, out, lse, dy} -> dqkv [B*T, (H + 2 KV)*hd]. */
export function flashAttentionGradKernel(args: { inputs: tf.NamedTensorInfoMap; attrs?: tf.NamedAttrMap }): tf.TensorInfo {
  const { qkv, cos, sin, out, lse, dy } = args.inputs as Record<string, tf.TensorInfo>;
  const s = args.attrs as unknown as FlashAttentionSpec;
  const dqkv = allocate(qkv.shape);
  const dsum = allocate([s.batch * s.heads * s.seq]);
  const vecs = s.headDim / 4;
  dispatchRaw('ArlFlashAttentionGradQ', shaderText(`flash grad q ${vecs}`, () => gradQueryShader(vecs)), [dqkv, dsum, qkv, cos, sin, out, dy, lse], uniforms(s), blocks(s, s.heads));
  dispatchRaw('ArlFlashAttentionGradKV', shaderText(`flash grad kv ${vecs}`, () => gradKeyValueShader(vecs)), [dqkv, qkv, cos, sin, dy, lse, dsum], uniforms(s), blocks(s, s.kvHeads));
  release(dsum);
  return dqkv;
}
