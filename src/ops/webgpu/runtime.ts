/**
 * Our own WGSL kernels for the tfjs webgpu backend, registered as tfjs kernels (ArlGpu*) and used
 * from fused.ts and optimizer.ts when the webgpu backend is active.
 *
 * Why: on the GPU a training step of the stock ops was bound by dispatch overhead, not arithmetic
 * (H200, 29.4M model: 2,733 dispatches, 148 ms of GPU time in a 333 ms step; docs/benchmarks.md).
 * Each kernel here replaces a chain of small element-wise ops with one dispatch: RMSNorm forward
 * (1 instead of 6) and backward (3 instead of ~10), SwiGLU (1 and 1 instead of 3 and 7), the AdamW
 * update of one variable in place (1 instead of ~12, and no new buffers), and the gradient's sum of
 * squares for clipping (1 per variable instead of 2).
 *
 * tfjs's own program system gives a shader one output; these dispatch through `dispatchRaw`,
 * which records into the backend's command encoder (so ordering with tfjs's kernels holds) and may
 * write several outputs, or update buffers in place. Each kernel is checked against the plain
 * tfjs ops, values and gradients, in test/webgpu-kernels.test.ts.
 */
import * as tf from '@tensorflow/tfjs';
import { flashAttentionGradKernel, flashAttentionKernel } from './flash-attention.ts';
import { crossEntropyGradKernel, crossEntropyKernel } from './cross-entropy.ts';

/** The parts of tfjs-backend-webgpu's WebGPUBackend that dispatchRaw uses. */
export interface WebgpuBackend {
  device: {
    createShaderModule(d: { code: string; label?: string }): unknown;
    createComputePipeline(d: unknown): { getBindGroupLayout(i: number): unknown };
    createBindGroup(d: unknown): unknown;
    createQuerySet(d: unknown): unknown;
  };
  commandEncoder: { beginComputePass(d: unknown): ComputePass } | null;
  computePassEncoder: ComputePass | null;
  commandQueueOwnedIds: WeakSet<object>;
  tensorMap: { get(id: tf.DataId): { values: unknown; resource: unknown } | undefined };
  dispatchCountInPass: number;
  activeTimers: { name: string; query: Promise<number> }[] | null;
  supportTimestampQuery: boolean;
  querySet: unknown;
  querySetCount: number;
  makeTensorInfo(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  uploadToGPU(dataId: tf.DataId): void;
  tensorToBinding(t: tf.TensorInfo): unknown;
  makeUniforms(u: Uniform[]): unknown;
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
  getQueryTime(): Promise<number>;
  refCount(dataId: tf.DataId): number;
}
export interface ComputePass {
  setPipeline(p: unknown): void;
  setBindGroup(i: number, g: unknown): void;
  dispatchWorkgroups(x: number, y: number, z: number): void;
}
export type Uniform = { type: 'float32' | 'int32' | 'uint32'; data: number[] };

const MAX_GROUPS_PER_DIM = 65535;
type Pipeline = ReturnType<WebgpuBackend['device']['createComputePipeline']>;
/** Per shader text: its pipeline, and the bindings it declares read_write (buffers it writes). */
const shaders = new Map<string, { pipeline: Pipeline; written: number[] }>();

/** [x, y, 1] workgroups covering `count` workgroups (2-D past the 65,535-per-dimension limit). */
export function grid(count: number): [number, number, number] {
  return count <= MAX_GROUPS_PER_DIM ? [Math.max(count, 1), 1, 1] : [MAX_GROUPS_PER_DIM, Math.ceil(count / MAX_GROUPS_PER_DIM), 1];
}

/** The pipeline and the written bindings of `code`, made once per shader text. */
function shader(name: string, code: string): { pipeline: Pipeline; written: number[] } {
  let entry = shaders.get(code);
  if (!entry) {
    const device = (tf.backend() as unknown as WebgpuBackend).device;
    const pipeline = device.createComputePipeline({ layout: 'auto', label: name, compute: { module: device.createShaderModule({ code, label: name }), entryPoint: 'main' } });
    const written = [...code.matchAll(/@binding\((\d+)\)\s*var<storage,\s*read_write>/g)].map((m) => Number(m[1]));
    entry = { pipeline, written };
    shaders.set(code, entry);
  }
  return entry;
}

/** The compute pipeline of `code` (entry point main, layout from the shader), created once per shader text. */
export function computePipeline(name: string, code: string): Pipeline {
  return shader(name, code).pipeline;
}

/** Frees a buffer a kernel allocated for its own scratch (a TensorInfo no tensor wraps). */
export function release(info: tf.TensorInfo): void {
  (tf.backend() as unknown as { disposeData(id: tf.DataId): void }).disposeData(info.dataId);
}

/**
 * Records one compute dispatch of `code` into tfjs's command stream. `buffers` bind in order at
 * @binding(0..n-1) (declared read or read_write by the shader), the uniforms, if any, at @binding(n).
 * Outputs must be allocated by the caller (backend.makeTensorInfo); inputs are uploaded if needed.
 * Under tf.profile the dispatch is timed on the GPU like tfjs's own programs.
 */
export function dispatchRaw(name: string, code: string, buffers: tf.TensorInfo[], uniforms: Uniform[] | null, groups: [number, number, number]): void {
  const backend = tf.backend() as unknown as WebgpuBackend;
  const { pipeline, written } = shader(name, code);
  for (const b of buffers) backend.uploadToGPU(b.dataId);
  // tfjs keeps the values of a tensor once read (and answers later reads from them); a buffer
  // written here (in place: AdamW's weights and moments, the KV cache) must be read anew.
  for (const i of written) {
    const data = backend.tensorMap.get(buffers[i].dataId);
    if (data) data.values = null;
  }
  const entries = buffers.map((b, i) => ({ binding: i, resource: backend.tensorToBinding(b) }));
  if (uniforms) entries.push({ binding: buffers.length, resource: backend.makeUniforms(uniforms) });
  for (const b of buffers) backend.commandQueueOwnedIds.add(b.dataId);
  const bindGroup = backend.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
  backend.ensureCommandEncoderReady();
  const timed = backend.activeTimers != null && backend.supportTimestampQuery;
  if (timed) {
    backend.endComputePassEncoder();
    backend.querySet ??= backend.device.createQuerySet({ type: 'timestamp', count: backend.querySetCount });
    backend.computePassEncoder = backend.commandEncoder!.beginComputePass({ timestampWrites: { querySet: backend.querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } });
  } else if (!backend.computePassEncoder) {
    backend.computePassEncoder = backend.commandEncoder!.beginComputePass({});
  }
  const pass = backend.computePassEncoder!;
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bindGroup);
  pass.dispatchWorkgroups(groups[0], groups[1], groups[2]);
  backend.dispatchCountInPass++;
  if (timed) {
    backend.endComputePassEncoder();
    backend.activeTimers!.push({ name, query: backend.getQueryTime() });
  } else if (backend.dispatchCountInPass >= (tf.env().get('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE') as number)) {
    backend.endComputePassEncoder();
    backend.submitQueue();
  }
}

