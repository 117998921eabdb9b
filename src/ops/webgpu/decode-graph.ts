/**
 * The decode graph: one token of KV-cached decoding on the webgpu backend as one compute pass of
 * prebuilt pipelines and bind groups, recorded with no tfjs op at all.
 *
 * Why: through tfjs a decoded token was ~115 dispatches, each with the engine's bookkeeping and a
 * new bind group and uniform buffer, plus the read-back of every logit; on the H200 that cost
 * 9-11 ms per token for ~3 ms of GPU work (29.4M model, docs/benchmarks.md). Here everything
 * that does not change between tokens is built once per decode session: the pipelines, a bind
 * group per dispatch over the model's weight buffers (taken from the tfjs backend), scratch
 * activations, and a uniform buffer whose only per-token fields are (position, token id). A token
 * is then one writeBuffer of those two numbers, 9 dispatches per layer plus 4, one submit, and a
 * read-back of either the token id (greedy: argmax on the GPU) or the logits (sampling).
 *
 * Per layer: fused q/k/v product (one dispatch, three outputs), rotary + cache write (KV_WRITE),
 * split-K cached attention (flash-decoding: workgroups of 64 keys per head, then one combine per
 * head), o-proj product, residual add + RMSNorm (ADD_RMS_NORM), fused gate/up product + SwiGLU,
 * down product; the residual add of the MLP is fused into the next layer's (or the final) norm.
 *
 * The K/V cache is the session's own preallocated cache (llama.ts emptyCache on webgpu): the
 * graph binds its tensors' buffers, so the prompt's prefill through tfjs and the graph's tokens
 * share it. Weights are bound as they are at session start (a session must not outlive a
 * training step that replaces them). Adapters (LIFT) are not supported: decodeGraphSupported
 * says no when one is attached and DecodeSession takes the tfjs path.
 */
import * as tf from '@tensorflow/tfjs';
import type { KVCache, LlamaModel } from '../../model/llama.ts';
import { decodeGraphEnabled } from '../../switches.ts';
import { hasKernel } from '../registry.ts';
import { KV_WRITE } from './cached-attention.ts';
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

/**
 * The per-token uniforms, laid out as KV_WRITE's (batch, seq, kvHeads, headDim, capacity, start)
 * so that kernel is bound as it is, plus the token id; only start and token change per token.
 */
const STEP = `struct Step { batch: u32, seq: u32, kvHeads: u32, headDim: u32, capacity: u32, pos: u32, token: u32 };`;
const STEP_POS_OFFSET = 20;

/** Output columns per workgroup of the row-major products, and the slices of K they are split into. */
const GEMV_COLS = 32;
const GEMV_SLICES = 8;

/**
 * x [K] @ W [K, N] for weights stored row-major [in, out] (ours), 32 output columns x 8 slices of K
 * per workgroup (a warp reads 32 consecutive weights of one row). With several weights (q, k, v)
 * the columns run over them in turn and each writes its own output; with `swiglu` the two weights
 * are gate and up and the one output is silu(x @ gate) * (x @ up).
 */
