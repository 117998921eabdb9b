/**
 * The decode graph: one token of KV-cached decoding for each of up to R sequences on the webgpu
 * backend, as one compute pass of prebuilt pipelines and bind groups, recorded with no tfjs op.
 *
 * Why: through tfjs a decoded token was ~115 dispatches, each with the engine's bookkeeping and a
 * new bind group and uniform buffer, plus the read-back of every logit; on the H200 that cost
 * 9-11 ms per token for ~3 ms of GPU work (29.4M model, docs/benchmarks.md). Here everything
 * that does not change between tokens is built once: the pipelines, a bind group per dispatch over
 * the model's weight buffers (taken from the tfjs backend) and the cache, scratch activations, and
 * a uniform array whose only per-step fields are each row's (cache row, position, token id). A
 * step is then one writeBuffer of those, 9 dispatches per layer plus 4, one submit, and a read-back
 * of either the token ids (greedy: argmax on the GPU) or the logits (sampling).
 *
 * Rows: the products are matrix-vector products bound by reading the weights, not by arithmetic,
 * so each weight read serves every row (R accumulators per thread, unrolled); the attention and
 * cache kernels take one workgroup row per sequence. Several sequences decoding at once (the recap
 * agent over many documents) then cost about one sequence's step each.
 *
 * Per layer: fused q/k/v product (one dispatch, three outputs), rotary + cache write, split-K cached
 * attention (flash-decoding: workgroups of 64 keys per head and row, then one combine per head and
 * row), o-proj product, residual add + RMSNorm (ADD_RMS_NORM), fused gate/up product + SwiGLU,
 * down product; the residual add of the MLP is fused into the next layer's (or the final) norm.
 *
 * The K/V cache is a DecodeBatch's preallocated cache (infer/decode-session.ts), one row per
 * sequence: the graph binds its buffers, so the prompts run through tfjs (ArlKvWrite at each
 * sequence's row and position) and the graph's tokens share it. Weights are bound as they are at construction (a graph
 * must not outlive a training step that replaces them: bindsCurrentWeights). Adapters (LIFT) are
 * not supported: decodeGraphSupported says no when one is attached and DecodeSession takes the tfjs path. */
import * as tf from '@tensorflow/tfjs';
import type { LayerCache } from '../attention.ts';
import type { LlamaModel } from '../../model/llama.ts';
import { decodeGraphEnabled } from '../../switches.ts';
import { hasKernel } from '../registry.ts';
import { KV_STORE } from './cached-attention.ts';
import { ADD_RMS_NORM, RMS_NORM } from './rms-norm.ts';
import { computePipeline, grid, type ComputePass, type WebgpuBackend } from './runtime.ts';

// WebGPU's GPUBufferUsage and GPUMapMode flags (fixed by the spec).
const MAP_READ = 0x1;
const COPY_SRC = 0x4;
const COPY_DST = 0x8;
const UNIFORM = 0x40;
const STORAGE = 0x80;

interface GpuBuffer {
  readonly size: number;
  destroy(): void;
  mapAsync(mode: number, offset: number, size: number): Promise<void>;
  getMappedRange(offset: number, size: number): ArrayBuffer;
  unmap(): void;
}
type Pipeline = ReturnType<typeof computePipeline>;
type Backend = Omit<WebgpuBackend, 'device' | 'commandEncoder'> & {
  device: WebgpuBackend['device'] & { createBuffer(d: { size: number; usage: number; label: string }): GpuBuffer };
  queue: { writeBuffer(buffer: GpuBuffer, offset: number, data: ArrayBufferView): void };
  tensorMap: { get(id: tf.DataId): { resource: unknown } | undefined };
  commandEncoder: { beginComputePass(d: unknown): ComputePass & { end(): void }; copyBufferToBuffer(src: GpuBuffer, srcOffset: number, dst: GpuBuffer, dstOffset: number, size: number): void } | null;
};

const backend = (): Backend => tf.backend() as unknown as Backend;

/** GPU buffers created by decode graphs and not yet destroyed (tests check dispose frees them). */
let liveBuffers = 0;
export function decodeGraphBuffers(): number {
  return liveBuffers;
}