export function allocate(shape: number[]): tf.TensorInfo {
  return (tf.backend() as unknown as WebgpuBackend).makeTensorInfo(shape, 'float32');
}

/** The flat index of this invocation in a grid() dispatch of 1-D workgroups of size WG. */
const flatIndex = (wg: number): string => `gid.x + gid.y * nwg.x * ${wg}u`;
const builtins = '@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>';

/** Sum over a 256-wide workgroup of `value` (every invocation gets it). */
const WG_SUM = `
var<workgroup> partial: array<f32, 256>;
fn workgroupSum(value: f32, lid: u32) -> f32 {
  partial[lid] = value;
  workgroupBarrier();
  for (var stride = 128u; stride > 0u; stride = stride >> 1u) {
    if (lid < stride) { partial[lid] = partial[lid] + partial[lid + stride]; }
    workgroupBarrier();
  }
  let total = partial[0];
  workgroupBarrier();
  return total;
}`;

// ---------------------------------------------------------------------------------------------
// RMSNorm: one workgroup per row.

export const RMS_NORM = `
@group(0) @binding(0) var<storage, read_write> y: array<f32>;
@group(0) @binding(1) var<storage, read_write> inv: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> w: array<f32>;
struct U { rows: u32, dim: u32, eps: f32 };
@group(0) @binding(4) var<uniform> u: U;
${WG_SUM}
@compute @workgroup_size(256) fn main(${builtins}) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= u.rows) { return; }
  let base = row * u.dim;
  var sq = 0.0;
  for (var j = lid; j < u.dim; j += 256u) { let v = x[base + j]; sq += v * v; }
  let r = inverseSqrt(workgroupSum(sq, lid) / f32(u.dim) + u.eps);
  for (var j = lid; j < u.dim; j += 256u) { y[base + j] = x[base + j] * r * w[j]; }
  if (lid == 0u) { inv[row] = r; }
}`;

/** dx per row: (g - xhat * mean(g * xhat)) * r with g = dy * w, xhat = x * r. */
const RMS_NORM_GRAD_X = `
@group(0) @binding(0) var<storage, read_write> dx: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> inv: array<f32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
struct U { rows: u32, dim: u32 };
@group(0) @binding(5) var<uniform> u: U;
${WG_SUM}
@compute @workgroup_size(256) fn main(${builtins}) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= u.rows) { return; }
  let base = row * u.dim;
  let r = inv[row];
  var dot = 0.0;
  for (var j = lid; j < u.dim; j += 256u) { dot += dy[base + j] * w[j] * x[base + j] * r; }
  let c = workgroupSum(dot, lid) / f32(u.dim);
  for (var j = lid; j < u.dim; j += 256u) {
    let xhat = x[base + j] * r;
    dx[base + j] = (dy[base + j] * w[j] - xhat * c) * r;
  }
}`;

/** dw partial sums: out[chunk, j] = sum over the chunk's rows of dy * x * r. */
const RMS_NORM_GRAD_W = `
@group(0) @binding(0) var<storage, read_write> partials: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> inv: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
struct U { rows: u32, dim: u32, chunkRows: u32, chunks: u32 };
@group(0) @binding(4) var<uniform> u: U;
@compute @workgroup_size(64) fn main(${builtins}) {
  let i = ${flatIndex(64)};
  if (i >= u.chunks * u.dim) { return; }
  let chunk = i / u.dim;
  let j = i % u.dim;
  let end = min(u.rows, (chunk + 1u) * u.chunkRows);
  var acc = 0.0;
  for (var row = chunk * u.chunkRows; row < end; row++) { acc += dy[row * u.dim + j] * x[row * u.dim + j] * inv[row]; }
  partials[i] = acc;
}`;

const DW_CHUNK_ROWS = 64;

function rmsNormKernel(args: { inputs: tf.NamedTensorInfoMap; attrs?: tf.NamedAttrMap }): tf.TensorInfo[] {
  const { x, weight } = args.inputs as { x: tf.TensorInfo; weight: tf.TensorInfo };
  const { eps } = args.attrs as { eps: number };
  const [rows, dim] = x.shape;
  const y = allocate([rows, dim]);
  const inv = allocate([rows]);
  dispatchRaw('ArlGpuRmsNorm', RMS_NORM, [y, inv, x, weight], [{ type: 'uint32', data: [rows] }, { type: 'uint32', data: [dim] }, { type: 'float32', data: [eps] }], grid(rows));
  return [y, inv];
}

function rmsNormGradKernel(args: { inputs: tf.NamedTensorInfoMap }): tf.TensorInfo[] {
  const { x, weight, inv, dy } = args.inputs as Record<string, tf.TensorInfo>;
  const [rows, dim] = x.shape;
  const dx = allocate([rows, dim]);
  dispatchRaw('ArlGpuRmsNormGradX', RMS_NORM_GRAD_X, [dx, x, weight, inv, dy], [{ type: 'uint32', data: [rows] }, { type: 'uint32', data: [dim] }], grid(rows));
  const chunks = Math.ceil(rows / DW_CHUNK_ROWS);
  const partials = allocate([chunks, dim]);
  const uniforms: Uniform[] = [rows, dim, DW_CHUNK_ROWS, chunks].map((v) => ({ type: 'uint32', data: [v] }));
  dispatchRaw('ArlGpuRmsNormGradW', RMS_NORM_GRAD_W, [partials, x, inv, dy], uniforms, grid(Math.ceil((chunks * dim) / 64)));
  return [dx, partials];
}

/** Inference only: the residual sum s = x + r and its RMSNorm in one dispatch (instead of two). */
export const ADD_RMS_NORM = `
@group(0) @binding(0) var<storage, read_write> s: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> r: array<f32>;
@group(0) @binding(4) var<storage, read> w: array<f32>;
struct U { rows: u32, dim: u32, eps: f32 };
@group(0) @binding(5) var<uniform> u: U;
${WG_SUM}
@compute @workgroup_size(256) fn main(${builtins}) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= u.rows) { return; }
  let base = row * u.dim;
  var sq = 0.0;
  for (var j = lid; j < u.dim; j += 256u) { let v = x[base + j] + r[base + j]; s[base + j] = v; sq += v * v; }
  let inv = inverseSqrt(workgroupSum(sq, lid) / f32(u.dim) + u.eps);
  for (var j = lid; j < u.dim; j += 256u) { y[base + j] = (x[base + j] + r[base + j]) * inv * w[j]; }
}`;