function gemvShader(k: number, widths: number[], swiglu: boolean): string {
  const outputs = swiglu ? 1 : widths.length;
  const lines = [`@group(0) @binding(0) var<storage, read> x: array<f32>;`];
  for (let i = 0; i < outputs; i++) lines.push(`@group(0) @binding(${1 + i}) var<storage, read_write> out${i}: array<f32>;`);
  widths.forEach((_, i) => lines.push(`@group(0) @binding(${1 + outputs + i}) var<storage, read> w${i}: array<f32>;`));
  const loop = (acc: string, w: number, width: number, col: string): string => `for (var i = slice; i < ${k}u; i += ${GEMV_SLICES}u) { ${acc} = fma(x[i], w${w}[i * ${width}u + ${col}], ${acc}); }`;
  let body: string;
  let store: string;
  const total = swiglu ? widths[0] : widths.reduce((a, b) => a + b, 0);
  if (swiglu) {
    body = `if (n < ${total}u) { ${loop('acc', 0, total, 'n')} ${loop('acc2', 1, total, 'n')} }`;
    store = `let g = reduced(col, 0u); let u = reduced(col, 256u); out0[n] = g / (1.0 + exp(-g)) * u;`;
  } else {
    let start = 0;
    const branches: string[] = [];
    const stores: string[] = [];
    widths.forEach((width, i) => {
      branches.push(`if (n >= ${start}u && n < ${start + width}u) { let c = n - ${start}u; ${loop('acc', i, width, 'c')} }`);
      stores.push(`if (n >= ${start}u && n < ${start + width}u) { out${i}[n - ${start}u] = total; }`);
      start += width;
    });
    body = branches.join('\n  else ');
    store = `let total = reduced(col, 0u);\n    ${stores.join('\n    ')}`;
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
  var acc = 0.0;
  var acc2 = 0.0;
  ${body}
  red[lid] = acc;
  red[256u + lid] = acc2;
  workgroupBarrier();
  if (slice == 0u && n < ${total}u) {
    ${store}
  }
}`;
}

/** Output rows per workgroup of the transposed product (the tied LM head). */
const GEMV_T_ROWS = 8;

/** x [K] @ W^T for W [N, K] row-major (the tied embedding as LM head): 32 lanes per output row. */
function gemvTransposedShader(k: number, n: number): string {
  return `
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
var<workgroup> red: array<f32, 256>;
@compute @workgroup_size(256) fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let lane = lid % 32u;
  let n = wid.x * ${GEMV_T_ROWS}u + lid / 32u;
  var acc = 0.0;
  if (n < ${n}u) { for (var i = lane; i < ${k}u; i += 32u) { acc = fma(x[i], w[n * ${k}u + i], acc); } }
  red[lid] = acc;
  workgroupBarrier();
  for (var stride = 16u; stride > 0u; stride = stride >> 1u) {
    if (lane < stride) { red[lid] = red[lid] + red[lid + stride]; }
    workgroupBarrier();
  }
  if (lane == 0u && n < ${n}u) { out[n] = red[lid]; }
}`;
}

/** The embedding row of the step's token. */
function gatherShader(dim: number): string {
  return `
@group(0) @binding(0) var<storage, read> table: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
${STEP}
@group(0) @binding(2) var<uniform> step: Step;
@compute @workgroup_size(256) fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  if (gid.x < ${dim}u) { out[gid.x] = table[step.token * ${dim}u + gid.x]; }
}`;
}

/** Keys per workgroup of the split-K cached attention. */
const ATTENTION_KEYS = 64;

interface AttentionShape {
  heads: number;
  kvHeads: number;
  headDim: number;
  capacity: number;
  window: number;
  maxSplits: number;
}

/** First visible key of the query at step.pos (the sliding window's start, or 0). */
const windowStart = (window: number): string => `var lo = 0u;\n  if (${window}u > 0u && pos + 1u > ${window}u) { lo = pos + 1u - ${window}u; }`;

/**
 * Workgroup per (split, head): the rotated, scaled query against keys lo + 64 split .. + 63 (up
 * to pos); writes the split's max score m, sum of exp(score - m), and the exp-weighted sum of
 * values, for ATTENTION_COMBINE.
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
${STEP}
@group(0) @binding(6) var<uniform> step: Step;
var<workgroup> qs: array<f32, ${hd}>;
var<workgroup> p: array<f32, ${ATTENTION_KEYS}>;
@compute @workgroup_size(${ATTENTION_KEYS}) fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let split = wid.x;
  let h = wid.y;
  let pos = step.pos;
  ${windowStart(s.window)}
  let first = lo + split * ${ATTENTION_KEYS}u;
  let half = ${hd / 2}u;
  for (var d = lid; d < ${hd}u; d += ${ATTENTION_KEYS}u) {
    let other = select(1.0, -1.0, d < half) * q[h * ${hd}u + select(d - half, d + half, d < half)];
    qs[d] = (q[h * ${hd}u + d] * cosT[pos * ${hd}u + d] + other * sinT[pos * ${hd}u + d]) * ${1 / Math.sqrt(hd)};
  }
  workgroupBarrier();
  let kvBase = (h / ${s.heads / s.kvHeads}u) * ${s.capacity * hd}u;
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
  let base = (h * ${s.maxSplits}u + split) * ${hd + 2}u;
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

/** Workgroup per head: the splits' partial softmaxes combined (online-softmax rescaling) into the head's output. */
function attentionCombineShader(s: AttentionShape): string {
  const hd = s.headDim;
  return `