/** True when a DecodeSession on `model` can decode through the graph (ARL_DECODE_GRAPH=0 turns it off, for comparisons). */
export function decodeGraphSupported(model: LlamaModel): boolean {
  return hasKernel('ArlCachedAttention') && decodeGraphEnabled() && model.blocks.every((b) => !b.adapter);
}

/** Rows of one step, (cache row, position, token, unused) each, bound as a uniform array of MAX rows. */
const rowsStruct = (rows: number, binding: number): string => `struct Rows { r: array<vec4<u32>, ${rows}> };
@group(0) @binding(${binding}) var<uniform> rows: Rows;`;

/** Output columns per workgroup of the row-major products, and the slices of K they are split into. */
const GEMV_COLS = 32;
const GEMV_SLICES = 8;

/** `line(b)` for each of `rows` rows, unrolled so that per-row accumulators stay in registers. */
const perRow = (rows: number, line: (b: number) => string): string => Array.from({ length: rows }, (_, b) => line(b)).join('\n  ');

/**
 * x [R, K] @ W [K, N] for weights stored row-major [in, out] (ours), 32 output columns x 8 slices of K
 * per workgroup (a warp reads 32 consecutive weights of one row, each used for all R rows of x). With
 * several weights (q, k, v) the columns run over them in turn and each writes its own output; with
 * `swiglu` the two weights are gate and up and the one output is silu(x @ gate) * (x @ up). Rows past
 * the step's count compute garbage that nothing reads: cheaper than a dynamic bound on the unrolled rows.
 */
function gemvShader(rows: number, k: number, widths: number[], swiglu: boolean): string {
  const outputs = swiglu ? 1 : widths.length;
  const lines = [`@group(0) @binding(0) var<storage, read> x: array<f32>;`];
  for (let i = 0; i < outputs; i++) lines.push(`@group(0) @binding(${1 + i}) var<storage, read_write> out${i}: array<f32>;`);
  widths.forEach((_, i) => lines.push(`@group(0) @binding(${1 + outputs + i}) var<storage, read> w${i}: array<f32>;`));
  const loop = (acc: string, w: number, width: number, col: string): string =>
    `for (var i = slice; i < ${k}u; i += ${GEMV_SLICES}u) { let wv = w${w}[i * ${width}u + ${col}];\n  ${perRow(rows, (b) => `${acc}${b} = fma(x[${b * k}u + i], wv, ${acc}${b});`)} }`;
  let body: string;
  let store: (b: number) => string;
  const total = swiglu ? widths[0] : widths.reduce((a, b) => a + b, 0);
  if (swiglu) {
    body = `if (n < ${total}u) { ${loop('a', 0, total, 'n')} ${loop('c', 1, total, 'n')} }`;
    store = (b) => `let g = reduced(col, 0u); let u = reduced(col, 256u); out0[${b * total}u + n] = g / (1.0 + exp(-g)) * u;`;
  } else {
    let start = 0;
    const branches: string[] = [];
    const stores: ((b: number) => string)[] = [];
    widths.forEach((width, i) => {
      const from = start;
      branches.push(`if (n >= ${from}u && n < ${from + width}u) { let c = n - ${from}u; ${loop('a', i, width, 'c')} }`);
      stores.push((b) => `if (n >= ${from}u && n < ${from + width}u) { out${i}[${b * width}u + n - ${from}u] = sum; }`);
      start += width;
    });
    body = branches.join('\n  else ');
    store = (b) => `let sum = reduced(col, 0u);\n    ${stores.map((f) => f(b)).join('\n    ')}`;
  }
  return `${lines.join('\n')}
var<workgroup> red: array<f32, 512>;
fn reduced(col: u32, base: u32) -> f32 {
  var total = 0.0;
  for (var s = 0u; s < ${GEMV_SLICES}u; s++) { total += red[base + s * ${GEMV_COLS}u + col]; }
  return total;
}
@compute @workgroup_size(${GEMV_COLS * GEMV_SLICES}) fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let col = lid % ${GEMV_COLS}u;
  let slice = lid / ${GEMV_COLS}u;
  let n = wid.x * ${GEMV_COLS}u + col;
  ${perRow(rows, (b) => `var a${b} = 0.0;${swiglu ? ` var c${b} = 0.0;` : ''}`)}
  ${body}
  ${perRow(rows, (b) => `red[lid] = a${b};${swiglu ? ` red[256u + lid] = c${b};` : ''}
  workgroupBarrier();
  if (slice == 0u && n < ${total}u) {
    ${store(b)}
  }
  workgroupBarrier();`)}
}`;
}