function addRmsNormKernel(args: { inputs: tf.NamedTensorInfoMap; attrs?: tf.NamedAttrMap }): tf.TensorInfo[] {
  const { x, residual, weight } = args.inputs as Record<string, tf.TensorInfo>;
  const { eps } = args.attrs as { eps: number };
  const [rows, dim] = x.shape;
  const sum = allocate([rows, dim]);
  const y = allocate([rows, dim]);
  dispatchRaw('ArlGpuAddRmsNorm', ADD_RMS_NORM, [sum, y, x, residual, weight], [{ type: 'uint32', data: [rows] }, { type: 'uint32', data: [dim] }, { type: 'float32', data: [eps] }], grid(rows));
  return [sum, y];
}

/** [x + residual, rmsNorm(x + residual) * weight] for [N, D] inputs, without gradients (decoding). */
export function addRmsNormGpu(x: tf.Tensor2D, residual: tf.Tensor2D, weight: tf.Tensor1D, eps: number): [tf.Tensor2D, tf.Tensor2D] {
  return tf.engine().runKernel('ArlGpuAddRmsNorm', { x, residual, weight }, { eps }) as unknown as [tf.Tensor2D, tf.Tensor2D];
}

// ---------------------------------------------------------------------------------------------
// Attention softmax over materialised scores, one workgroup per row: the mask add and the softmax
// forward in one dispatch (tfjs: 2), and the backward p * (dp - sum(dp * p)) in one (tfjs: 4).

/** 4 rows per workgroup, 64 invocations per row (one workgroup per 512-wide row was slower than tfjs's). */
const SOFTMAX_ROWS_PER_WG = 4;
const ROW_REDUCE = `
var<workgroup> red: array<f32, 256>;
fn rowReduce(value: f32, lid: u32, isMax: bool) -> f32 {
  let lane = lid % 64u;
  red[lid] = value;
  workgroupBarrier();
  for (var stride = 32u; stride > 0u; stride = stride >> 1u) {
    if (lane < stride) { red[lid] = select(red[lid] + red[lid + stride], max(red[lid], red[lid + stride]), isMax); }
    workgroupBarrier();
  }
  let total = red[lid - lane];
  workgroupBarrier();
  return total;
}
fn rowOf(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 { return (wid.x + wid.y * nwg.x) * ${SOFTMAX_ROWS_PER_WG}u + lid / 64u; }`;

const SOFTMAX_MASKED = `
@group(0) @binding(0) var<storage, read_write> p: array<f32>;
@group(0) @binding(1) var<storage, read> scores: array<f32>;
@group(0) @binding(2) var<storage, read> mask: array<f32>;
struct U { rows: u32, cols: u32, maskRows: u32 };
@group(0) @binding(3) var<uniform> u: U;
${ROW_REDUCE}
@compute @workgroup_size(256) fn main(${builtins}) {
  let row = rowOf(wid, nwg, lid);
  let lane = lid % 64u;
  // No early return: the reductions' barriers need every invocation of the workgroup.
  let cols = select(0u, u.cols, row < u.rows);
  let base = row * u.cols;
  let maskBase = (row % u.maskRows) * u.cols;
  var m = -3.402823e38;
  for (var j = lane; j < cols; j += 64u) { m = max(m, scores[base + j] + mask[maskBase + j]); }
  let rowMax = rowReduce(m, lid, true);
  var total = 0.0;
  for (var j = lane; j < cols; j += 64u) { total += exp(scores[base + j] + mask[maskBase + j] - rowMax); }
  let inv = 1.0 / rowReduce(total, lid, false);
  for (var j = lane; j < cols; j += 64u) { p[base + j] = exp(scores[base + j] + mask[maskBase + j] - rowMax) * inv; }
}`;

const SOFTMAX_GRAD = `
@group(0) @binding(0) var<storage, read_write> ds: array<f32>;
@group(0) @binding(1) var<storage, read> p: array<f32>;
@group(0) @binding(2) var<storage, read> dp: array<f32>;
struct U { rows: u32, cols: u32 };
@group(0) @binding(3) var<uniform> u: U;
${ROW_REDUCE}
@compute @workgroup_size(256) fn main(${builtins}) {
  let row = rowOf(wid, nwg, lid);
  let lane = lid % 64u;
  let cols = select(0u, u.cols, row < u.rows);
  let base = row * u.cols;
  var dot = 0.0;
  for (var j = lane; j < cols; j += 64u) { dot += dp[base + j] * p[base + j]; }
  let c = rowReduce(dot, lid, false);
  for (var j = lane; j < cols; j += 64u) { ds[base + j] = p[base + j] * (dp[base + j] - c); }
}`;

function softmaxMaskedKernel(args: { inputs: tf.NamedTensorInfoMap }): tf.TensorInfo {
  const { scores, mask } = args.inputs as Record<string, tf.TensorInfo>;
  const cols = scores.shape[scores.shape.length - 1];
  const rows = tf.util.sizeFromShape(scores.shape) / cols;
  const p = allocate(scores.shape);
  dispatchRaw('ArlGpuSoftmaxMasked', SOFTMAX_MASKED, [p, scores, mask], [rows, cols, mask.shape[0]].map((v) => ({ type: 'uint32', data: [v] })), grid(Math.ceil(rows / SOFTMAX_ROWS_PER_WG)));
  return p;
}

function softmaxGradKernel(args: { inputs: tf.NamedTensorInfoMap }): tf.TensorInfo {
  const { p, dp } = args.inputs as Record<string, tf.TensorInfo>;
  const cols = p.shape[p.shape.length - 1];
  const rows = tf.util.sizeFromShape(p.shape) / cols;
  const ds = allocate(p.shape);
  dispatchRaw('ArlGpuSoftmaxGrad', SOFTMAX_GRAD, [ds, p, dp], [rows, cols].map((v) => ({ type: 'uint32', data: [v] })), grid(Math.ceil(rows / SOFTMAX_ROWS_PER_WG)));
  return ds;
}

/** softmax(scores + mask) over the last axis; mask [R, C] repeats over the leading rows of scores [..., R, C]. */
export function softmaxMaskedGpu<T extends tf.Tensor>(scores: T, mask: tf.Tensor2D): T {
  return tf.engine().runKernel('ArlGpuSoftmaxMasked', { scores, mask }) as T;
}