@group(0) @binding(0) var<storage, read> partials: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
${STEP}
@group(0) @binding(2) var<uniform> step: Step;
@compute @workgroup_size(64) fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let h = wid.x;
  let pos = step.pos;
  ${windowStart(s.window)}
  let splits = (pos + ${ATTENTION_KEYS}u - lo) / ${ATTENTION_KEYS}u;
  let base = h * ${s.maxSplits}u * ${hd + 2}u;
  var m = -3.0e38;
  for (var s = 0u; s < splits; s++) { m = max(m, partials[base + s * ${hd + 2}u]); }
  var l = 0.0;
  for (var s = 0u; s < splits; s++) { l += partials[base + s * ${hd + 2}u + 1u] * exp(partials[base + s * ${hd + 2}u] - m); }
  for (var d = lid; d < ${hd}u; d += 64u) {
    var acc = 0.0;
    for (var s = 0u; s < splits; s++) { acc += partials[base + s * ${hd + 2}u + 2u + d] * exp(partials[base + s * ${hd + 2}u] - m); }
    out[h * ${hd}u + d] = acc / l;
  }
}`;
}

/** One workgroup: the index of the largest logit, the first one among equals (as sampling.ts argmax). */
function argmaxShader(vocab: number): string {
  return `
@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> result: array<u32>;
var<workgroup> bestValue: array<f32, 256>;
var<workgroup> bestIndex: array<u32, 256>;
const NONE = 0xffffffffu;
@compute @workgroup_size(256) fn main(@builtin(local_invocation_index) lid: u32) {
  var value = 0.0;
  var index = NONE;
  for (var i = lid; i < ${vocab}u; i += 256u) {
    let x = logits[i];
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
  if (lid == 0u) { result[0] = bestIndex[0]; }
}`;
}

interface Dispatch {
  pipeline: Pipeline;
  bindGroup: unknown;
  groups: [number, number, number];
}

/** The dispatches of one layer that bind the cache (rebuilt when the cache's buffers change). */
interface CacheDispatches {
  k: GpuBuffer;
  v: GpuBuffer;
  write: Dispatch;
  attention: Dispatch;
}

/** One decode session's graph (batch 1). step() decodes one token; dispose() frees every GPU buffer it made. */
export class DecodeGraph {
  private readonly buffers: GpuBuffer[] = [];
  private readonly stepUniforms: GpuBuffer;
  private readonly staging: GpuBuffer;
  private readonly logits: GpuBuffer;
  private readonly token: GpuBuffer;
  private readonly q: GpuBuffer;
  private readonly k: GpuBuffer;
  private readonly v: GpuBuffer;
  private readonly partials: GpuBuffer;
  /** In recording order: embedding gather and first norm; per layer, those before and after its cache-bound two; the LM head. */
  private readonly head: Dispatch[];
  private readonly layers: { beforeCache: Dispatch[]; afterCache: Dispatch[] }[] = [];
  private readonly lmHead: Dispatch;
  private readonly argmax: Dispatch;
  private readonly cacheDispatches: (CacheDispatches | null)[];
  private readonly shape: AttentionShape;
  private disposed = false;
  /** The weights' buffers as bound, in model.variables() order. */
  private readonly weightBuffers: GpuBuffer[];

  constructor(private readonly model: LlamaModel) {
    const c = model.config;
    const { dim, heads, kvHeads, headDim, hiddenDim, vocabSize, maxSeq } = c;
    const window = c.attentionWindow ?? 0;
    this.shape = { heads, kvHeads, headDim, capacity: maxSeq, window, maxSplits: Math.ceil(Math.min(maxSeq, window || maxSeq) / ATTENTION_KEYS) };
    const scratch = (floats: number, label: string): GpuBuffer => this.buffer(4 * floats, STORAGE | COPY_SRC, label);
    this.stepUniforms = this.buffer(32, UNIFORM | COPY_DST, 'step');
    backend().queue.writeBuffer(this.stepUniforms, 0, new Uint32Array([1, 1, kvHeads, headDim, maxSeq, 0, 0, 0]));
    const normUniforms = this.buffer(16, UNIFORM | COPY_DST, 'norm uniforms');
    const normFields = new ArrayBuffer(16);
    new Uint32Array(normFields, 0, 2).set([1, dim]);
    new Float32Array(normFields, 8, 1)[0] = c.normEps;
    backend().queue.writeBuffer(normUniforms, 0, new Uint8Array(normFields));
    const [xA, xB, h] = ['residual A', 'residual B', 'normed'].map((label) => scratch(dim, label));
    const inverseNorm = scratch(1, 'inverse norm');
    this.q = scratch(heads * headDim, 'q');
    this.k = scratch(kvHeads * headDim, 'k');
    this.v = scratch(kvHeads * headDim, 'v');
    this.partials = scratch(heads * this.shape.maxSplits * (headDim + 2), 'attention partials');
    const attention = scratch(heads * headDim, 'attention');
    const projected = scratch(dim, 'projection');
    const activation = scratch(hiddenDim, 'swiglu');
    this.logits = scratch(vocabSize, 'logits');
    this.token = scratch(1, 'token');
    this.staging = this.buffer(4 * vocabSize, MAP_READ | COPY_DST, 'read-back');

    this.weightBuffers = model.variables().map(bufferOf);
    const weight = (v: tf.LayerVariable): GpuBuffer => bufferOf(v.read());
    const gemv = (name: string, x: GpuBuffer, outs: GpuBuffer[], weights: GpuBuffer[], k: number, widths: number[], swiglu = false): Dispatch => {
      const columns = swiglu ? widths[0] : widths.reduce((a, b) => a + b, 0);
      return makeDispatch(name, gemvShader(k, widths, swiglu), [x, ...outs, ...weights], grid1(Math.ceil(columns / GEMV_COLS)));
    };
    const addNorm = (s: GpuBuffer, x: GpuBuffer, r: GpuBuffer, w: tf.LayerVariable): Dispatch => makeDispatch('ArlDecodeAddRmsNorm', ADD_RMS_NORM, [s, h, x, r, weight(w), normUniforms], [1, 1, 1]);

    const embedding = weight(model.embedding.weight);
    this.head = [
      makeDispatch('ArlDecodeGather', gatherShader(dim), [embedding, xA, this.stepUniforms], grid1(Math.ceil(dim / 256))),
      makeDispatch('ArlDecodeRmsNorm', RMS_NORM, [h, inverseNorm, xA, weight(model.blocks[0].attnNorm.weight), normUniforms], [1, 1, 1]),
    ];
    const qkvWidths = [heads * headDim, kvHeads * headDim, kvHeads * headDim];
    for (const [i, b] of model.blocks.entries()) {
      const nextNorm = i + 1 < model.blocks.length ? model.blocks[i + 1].attnNorm.weight : model.finalNorm.weight;
      this.layers.push({
        beforeCache: [gemv('ArlDecodeQkv', h, [this.q, this.k, this.v], [weight(b.wq), weight(b.wk), weight(b.wv)], dim, qkvWidths)],
        afterCache: [
          makeDispatch('ArlDecodeAttentionCombine', attentionCombineShader(this.shape), [this.partials, attention, this.stepUniforms], [heads, 1, 1]),
          gemv('ArlDecodeOProj', attention, [projected], [weight(b.wo)], heads * headDim, [dim]),
          addNorm(xB, xA, projected, b.mlpNorm.weight),
          gemv('ArlDecodeGateUp', h, [activation], [weight(b.wGate), weight(b.wUp)], dim, [hiddenDim, hiddenDim], true),
          gemv('ArlDecodeDown', activation, [projected], [weight(b.wDown)], hiddenDim, [dim]),
          addNorm(xA, xB, projected, nextNorm),
        ],
      });
    }
    this.lmHead = model.lmHead
      ? gemv('ArlDecodeLmHead', h, [this.logits], [weight(model.lmHead.weight)], dim, [vocabSize])
      : makeDispatch('ArlDecodeTiedLmHead', gemvTransposedShader(dim, vocabSize), [h, this.logits, embedding], grid1(Math.ceil(vocabSize / GEMV_T_ROWS)));
    this.argmax = makeDispatch('ArlDecodeArgmax', argmaxShader(vocabSize), [this.logits, this.token], [1, 1, 1]);
    this.cacheDispatches = model.blocks.map(() => null);
  }

  private buffer(size: number, usage: number, label: string): GpuBuffer {
    const buffer = backend().device.createBuffer({ size: Math.max(4, size), usage, label: `decode graph ${label}` });
    this.buffers.push(buffer);
    liveBuffers++;
    return buffer;
  }

  /**
   * Decodes `token` at position cache.length (writing its keys and values into the cache; the
   * caller advances cache.length) and returns the next token's logits, or with `greedy` only the
   * index of the largest.
   */
  async step(cache: KVCache, token: number, greedy: true): Promise<number>;
  async step(cache: KVCache, token: number, greedy: false): Promise<Float32Array>;
  async step(cache: KVCache, token: number, greedy: boolean): Promise<number | Float32Array> {
    if (this.disposed) throw new Error('decode graph used after dispose');
    const { maxSeq, vocabSize } = this.model.config;
    const pos = cache.length;
    if (pos >= maxSeq) throw new Error(`sequence of ${pos + 1} tokens exceeds the model's maxSeq ${maxSeq}`);
    if (cache.layers[0]?.capacity !== maxSeq) throw new Error('the decode graph needs the preallocated webgpu cache (emptyCache on webgpu)');
    const window = this.shape.window;
    const lo = window > 0 && pos + 1 > window ? pos + 1 - window : 0;
    const splits = Math.ceil((pos + 1 - lo) / ATTENTION_KEYS);
    const b = backend();
    b.queue.writeBuffer(this.stepUniforms, STEP_POS_OFFSET, new Uint32Array([pos, token]));
    // Into tfjs's command encoder, after whatever it has recorded (the prefill), then submitted.
    b.ensureCommandEncoderReady();
    b.endComputePassEncoder();
    const encoder = b.commandEncoder!;
    const pass = encoder.beginComputePass({});
    const record = (d: Dispatch): void => {
      pass.setPipeline(d.pipeline);
      pass.setBindGroup(0, d.bindGroup);
      pass.dispatchWorkgroups(d.groups[0], d.groups[1], d.groups[2]);
    };
    this.head.forEach(record);
    this.layers.forEach((layer, i) => {
      layer.beforeCache.forEach(record);
      const bound = this.bindCache(i, cache);
      record(bound.write);
      record({ ...bound.attention, groups: [splits, this.shape.heads, 1] });
      layer.afterCache.forEach(record);
    });
    record(this.lmHead);
    if (greedy) record(this.argmax);
    pass.end();
    const bytes = greedy ? 4 : 4 * vocabSize;
    encoder.copyBufferToBuffer(greedy ? this.token : this.logits, 0, this.staging, 0, bytes);
    b.submitQueue();
    await this.staging.mapAsync(MAP_READ, 0, bytes);
    const range = this.staging.getMappedRange(0, bytes);
    const result = greedy ? new Uint32Array(range)[0] : new Float32Array(range.slice(0));
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

  /** Layer i's cache-writing and attention dispatches over the cache's current buffers. */
  private bindCache(i: number, cache: KVCache): CacheDispatches {
    const k = bufferOf(cache.layers[i].k);
    const v = bufferOf(cache.layers[i].v);
    let bound = this.cacheDispatches[i];
    if (!bound || bound.k !== k || bound.v !== v) {
      const rope = [bufferOf(this.model.cos), bufferOf(this.model.sin)];
      const { kvHeads, headDim, heads } = this.shape;
      bound = {
        k,
        v,
        write: makeDispatch('ArlDecodeKvWrite', KV_WRITE, [k, v, this.k, this.v, ...rope, this.stepUniforms], grid1(Math.ceil((kvHeads * headDim) / 64))),
        // its first dimension (the splits) is set per token
        attention: makeDispatch('ArlDecodeAttention', attentionSplitShader(this.shape), [this.q, k, v, ...rope, this.partials, this.stepUniforms], [1, heads, 1]),
      };
      this.cacheDispatches[i] = bound;
    }
    return bound;
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