/** Output rows per workgroup of the transposed product (the tied LM head). */
const GEMV_T_ROWS = 8;

/** x [R, K] @ W^T for W [N, K] row-major (the tied embedding as LM head): 32 lanes per output row. */
function gemvTransposedShader(rows: number, k: number, n: number): string {
  return `
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
var<workgroup> red: array<f32, 256>;
fn laneSum(lid: u32, lane: u32) -> f32 {
  for (var stride = 16u; stride > 0u; stride = stride >> 1u) {
    if (lane < stride) { red[lid] = red[lid] + red[lid + stride]; }
    workgroupBarrier();
  }
  return red[lid];
}
@compute @workgroup_size(256) fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let lane = lid % 32u;
  let n = wid.x * ${GEMV_T_ROWS}u + lid / 32u;
  ${perRow(rows, (b) => `var a${b} = 0.0;`)}
  if (n < ${n}u) { for (var i = lane; i < ${k}u; i += 32u) { let wv = w[n * ${k}u + i];\n  ${perRow(rows, (b) => `a${b} = fma(x[${b * k}u + i], wv, a${b});`)} } }
  ${perRow(rows, (b) => `red[lid] = a${b};
  workgroupBarrier();
  let s${b} = laneSum(lid, lane);
  if (lane == 0u && n < ${n}u) { out[${b * n}u + n] = s${b}; }
  workgroupBarrier();`)}
}`;
}

/** Workgroup row = the step's row (y): the embedding row of its token. */
function gatherShader(rows: number, dim: number): string {
  return `
@group(0) @binding(0) var<storage, read> table: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
${rowsStruct(rows, 2)}
@compute @workgroup_size(256) fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let i = wid.x * 256u + lid;
  if (i < ${dim}u) { out[wid.y * ${dim}u + i] = table[rows.r[wid.y].z * ${dim}u + i]; }
}`;
}

/** Keys per workgroup of the split-K cached attention. */
const ATTENTION_KEYS = 64;

interface AttentionShape {
  rows: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  capacity: number;
  window: number;
  maxSplits: number;
}

/** First visible key of the query at `pos` (the sliding window's start, or 0). */
const windowStart = (window: number): string => `var lo = 0u;\n  if (${window}u > 0u && pos + 1u > ${window}u) { lo = pos + 1u - ${window}u; }`;

/** Workgroup row per step row (y): rotate the row's new key, store key and value at its cache row and position. */
function kvWriteShader(s: AttentionShape): string {
  const hd = s.headDim;
  return `${KV_STORE}
${rowsStruct(s.rows, 6)}
@compute @workgroup_size(64) fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let i = wid.x * 64u + lid;
  if (i >= ${s.kvHeads * hd}u) { return; }
  let b = wid.y;
  let pos = rows.r[b].y;
  let d = i % ${hd}u;
  let kvh = i / ${hd}u;
  storeKv(b * ${s.kvHeads * hd}u + kvh * ${hd}u, ((rows.r[b].x * ${s.kvHeads}u + kvh) * ${s.capacity}u + pos) * ${hd}u + d, d, pos, ${hd}u);
}`;
}

/**
 * Workgroup per (split, head, step row): the rotated, scaled query against keys lo + 64 split .. + 63
 * (up to pos) of the row's cache; writes the split's max score m, sum of exp(score - m), and the
 * exp-weighted sum of values, for ATTENTION_COMBINE. Splits past the row's position do nothing.
 */