/** The softmax's input gradient p * (dp - sum(dp * p)) over the last axis, from its output p and dp. */
export function softmaxGradGpu<T extends tf.Tensor>(p: T, dp: T): T {
  return tf.engine().runKernel('ArlGpuSoftmaxGrad', { p, dp }) as T;
}

// ---------------------------------------------------------------------------------------------
// Rotary positions on [B, n, T, hd] in one element-wise dispatch each way (tfjs: a matmul by the
// rotate-half matrix and 3 element-wise ops). Forward y = x cos + rotate_half(x) sin; backward
// (its transpose) dx = dy cos + rotate_half^T(dy sin).

const ROTARY = `
@group(0) @binding(0) var<storage, read_write> y: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> cosT: array<f32>;
@group(0) @binding(3) var<storage, read> sinT: array<f32>;
struct U { size: u32, seq: u32, headDim: u32, backward: u32 };
@group(0) @binding(4) var<uniform> u: U;
@compute @workgroup_size(256) fn main(${builtins}) {
  let idx = ${flatIndex(256)};
  if (idx >= u.size) { return; }
  let half = u.headDim / 2u;
  let i = idx % u.headDim;
  let row = ((idx / u.headDim) % u.seq) * u.headDim;
  let first = i < half;
  let partner = select(idx - half, idx + half, first);
  let partnerI = select(i - half, i + half, first);
  var rotated: f32;
  if (u.backward == 0u) {
    rotated = select(x[partner], -x[partner], first) * sinT[row + i];
  } else {
    rotated = select(-x[partner], x[partner], first) * sinT[row + partnerI];
  }
  y[idx] = x[idx] * cosT[row + i] + rotated;
}`;

function rotaryKernel(args: { inputs: tf.NamedTensorInfoMap; attrs?: tf.NamedAttrMap }): tf.TensorInfo {
  const { x, cos, sin } = args.inputs as Record<string, tf.TensorInfo>;
  const { backward } = args.attrs as { backward: boolean };
  const size = tf.util.sizeFromShape(x.shape);
  const [seq, headDim] = cos.shape;
  const y = allocate(x.shape);
  dispatchRaw('ArlGpuRotary', ROTARY, [y, x, cos, sin], [size, seq, headDim, backward ? 1 : 0].map((v) => ({ type: 'uint32', data: [v] })), grid(Math.ceil(size / 256)));
  return y;
}

/** Rotary positions on x [B, n, T, hd] with tables [T, hd] (HF rotate-half layout); `backward` applies the transpose. */
export function rotaryGpu(x: tf.Tensor4D, cos: tf.Tensor2D, sin: tf.Tensor2D, backward: boolean): tf.Tensor4D {
  return tf.engine().runKernel('ArlGpuRotary', { x, cos, sin }, { backward }) as tf.Tensor4D;
}

// ---------------------------------------------------------------------------------------------
// SwiGLU: silu(gate) * up, element-wise; the gradient writes both inputs' gradients at once.

const SWIGLU = `
@group(0) @binding(0) var<storage, read_write> y: array<f32>;
@group(0) @binding(1) var<storage, read> gate: array<f32>;
@group(0) @binding(2) var<storage, read> up: array<f32>;
struct U { size: u32 };
@group(0) @binding(3) var<uniform> u: U;
@compute @workgroup_size(256) fn main(${builtins}) {
  let i = ${flatIndex(256)};
  if (i >= u.size) { return; }
  let g = gate[i];
  y[i] = g / (1.0 + exp(-g)) * up[i];
}`;

const SWIGLU_GRAD = `
@group(0) @binding(0) var<storage, read_write> dGate: array<f32>;
@group(0) @binding(1) var<storage, read_write> dUp: array<f32>;
@group(0) @binding(2) var<storage, read> gate: array<f32>;
@group(0) @binding(3) var<storage, read> up: array<f32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
struct U { size: u32 };
@group(0) @binding(5) var<uniform> u: U;
@compute @workgroup_size(256) fn main(${builtins}) {
  let i = ${flatIndex(256)};
  if (i >= u.size) { return; }
  let g = gate[i];
  let s = 1.0 / (1.0 + exp(-g));
  dUp[i] = dy[i] * g * s;
  dGate[i] = dy[i] * up[i] * s * (1.0 + g * (1.0 - s)); // silu'(g) = s (1 + g (1 - s))
}`;

function swigluKernel(args: { inputs: tf.NamedTensorInfoMap }): tf.TensorInfo {
  const { gate, up } = args.inputs as { gate: tf.TensorInfo; up: tf.TensorInfo };
  const size = tf.util.sizeFromShape(gate.shape);
  const y = allocate(gate.shape);
  dispatchRaw('ArlGpuSwiGlu', SWIGLU, [y, gate, up], [{ type: 'uint32', data: [size] }], grid(Math.ceil(size / 256)));
  return y;
}

function swigluGradKernel(args: { inputs: tf.NamedTensorInfoMap }): tf.TensorInfo[] {
  const { gate, up, dy } = args.inputs as Record<string, tf.TensorInfo>;
  const size = tf.util.sizeFromShape(gate.shape);
  const dGate = allocate(gate.shape);
  const dUp = allocate(gate.shape);
  dispatchRaw('ArlGpuSwiGluGrad', SWIGLU_GRAD, [dGate, dUp, gate, up, dy], [{ type: 'uint32', data: [size] }], grid(Math.ceil(size / 256)));
  return [dGate, dUp];
}

// ---------------------------------------------------------------------------------------------
// Optimizer: sum of squares (for the global gradient norm) and the AdamW update in place.

const SUM_SQUARES_GROUPS = 64;

/** partials[slot * 64 + workgroup] = part of sum(x^2); 64 workgroups stride over x. */
const SUM_SQUARES = `
@group(0) @binding(0) var<storage, read_write> partials: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
struct U { size: u32, slot: u32 };
@group(0) @binding(2) var<uniform> u: U;
${WG_SUM}
@compute @workgroup_size(256) fn main(${builtins}) {
  var acc = 0.0;
  for (var i = wid.x * 256u + lid; i < u.size; i += ${SUM_SQUARES_GROUPS * 256}u) { let v = x[i]; acc += v * v; }
  let total = workgroupSum(acc, lid);
  if (lid == 0u) { partials[u.slot * ${SUM_SQUARES_GROUPS}u + wid.x] = total; }
}`;

/** Per-workgroup parts of the sums of squares of `tensors` ([tensors.length * 64]): one dispatch per tensor. */
function sumSquaresPartials(tensors: tf.Tensor[]): tf.TensorInfo {
  const partials = allocate([tensors.length * SUM_SQUARES_GROUPS]);
  tensors.forEach((t, slot) => {
    const uniforms: Uniform[] = [{ type: 'uint32', data: [t.size] }, { type: 'uint32', data: [slot] }];
    dispatchRaw('ArlGpuSumSquares', SUM_SQUARES, [partials, t], uniforms, [SUM_SQUARES_GROUPS, 1, 1]);
  });
  return partials;
}

/** Global L2 norm of `tensors` (a scalar): one dispatch per tensor, then one sum. */
export function globalNormGpu(tensors: tf.Tensor[]): tf.Scalar {
  const partialsTensor = tf.engine().makeTensorFromTensorInfo(sumSquaresPartials(tensors));
  return tf.tidy(() => tf.sqrt(tf.sum(partialsTensor)) as tf.Scalar);
}

/** Finite test by the exponent bits (a NaN compare may be folded away by a fast-math compiler). */
const IS_FINITE = 'fn isFinite(x: f32) -> bool { return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u; }';

/** gate = [norm, clip scale, 1 if loss and norm are finite else 0, loss / lossDivisor] from the partial sums. */
const STEP_GATE = `
@group(0) @binding(0) var<storage, read_write> gate: array<f32>;
@group(0) @binding(1) var<storage, read> partials: array<f32>;
@group(0) @binding(2) var<storage, read> lossSum: array<f32>;
struct U { count: u32, maxNorm: f32, lossDivisor: f32 };
@group(0) @binding(3) var<uniform> u: U;
${WG_SUM}
${IS_FINITE}
@compute @workgroup_size(256) fn main(${builtins}) {
  var acc = 0.0;
  for (var i = lid; i < u.count; i += 256u) { acc += partials[i]; }
  let norm = sqrt(workgroupSum(acc, lid));
  if (lid == 0u) {
    let loss = lossSum[0] / u.lossDivisor;
    gate[0] = norm;
    gate[1] = select(1.0, min(1.0, u.maxNorm / (norm + 1e-6)), u.maxNorm > 0.0);
    gate[2] = select(0.0, 1.0, isFinite(loss) && isFinite(norm));
    gate[3] = loss;
  }
}`;

/** A step gate read back: the gradient norm, whether loss and norm were finite (else the update was skipped), the loss. */
export interface StepGate {
  norm: number;
  finite: boolean;
  loss: number;
}

/**
 * The step's gradient norm, clip scale and finiteness test, computed on the GPU so that the
 * update is recorded without a readback between backward and update (which would leave the GPU
 * idle while the update is recorded). adamwUpdateGpu scales the gradient by the clip scale and
 * skips the update when the loss or the norm is not finite; read the gate afterwards.
 */
export function stepGateGpu(grads: tf.Tensor[], lossSum: tf.Scalar, o: { maxNorm: number; lossDivisor: number }): tf.Tensor1D {
  const partials = sumSquaresPartials(grads);
  const gate = allocate([4]);
  const uniforms: Uniform[] = [{ type: 'uint32', data: [grads.length * SUM_SQUARES_GROUPS] }, { type: 'float32', data: [o.maxNorm] }, { type: 'float32', data: [o.lossDivisor] }];
  dispatchRaw('ArlGpuStepGate', STEP_GATE, [gate, partials, lossSum], uniforms, [1, 1, 1]);
  release(partials);
  return tf.engine().makeTensorFromTensorInfo(gate) as tf.Tensor1D;
}

/** Reads a gate written by stepGateGpu. */
export async function readStepGate(gate: tf.Tensor1D): Promise<StepGate> {
  const [norm, , finite, loss] = await gate.data();
  return { norm, finite: finite === 1, loss };
}

const ADAMW = `
@group(0) @binding(0) var<storage, read_write> p: array<f32>;
@group(0) @binding(1) var<storage, read_write> m: array<f32>;
@group(0) @binding(2) var<storage, read_write> v: array<f32>;
@group(0) @binding(3) var<storage, read> g: array<f32>;
@group(0) @binding(4) var<storage, read> gate: array<f32>;
struct U { size: u32, lr: f32, beta1: f32, beta2: f32, eps: f32, decay: f32, correction1: f32, correction2: f32 };
@group(0) @binding(5) var<uniform> u: U;
@compute @workgroup_size(256) fn main(${builtins}) {
  let i = ${flatIndex(256)};
  if (i >= u.size || gate[2] == 0.0) { return; }
  let gi = g[i] * gate[1];
  let mi = u.beta1 * m[i] + (1.0 - u.beta1) * gi;
  let vi = u.beta2 * v[i] + (1.0 - u.beta2) * gi * gi;
  m[i] = mi;
  v[i] = vi;
  p[i] = p[i] * u.decay - u.lr * ((mi / u.correction1) / (sqrt(vi / u.correction2) + u.eps));
}`;

export interface AdamWStep {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** Multiplier of the weights before the update: 1 - lr * weightDecay, or 1. */
  decay: number;
  correction1: number;
  correction2: number;
}

/**
 * Gives `variable` a buffer of its own if another tensor shares it (tf.variable(t) and clones
 * share data), so writing it in place cannot change that tensor. A one-time copy per variable.
 */
function ownBuffer(variable: tf.Variable): void {
  if ((tf.backend() as unknown as WebgpuBackend).refCount(variable.dataId) <= 1) return;
  const copy = tf.add(variable, 0);
  variable.assign(copy);
  copy.dispose();
}

/** AdamW on one variable, updating `param`, `m` and `v` in place; `gate` from stepGateGpu (clip scale, skip). */
export function adamwUpdateGpu(param: tf.Variable, grad: tf.Tensor, m: tf.Variable, v: tf.Variable, gate: tf.Tensor1D, s: AdamWStep): void {
  for (const variable of [param, m, v]) ownBuffer(variable);
  const size = param.size;
  const f = (x: number): Uniform => ({ type: 'float32', data: [x] });
  const uniforms: Uniform[] = [{ type: 'uint32', data: [size] }, f(s.lr), f(s.beta1), f(s.beta2), f(s.eps), f(s.decay), f(s.correction1), f(s.correction2)];
  dispatchRaw('ArlGpuAdamW', ADAMW, [param, m, v, grad, gate], uniforms, grid(Math.ceil(size / 256)));
}