function attentionSplitShader(s: AttentionShape): string {
  const hd = s.headDim;
  return `
@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> cacheK: array<f32>;
@group(0) @binding(2) var<storage, read> cacheV: array<f32>;
@group(0) @binding(3) var<storage, read> cosT: array<f32>;
@group(0) @binding(4) var<storage, read> sinT: array<f32>;
@group(0) @binding(5) var<storage, read_write> partials: array<f32>;
${rowsStruct(s.rows, 6)}
var<workgroup> qs: array<f32, ${hd}>;
var<workgroup> p: array<f32, ${ATTENTION_KEYS}>;
@compute @workgroup_size(${ATTENTION_KEYS}) fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let split = wid.x;
  let h = wid.y;
  let b = wid.z;
  let slot = rows.r[b].x;
  let pos = rows.r[b].y;
  ${windowStart(s.window)}
  let first = lo + split * ${ATTENTION_KEYS}u;
  if (first > pos) { return; }
  let half = ${hd / 2}u;
  let qBase = (b * ${s.heads}u + h) * ${hd}u;
  for (var d = lid; d < ${hd}u; d += ${ATTENTION_KEYS}u) {
    let other = select(1.0, -1.0, d < half) * q[qBase + select(d - half, d + half, d < half)];
    qs[d] = (q[qBase + d] * cosT[pos * ${hd}u + d] + other * sinT[pos * ${hd}u + d]) * ${1 / Math.sqrt(hd)};
  }
  workgroupBarrier();
  let kvBase = (slot * ${s.kvHeads}u + h / ${s.heads / s.kvHeads}u) * ${s.capacity * hd}u;
  let count = min(${ATTENTION_KEYS}u, pos + 1u - first);
  var score = -3.0e38;
  if (lid < count) {
    score = 0.0;
    let row = kvBase + (first + lid) * ${hd}u;
    for (var d = 0u; d < ${hd}u; d++) { score = fma(qs[d], cacheK[row + d], score); }
  }
  p[lid] = score;
  workgroupBarrier();
  var m = -3.0e38;
  for (var j = 0u; j < count; j++) { m = max(m, p[j]); }
  workgroupBarrier();
  p[lid] = select(0.0, exp(score - m), lid < count);
  workgroupBarrier();
  let base = ((b * ${s.heads}u + h) * ${s.maxSplits}u + split) * ${hd + 2}u;
  for (var d = lid; d < ${hd}u; d += ${ATTENTION_KEYS}u) {
    var acc = 0.0;
    for (var j = 0u; j < count; j++) { acc = fma(p[j], cacheV[kvBase + (first + j) * ${hd}u + d], acc); }
    partials[base + 2u + d] = acc;
  }
  if (lid == 0u) {
    var l = 0.0;
    for (var j = 0u; j < count; j++) { l += p[j]; }
    partials[base] = m;
    partials[base + 1u] = l;
  }
}`;
}

/** Workgroup per (head, step row): the splits' partial softmaxes combined (online-softmax rescaling) into the head's output. */
function attentionCombineShader(s: AttentionShape): string {
  const hd = s.headDim;
  return `
@group(0) @binding(0) var<storage, read> partials: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
${rowsStruct(s.rows, 2)}
@compute @workgroup_size(64) fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let h = wid.x;
  let b = wid.y;
  let pos = rows.r[b].y;
  ${windowStart(s.window)}
  let splits = (pos + ${ATTENTION_KEYS}u - lo) / ${ATTENTION_KEYS}u;
  let base = (b * ${s.heads}u + h) * ${s.maxSplits}u * ${hd + 2}u;
  var m = -3.0e38;
  for (var s = 0u; s < splits; s++) { m = max(m, partials[base + s * ${hd + 2}u]); }
  var l = 0.0;
  for (var s = 0u; s < splits; s++) { l += partials[base + s * ${hd + 2}u + 1u] * exp(partials[base + s * ${hd + 2}u] - m); }
  for (var d = lid; d < ${hd}u; d += 64u) {
    var acc = 0.0;
    for (var s = 0u; s < splits; s++) { acc += partials[base + s * ${hd + 2}u + 2u + d] * exp(partials[base + s * ${hd + 2}u] - m); }
    out[(b * ${s.heads}u + h) * ${hd}u + d] = acc / l;
  }
}`;
}