// ---------------------------------------------------------------------------------------------
// KV-cached decoding: the cache is preallocated [B, KV, capacity, hd] and written in place; one
// kernel writes the new keys (rotated) and values, one attends each new query over the cache.
// Rotary positions are applied from the cos/sin tables (HF "rotate half" layout) inside both.

/** Shapes of one cached-attention call. */
export interface CacheShape {
  batch: number;
  seq: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  /** Positions the cache holds (its third axis). */
  capacity: number;
  /** Position of the first new token. */
  start: number;
  /** Sliding attention window, or null for full causal attention. */
  window: number | null;
}

/** Thread per (b, t, kv head, d): rotate the new key, store key and value at position start + t. */
export const KV_WRITE = `
@group(0) @binding(0) var<storage, read_write> cacheK: array<f32>;
@group(0) @binding(1) var<storage, read_write> cacheV: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> cosT: array<f32>;
@group(0) @binding(5) var<storage, read> sinT: array<f32>;
struct U { batch: u32, seq: u32, kvHeads: u32, headDim: u32, capacity: u32, start: u32 };
@group(0) @binding(6) var<uniform> u: U;
@compute @workgroup_size(64) fn main(${builtins}) {
  let i = ${flatIndex(64)};
  let hd = u.headDim;
  if (i >= u.batch * u.seq * u.kvHeads * hd) { return; }
  let d = i % hd;
  let kvh = (i / hd) % u.kvHeads;
  let row = i / (hd * u.kvHeads); // b * seq + t
  let t = row % u.seq;
  let b = row / u.seq;
  let pos = u.start + t;
  let src = row * u.kvHeads * hd + kvh * hd;
  let half = hd / 2u;
  // rotate_half: -x[d + half] in the first half, x[d - half] in the second
  let other = select(1.0, -1.0, d < half) * k[src + select(d - half, d + half, d < half)];
  let dst = ((b * u.kvHeads + kvh) * u.capacity + pos) * hd + d;
  cacheK[dst] = k[src + d] * cosT[pos * hd + d] + other * sinT[pos * hd + d];
  cacheV[dst] = v[src + d];
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
struct U { batch: u32, seq: u32, heads: u32, kvHeads: u32, headDim: u32, capacity: u32, start: u32, window: u32, scale: f32 };
@group(0) @binding(6) var<uniform> u: U;
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
  let pos = u.start + t;
  var lo = 0u;
  if (u.window > 0u && pos + 1u > u.window) { lo = pos + 1u - u.window; }
  let qBase = (b * u.seq + t) * u.heads * hd + h * hd;
  for (var d = lid; d < hd; d += ${size}u) {
    let other = select(1.0, -1.0, d < half) * q[qBase + select(d - half, d + half, d < half)];
    qs[d] = (q[qBase + d] * cosT[pos * hd + d] + other * sinT[pos * hd + d]) * u.scale;
  }
  workgroupBarrier();
  let kvBase = (b * u.kvHeads + kvh) * u.capacity * hd;
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

function kvWriteKernel(args: { inputs: tf.NamedTensorInfoMap; attrs?: tf.NamedAttrMap }): tf.TensorInfo[] {
  const { cacheK, cacheV, k, v, cos, sin } = args.inputs as Record<string, tf.TensorInfo>;
  const c = args.attrs as unknown as CacheShape;
  const count = c.batch * c.seq * c.kvHeads * c.headDim;
  dispatchRaw('ArlGpuKvWrite', KV_WRITE, [cacheK, cacheV, k, v, cos, sin], cacheUniforms(c, ['batch', 'seq', 'kvHeads', 'headDim', 'capacity', 'start']), grid(Math.ceil(count / 64)));
  return [];
}

function cachedAttentionKernel(args: { inputs: tf.NamedTensorInfoMap; attrs?: tf.NamedAttrMap }): tf.TensorInfo {
  const { q, cacheK, cacheV, cos, sin } = args.inputs as Record<string, tf.TensorInfo>;
  const c = args.attrs as unknown as CacheShape;
  if (c.headDim > 256 || c.headDim % 2 !== 0) throw new Error(`ArlGpuCachedAttention: head dimension ${c.headDim} must be even and at most 256`);
  const out = allocate([c.batch * c.seq, c.heads * c.headDim]);
  const uniforms = [...cacheUniforms(c, ['batch', 'seq', 'heads', 'kvHeads', 'headDim', 'capacity', 'start', 'window']), { type: 'float32' as const, data: [1 / Math.sqrt(c.headDim)] }];
  const decode = c.seq <= DECODE_TOKENS && 256 % c.headDim === 0;
  dispatchRaw('ArlGpuCachedAttention', decode ? CACHED_ATTENTION_DECODE : CACHED_ATTENTION, [out, q, cacheK, cacheV, cos, sin], uniforms, grid(c.batch * c.heads * c.seq));
  return out;
}

/**
 * Decoding attention on webgpu: writes the new tokens' keys (rotated) and values into the
 * preallocated cache in place, then attends every new query (q [B*T, H*hd], before rotary) over
 * the cache up to its own position. Returns the merged heads [B*T, H*hd].
 */
export function cachedAttentionGpu(q: tf.Tensor2D, k: tf.Tensor2D, v: tf.Tensor2D, cacheK: tf.Tensor4D, cacheV: tf.Tensor4D, cos: tf.Tensor2D, sin: tf.Tensor2D, shape: CacheShape): tf.Tensor2D {
  const attrs = shape as unknown as tf.NamedAttrMap;
  tf.engine().runKernel('ArlGpuKvWrite', { cacheK, cacheV, k, v, cos, sin }, attrs);
  return tf.engine().runKernel('ArlGpuCachedAttention', { q, cacheK, cacheV, cos, sin }, attrs) as tf.Tensor2D;
}

// ---------------------------------------------------------------------------------------------
// Matrix products: BatchMatMul for float32 operands with at least one full tile each way. tfjs's
// own kernel tiles 32x32 with 64 threads; this one tiles TILE x TILE with 256 threads, each
// computing (TILE/16)^2 outputs held in registers as vec4 rows. Operands are staged k-major in
// workgroup memory as vec4s, so one k step reads TILE/32 vec4s of each operand per thread (not
// TILE/16 scalars each): workgroup-memory reads, not arithmetic, bounded the scalar version. The
// next K tile is loaded from global memory into registers while the current one is multiplied.
// Transposed operands are read in their stored order, so global loads stay coalesced.

/** K tile edge (8, 16 or 32; ARL_MATMUL_K_TILE picks, for measurements; tile * K tile >= 1,024). */
function matmulKTile(tile: number): number {
  const chosen = Number(process.env.ARL_MATMUL_K_TILE ?? 16);
  return [8, 16, 32].includes(chosen) && tile * chosen >= 1024 ? chosen : 16;
}

/**
 * WGSL that stages one operand's K tile: `load` reads this thread's share into registers
 * (`name`0, `name`1, ...: vec4s of 4 consecutive elements in stored order), `store` writes them
 * k-major into the workgroup array `name`Tile (TILE/4 vec4s per k). `kMajor`: stored [k, x]
 * (x contiguous), else [x, k] (k contiguous). `x`: the operand's outer size (m or n).
 */
function matmulStaging(name: 'a' | 'b', tile: number, kTile: number, kMajor: boolean, x: string): { load: string; store: string } {
  const shares = (tile * kTile) / 1024; // vec4s of this operand's tile per thread
  const vecsPerK = tile / 4;
  const load: string[] = [];
  const store: string[] = [];
  for (let l = 0; l < shares; l++) {
    const e = `(lidx + ${l * 256}u)`;
    const r = `${name}${l}`;
    if (kMajor) {
      // vec4 along x at (k, x4 * 4)
      const at = `let k = ${e} / ${vecsPerK}u; let gx = ${name}0x + (${e} % ${vecsPerK}u) * 4u; let gk = k0 + k;`;
      const elems = [0, 1, 2, 3].map((c) => `select(0.0, ${name}[${name}Base + gk * ${x} + gx + ${c}u], gx + ${c}u < ${x} && gk < kEnd)`);
      load.push(`{ ${at} ${r} = vec4<f32>(${elems.join(', ')}); }`);
      store.push(`${name}Tile[${e}] = ${r};`);
    } else {
      // vec4 along k at (x, k4 * 4); stored k-major one element per k row
      const at = `let xi = ${e} / ${kTile / 4}u; let gx = ${name}0x + xi; let gk = k0 + (${e} % ${kTile / 4}u) * 4u;`;
      const elems = [0, 1, 2, 3].map((c) => `select(0.0, ${name}[${name}Base + gx * u.k + gk + ${c}u], gx < ${x} && gk + ${c}u < kEnd)`);
      load.push(`{ ${at} ${r} = vec4<f32>(${elems.join(', ')}); }`);
      const comps = ['x', 'y', 'z', 'w'];
      store.push(`{ let xi = ${e} / ${kTile / 4}u; let k = (${e} % ${kTile / 4}u) * 4u; ${comps
        .map((c, i) => `${name}Tile[(k + ${i}u) * ${vecsPerK}u + xi / 4u][xi % 4u] = ${r}.${c};`)
        .join(' ')} }`);
    }
  }
  return { load: load.join('\n    '), store: store.join('\n    ') };
}

function matmulShader(tile: number, kTile: number, transposeA: boolean, transposeB: boolean): string {
  const quads = tile / 64; // vec4s of rows (and of columns) per thread
  const vecsPerK = tile / 4;
  const comps = ['x', 'y', 'z', 'w'];
  const acc = (r: number, q: number): string => `c${r}_${q}`;
  const decl: string[] = [];
  const fmas: string[] = [];
  const stores: string[] = [];
  for (let r = 0; r < 4 * quads; r++) {
    const row = `(${Math.floor(r / 4) * 16}u + ty) * 4u + ${r % 4}u`;
    for (let q = 0; q < quads; q++) {
      decl.push(`var ${acc(r, q)} = vec4<f32>(0.0);`);
      fmas.push(`${acc(r, q)} = fma(vec4<f32>(ra${Math.floor(r / 4)}.${comps[r % 4]}), rb${q}, ${acc(r, q)});`);
      const col = `n0 + (${q * 16}u + tx) * 4u`;
      stores.push(`{ let row = m0 + ${row}; let col = ${col}; if (row < u.m) { ${comps
        .map((c, i) => `if (col + ${i}u < u.n) { out[outBase + row * u.n + col + ${i}u] = ${acc(r, q)}.${c}; }`)
        .join(' ')} } }`);
    }
  }
  const aRegs = Array.from({ length: quads }, (_, i) => `let ra${i} = aTile[kk * ${vecsPerK}u + ${16 * i}u + ty];`).join('\n      ');
  const bRegs = Array.from({ length: quads }, (_, j) => `let rb${j} = bTile[kk * ${vecsPerK}u + ${16 * j}u + tx];`).join('\n      ');
  const stageA = matmulStaging('a', tile, kTile, transposeA, 'u.m');
  const stageB = matmulStaging('b', tile, kTile, !transposeB, 'u.n');
  const regs = Array.from({ length: (tile * kTile) / 1024 }, (_, l) => `var a${l} = vec4<f32>(0.0); var b${l} = vec4<f32>(0.0);`).join('\n  ');
  return `