/** Workgroup per step row: the index of its largest logit, the first one among equals (as sampling.ts argmax). */
function argmaxShader(vocab: number): string {
  return `
@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> result: array<u32>;
var<workgroup> bestValue: array<f32, 256>;
var<workgroup> bestIndex: array<u32, 256>;
const NONE = 0xffffffffu;
@compute @workgroup_size(256) fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  var value = 0.0;
  var index = NONE;
  for (var i = lid; i < ${vocab}u; i += 256u) {
    let x = logits[wid.x * ${vocab}u + i];
    if (index == NONE || x > value) { value = x; index = i; }
  }
  bestValue[lid] = value;
  bestIndex[lid] = index;
  workgroupBarrier();
  for (var stride = 128u; stride > 0u; stride = stride >> 1u) {
    if (lid < stride) {
      let otherValue = bestValue[lid + stride];
      let otherIndex = bestIndex[lid + stride];
      let mine = bestIndex[lid];
      if (otherIndex != NONE && (mine == NONE || otherValue > bestValue[lid] || (otherValue == bestValue[lid] && otherIndex < mine))) {
        bestValue[lid] = otherValue;
        bestIndex[lid] = otherIndex;
      }
    }
    workgroupBarrier();
  }
  if (lid == 0u) { result[wid.x] = bestIndex[0]; }
}`;
}

interface Dispatch {
  pipeline: Pipeline;
  bindGroup: unknown;
  groups: [number, number, number];
}

/** One row of a batched step: the token decoded into cache row `slot` at position `pos`. */
export interface DecodeRow {
  slot: number;
  pos: number;
  token: number;
}

/**
 * The graph of one group of sequences decoding together: up to `rows` tokens per step, one per
 * sequence, each at its own position in its own row of `cache` (preallocated, [rows, KV, maxSeq, hd]
 * per layer). step() decodes them; dispose() frees every GPU buffer it made.
 */
export class DecodeGraph {
  private readonly buffers: GpuBuffer[] = [];
  private readonly rowUniforms: GpuBuffer;
  private readonly staging: GpuBuffer;
  private readonly logits: GpuBuffer;
  private readonly tokens: GpuBuffer;
  /** In recording order; each dispatch's workgroups along the step's rows are set per step. */
  private readonly dispatches: { dispatch: Dispatch; perRow: 'y' | 'z' | 'x' | null; attention?: true }[] = [];
  private readonly argmax: Dispatch;
  private readonly shape: AttentionShape;
  private disposed = false;
  /** The weights' buffers as bound, in model.variables() order. */
  private readonly weightBuffers: GpuBuffer[];

  constructor(private readonly model: LlamaModel, readonly rows: number, cache: readonly LayerCache[]) {
    const c = model.config;
    const { dim, heads, kvHeads, headDim, hiddenDim, vocabSize, maxSeq } = c;
    if (cache.length !== model.blocks.length || cache.some((l) => l.capacity !== maxSeq || l.k.shape[0] !== rows)) {
      throw new Error(`the decode graph needs a preallocated webgpu cache of ${rows} rows (DecodeBatch)`);
    }
    const window = c.attentionWindow ?? 0;
    this.shape = { rows, heads, kvHeads, headDim, capacity: maxSeq, window, maxSplits: Math.ceil(Math.min(maxSeq, window || maxSeq) / ATTENTION_KEYS) };
    const scratch = (floats: number, label: string): GpuBuffer => this.buffer(4 * rows * floats, STORAGE | COPY_SRC, label);
    this.rowUniforms = this.buffer(16 * rows, UNIFORM | COPY_DST, 'rows');
    const normUniforms = this.buffer(16, UNIFORM | COPY_DST, 'norm uniforms');
    const normFields = new ArrayBuffer(16);
    new Uint32Array(normFields, 0, 2).set([rows, dim]);
    new Float32Array(normFields, 8, 1)[0] = c.normEps;
    backend().queue.writeBuffer(normUniforms, 0, new Uint8Array(normFields));
    const [xA, xB, h] = ['residual A', 'residual B', 'normed'].map((label) => scratch(dim, label));
    const inverseNorm = scratch(1, 'inverse norm');
    const q = scratch(heads * headDim, 'q');
    const k = scratch(kvHeads * headDim, 'k');
    const v = scratch(kvHeads * headDim, 'v');
    const partials = scratch(heads * this.shape.maxSplits * (headDim + 2), 'attention partials');
    const attention = scratch(heads * headDim, 'attention');
    const projected = scratch(dim, 'projection');
    const activation = scratch(hiddenDim, 'swiglu');
    this.logits = scratch(vocabSize, 'logits');
    this.tokens = scratch(1, 'tokens');
    this.staging = this.buffer(4 * rows * vocabSize, MAP_READ | COPY_DST, 'read-back');

    this.weightBuffers = model.variables().map(bufferOf);
    const weight = (w: tf.LayerVariable): GpuBuffer => bufferOf(w.read());
    const add = (dispatch: Dispatch, perRow: 'x' | 'y' | 'z' | null, attention?: true): void => {
      this.dispatches.push({ dispatch, perRow, ...(attention ? { attention } : {}) });
    };
    const gemv = (name: string, x: GpuBuffer, outs: GpuBuffer[], weights: GpuBuffer[], k: number, widths: number[], swiglu = false): void => {
      const columns = swiglu ? widths[0] : widths.reduce((a, b) => a + b, 0);
      add(makeDispatch(name, gemvShader(rows, k, widths, swiglu), [x, ...outs, ...weights], grid1(Math.ceil(columns / GEMV_COLS))), null);
    };
    const addNorm = (s: GpuBuffer, x: GpuBuffer, r: GpuBuffer, w: tf.LayerVariable): void => add(makeDispatch('ArlDecodeAddRmsNorm', ADD_RMS_NORM, [s, h, x, r, weight(w), normUniforms], [1, 1, 1]), 'x');
    const rope = [bufferOf(model.cos), bufferOf(model.sin)];

    const embedding = weight(model.embedding.weight);
    add(makeDispatch('ArlDecodeGather', gatherShader(rows, dim), [embedding, xA, this.rowUniforms], [Math.ceil(dim / 256), 1, 1]), 'y');
    add(makeDispatch('ArlDecodeRmsNorm', RMS_NORM, [h, inverseNorm, xA, weight(model.blocks[0].attnNorm.weight), normUniforms], [1, 1, 1]), 'x');
    const qkvWidths = [heads * headDim, kvHeads * headDim, kvHeads * headDim];
    for (const [i, b] of model.blocks.entries()) {
      const nextNorm = i + 1 < model.blocks.length ? model.blocks[i + 1].attnNorm.weight : model.finalNorm.weight;
      const [cacheK, cacheV] = [bufferOf(cache[i].k), bufferOf(cache[i].v)];
      gemv('ArlDecodeQkv', h, [q, k, v], [weight(b.wq), weight(b.wk), weight(b.wv)], dim, qkvWidths);
      add(makeDispatch('ArlDecodeKvWrite', kvWriteShader(this.shape), [cacheK, cacheV, k, v, ...rope, this.rowUniforms], [Math.ceil((kvHeads * headDim) / 64), 1, 1]), 'y');
      add(makeDispatch('ArlDecodeAttention', attentionSplitShader(this.shape), [q, cacheK, cacheV, ...rope, partials, this.rowUniforms], [this.shape.maxSplits, heads, 1]), 'z', true);
      add(makeDispatch('ArlDecodeAttentionCombine', attentionCombineShader(this.shape), [partials, attention, this.rowUniforms], [heads, 1, 1]), 'y');
      gemv('ArlDecodeOProj', attention, [projected], [weight(b.wo)], heads * headDim, [dim]);
      addNorm(xB, xA, projected, b.mlpNorm.weight);
      gemv('ArlDecodeGateUp', h, [activation], [weight(b.wGate), weight(b.wUp)], dim, [hiddenDim, hiddenDim], true);
      gemv('ArlDecodeDown', activation, [projected], [weight(b.wDown)], hiddenDim, [dim]);
      addNorm(xA, xB, projected, nextNorm);
    }
    if (model.lmHead) gemv('ArlDecodeLmHead', h, [this.logits], [weight(model.lmHead.weight)], dim, [vocabSize]);
    else add(makeDispatch('ArlDecodeTiedLmHead', gemvTransposedShader(rows, dim, vocabSize), [h, this.logits, embedding], grid1(Math.ceil(vocabSize / GEMV_T_ROWS))), null);
    this.argmax = makeDispatch('ArlDecodeArgmax', argmaxShader(vocabSize), [this.logits, this.tokens], [1, 1, 1]);
  }

  private buffer(size: number, usage: number, label: string): GpuBuffer {
    const buffer = backend().device.createBuffer({ size: Math.max(4, size), usage, label: `decode graph ${label}` });
    this.buffers.push(buffer);
    liveBuffers++;
    return buffer;
  }