@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
struct U { m: u32, n: u32, k: u32, batchA: u32, batchB: u32, splits: u32, kChunk: u32 };
@group(0) @binding(3) var<uniform> u: U;
var<workgroup> aTile: array<vec4<f32>, ${vecsPerK * kTile}>;
var<workgroup> bTile: array<vec4<f32>, ${vecsPerK * kTile}>;
@compute @workgroup_size(16, 16, 1) fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lidx: u32) {
  let tx = lid.x;
  let ty = lid.y;
  // z = batch * splits + split: split-K products write partial sums [splits, batch, m, n].
  let batch = wid.z / u.splits;
  let split = wid.z % u.splits;
  let kBegin = split * u.kChunk;
  let kEnd = min(u.k, kBegin + u.kChunk);
  let m0 = wid.y * ${tile}u;
  let n0 = wid.x * ${tile}u;
  let a0x = m0;
  let b0x = n0;
  let aBase = select(batch, 0u, u.batchA == 1u) * u.m * u.k;
  let bBase = select(batch, 0u, u.batchB == 1u) * u.k * u.n;
  let outBase = (split * (u.batchA + u.batchB - min(u.batchA, u.batchB)) + batch) * u.m * u.n;
  ${decl.join('\n  ')}
  ${regs}
  var k0 = kBegin;
  ${stageA.load}
  ${stageB.load}
  for (; k0 < kEnd; ) {
    ${stageA.store}
    ${stageB.store}
    workgroupBarrier();
    k0 += ${kTile}u;
    if (k0 < kEnd) {
      ${stageA.load}
      ${stageB.load}
    }
    for (var kk = 0u; kk < ${kTile}u; kk++) {
      ${aRegs}
      ${bRegs}
      ${fmas.join('\n      ')}
    }
    workgroupBarrier();
  }
  ${stores.join('\n  ')}
}`;
}

/** out[i] = sum over s of partials[s * size + i] (the split-K reduction). */
const SUM_SPLITS = `
@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read> partials: array<f32>;
struct U { size: u32, splits: u32 };
@group(0) @binding(2) var<uniform> u: U;
@compute @workgroup_size(256) fn main(${builtins}) {
  let i = ${flatIndex(256)};
  if (i >= u.size) { return; }
  var acc = 0.0;
  for (var s = 0u; s < u.splits; s++) { acc += partials[s * u.size + i]; }
  out[i] = acc;
}`;

/** Output tiles below which a product is split along K (about two waves of workgroups on a large GPU). */
const SPLIT_K_BELOW_TILES = 256;
/** Smallest K range one split handles. */
const SPLIT_K_MIN_CHUNK = 512;

let stockBatchMatMul: tf.KernelConfig | null = null;

/**
 * Products where tfjs's own matmul measured faster than ours on an H200 (docs/gpu-runs/
 * 2026-11-22T0538-h200-matmul.jsonl, per-shape GPU times with ARL_STOCK_MATMUL=1 against ours),
 * as "transposeA transposeB m n k": the fused q/k/v weight gradient of the 512-wide model
 * (x^T [8192,512] by dQKV [8192,1536]: ours 0.75 ms, tfjs 0.47 ms per call). Every other measured
 * shape was as fast or faster with ours. A fixed table keeps the choice deterministic.
 */
const STOCK_FASTER = new Set(['true false 512 1536 8192']);

/** Tile edge of our matmul (64 or 128; ARL_MATMUL_TILE picks, for measurements). */
function matmulTile(): number {
  return process.env.ARL_MATMUL_TILE === '64' ? 64 : 128;
}

function batchMatMulKernel(args: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap }): tf.TensorInfo {
  const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
  const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
  const ra = a.shape.length;
  const rb = b.shape.length;
  const m = transposeA ? a.shape[ra - 1] : a.shape[ra - 2];
  const k = transposeA ? a.shape[ra - 2] : a.shape[ra - 1];
  const n = transposeB ? b.shape[rb - 2] : b.shape[rb - 1];
  const batchA = tf.util.sizeFromShape(a.shape.slice(0, -2));
  const batchB = tf.util.sizeFromShape(b.shape.slice(0, -2));
  const tile = matmulTile();
  const sameBatch = batchA === batchB || batchA === 1 || batchB === 1;
  // Small or oddly batched products stay with tfjs (its split-K and small-output programs suit them).
  const stockFaster = batchA === 1 && batchB === 1 && STOCK_FASTER.has(`${transposeA} ${transposeB} ${m} ${n} ${k}`);
  if (!hasWebgpuKernels() || process.env.ARL_STOCK_MATMUL === '1' || stockFaster || a.dtype !== 'float32' || b.dtype !== 'float32' || m < tile || n < tile || !sameBatch || ra !== rb) {
    return stockBatchMatMul!.kernelFunc(args as never) as tf.TensorInfo;
  }
  const batch = Math.max(batchA, batchB);
  const outShape = [...(batchA >= batchB ? a.shape : b.shape).slice(0, -2), m, n];
  const out = allocate(outShape);
  // Few output tiles and a long K (weight gradients: [d, d'] from 8,192 rows): split K so every
  // multiprocessor gets work, then add the partial products.
  const tiles = Math.ceil(n / tile) * Math.ceil(m / tile) * batch;
  const splits = tiles >= SPLIT_K_BELOW_TILES ? 1 : Math.max(1, Math.min(Math.ceil(SPLIT_K_BELOW_TILES / tiles), Math.floor(k / SPLIT_K_MIN_CHUNK)));
  const kTile = matmulKTile(tile);
  const kChunk = Math.ceil(k / splits / kTile) * kTile;
  const target = splits > 1 ? allocate([splits * batch * m * n]) : out;
  const uniforms: Uniform[] = [m, n, k, batchA, batchB, splits, kChunk].map((v) => ({ type: 'uint32', data: [v] }));
  dispatchRaw('ArlGpuMatMul', matmulShader(tile, kTile, transposeA, transposeB), [target, a, b], uniforms, [Math.ceil(n / tile), Math.ceil(m / tile), batch * splits]);
  if (splits > 1) {
    const size = batch * m * n;
    dispatchRaw('ArlGpuSumSplits', SUM_SPLITS, [out, target], [{ type: 'uint32', data: [size] }, { type: 'uint32', data: [splits] }], grid(Math.ceil(size / 256)));
    release(target);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

let registered = false;

/** Registers the ArlGpu* kernels for the webgpu backend (idempotent). */
export function registerWebgpuKernels(): void {
  if (registered) return;
  registered = true;
  const kernels: [string, (args: never) => tf.TensorInfo | tf.TensorInfo[]][] = [
    ['ArlGpuRmsNorm', rmsNormKernel],
    ['ArlGpuRmsNormGrad', rmsNormGradKernel],
    ['ArlGpuAddRmsNorm', addRmsNormKernel],
    ['ArlGpuRotary', rotaryKernel],
    ['ArlGpuSoftmaxMasked', softmaxMaskedKernel],
    ['ArlGpuSoftmaxGrad', softmaxGradKernel],
    ['ArlGpuSwiGlu', swigluKernel],
    ['ArlGpuSwiGluGrad', swigluGradKernel],
    ['ArlGpuKvWrite', kvWriteKernel],
    ['ArlGpuCachedAttention', cachedAttentionKernel],
    ['ArlGpuFlashAttention', flashAttentionKernel],
    ['ArlGpuFlashAttentionGrad', flashAttentionGradKernel],
    ['ArlGpuCrossEntropy', crossEntropyKernel],
    ['ArlGpuCrossEntropyGrad', crossEntropyGradKernel],
  ];
  for (const [kernelName, kernelFunc] of kernels) tf.registerKernel({ kernelName, backendName: 'webgpu', kernelFunc: kernelFunc as unknown as tf.KernelFunc });
  stockBatchMatMul = tf.getKernel('BatchMatMul', 'webgpu') ?? null;
  if (stockBatchMatMul) {
    tf.unregisterKernel('BatchMatMul', 'webgpu');
    tf.registerKernel({ ...stockBatchMatMul, kernelFunc: batchMatMulKernel as unknown as tf.KernelFunc });
  }
}

/** True when the active backend is webgpu with our kernels (ARL_STOCK_WEBGPU=1 turns them off, for comparisons). */
export function hasWebgpuKernels(): boolean {
  return registered && tf.getBackend() === 'webgpu' && process.env.ARL_STOCK_WEBGPU !== '1';
}