  /**
   * Decodes one token per row (each row its own cache row and position; the caller advances the
   * positions) and returns, per row, the next token's logits, or with `greedy` only the index of the largest.
   */
  async step(rows: readonly DecodeRow[], greedy: true): Promise<number[]>;
  async step(rows: readonly DecodeRow[], greedy: false): Promise<Float32Array[]>;
  async step(rows: readonly DecodeRow[], greedy: boolean): Promise<number[] | Float32Array[]> {
    if (this.disposed) throw new Error('decode graph used after dispose');
    const { maxSeq, vocabSize } = this.model.config;
    const count = rows.length;
    if (count < 1 || count > this.rows) throw new Error(`a decode step takes 1 to ${this.rows} rows, got ${count}`);
    const fields = new Uint32Array(4 * count);
    let splits = 1;
    for (const [r, { slot, pos, token }] of rows.entries()) {
      if (pos >= maxSeq) throw new Error(`sequence of ${pos + 1} tokens exceeds the model's maxSeq ${maxSeq}`);
      if (slot < 0 || slot >= this.rows) throw new Error(`cache row ${slot} is not one of the graph's ${this.rows}`);
      fields.set([slot, pos, token, 0], 4 * r);
      const lo = this.shape.window > 0 && pos + 1 > this.shape.window ? pos + 1 - this.shape.window : 0;
      splits = Math.max(splits, Math.ceil((pos + 1 - lo) / ATTENTION_KEYS));
    }
    const b = backend();
    b.queue.writeBuffer(this.rowUniforms, 0, fields);
    // Into tfjs's command encoder, after whatever it has recorded (a prefill), then submitted.
    b.ensureCommandEncoderReady();
    b.endComputePassEncoder();
    const encoder = b.commandEncoder!;
    const pass = encoder.beginComputePass({});
    const record = ({ pipeline, bindGroup, groups }: Dispatch): void => {
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(groups[0], groups[1], groups[2]);
    };
    for (const { dispatch, perRow, attention } of this.dispatches) {
      const groups: [number, number, number] = [...dispatch.groups];
      if (attention) groups[0] = splits;
      if (perRow) groups['xyz'.indexOf(perRow)] = count;
      record({ ...dispatch, groups });
    }
    if (greedy) record({ ...this.argmax, groups: [count, 1, 1] });
    pass.end();
    const bytes = 4 * count * (greedy ? 1 : vocabSize);
    encoder.copyBufferToBuffer(greedy ? this.tokens : this.logits, 0, this.staging, 0, bytes);
    b.submitQueue();
    await this.staging.mapAsync(MAP_READ, 0, bytes);
    const range = this.staging.getMappedRange(0, bytes);
    const result = greedy ? [...new Uint32Array(range)] : rows.map((_, r) => new Float32Array(range.slice(4 * r * vocabSize, 4 * (r + 1) * vocabSize)));
    this.staging.unmap();
    return result;
  }

  /**
   * False once a weight has been given a new buffer (assigned, not updated in place: AdamW's
   * in-place updates are seen as they are): the graph would read a released buffer.
   */
  bindsCurrentWeights(): boolean {
    return this.model.variables().every((v, i) => bufferOf(v) === this.weightBuffers[i]);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const buffer of this.buffers.splice(0)) {
      buffer.destroy();
      liveBuffers--;
    }
  }
}

/** A dispatch of `code` with `buffers` bound at @binding(0..n-1) in order. */
function makeDispatch(name: string, code: string, buffers: GpuBuffer[], groups: [number, number, number]): Dispatch {
  const pipeline = computePipeline(name, code);
  const entries = buffers.map((buffer, binding) => ({ binding, resource: { buffer } }));
  return { pipeline, bindGroup: backend().device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries }), groups };
}

/** 1-D dispatch size; the graph's dispatches stay within one grid dimension. */
function grid1(count: number): [number, number, number] {
  const g = grid(count);
  if (g[1] !== 1) throw new Error(`decode graph: ${count} workgroups exceed one dispatch dimension`);
  return g;
}

/** The GPU buffer holding tensor `t` on the webgpu backend (uploaded first if still on the CPU). */
function bufferOf(t: tf.Tensor): GpuBuffer {
  const b = backend();
  b.uploadToGPU(t.dataId);
  return b.tensorMap.get(t.dataId)!.resource as GpuBuffer;
}
