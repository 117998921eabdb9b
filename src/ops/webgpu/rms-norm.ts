/**
 * RMSNorm on webgpu, one workgroup per row: ArlRmsNorm (y and the rows' 1/rms), ArlRmsNormGrad
 * (dx, and dw as per-chunk partial sums), and ArlAddRmsNorm (decoding: the residual sum and its norm).
 */
import * as tf from '@tensorflow/tfjs';
import { allocate, builtins, dispatchRaw, flatIndex, grid, type Uniform, WG_SUM } from './runtime.ts';


/**
 * One workgroup per row: y = v * r * w with r = 1 / rms(v). Plain, v = x and r is kept per row (the backward reads it);
 * with the residual (inference), v = x + residual, written out as the new residual stream s. Bindings in order:
 * outputs (y, inv; or s, y), x, the residual, w, the uniforms.
 */
function rowNormShader(withResidual: boolean): string {
  const outputs = withResidual ? ['s', 'y'] : ['y', 'inv'];
  const inputs = withResidual ? ['x', 'res', 'w'] : ['x', 'w'];
  const value = withResidual ? 'x[base + j] + res[base + j]' : 'x[base + j]';
  const bindings = [
    ...outputs.map((name, i) => `@group(0) @binding(${i}) var<storage, read_write> ${name}: array<f32>;`),
    ...inputs.map((name, i) => `@group(0) @binding(${outputs.length + i}) var<storage, read> ${name}: array<f32>;`),
  ];
  return `
${bindings.join('\n')}
struct U { rows: u32, dim: u32, eps: f32 };
@group(0) @binding(${bindings.length}) var<uniform> u: U;
${WG_SUM}
@compute @workgroup_size(256) fn main(${builtins}) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= u.rows) { return; }
  let base = row * u.dim;
  var sq = 0.0;
  for (var j = lid; j < u.dim; j += 256u) { let v = ${value};${withResidual ? ' s[base + j] = v;' : ''} sq += v * v; }
  let r = inverseSqrt(workgroupSum(sq, lid) / f32(u.dim) + u.eps);
  for (var j = lid; j < u.dim; j += 256u) { y[base + j] = (${value}) * r * w[j]; }
  ${withResidual ? '' : 'if (lid == 0u) { inv[row] = r; }'}
}`;
}

export const RMS_NORM = rowNormShader(false);

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

export function rmsNormKernel(args: { inputs: tf.NamedTensorInfoMap; attrs?: tf.NamedAttrMap }): tf.TensorInfo[] {
  const { x, weight } = args.inputs as { x: tf.TensorInfo; weight: tf.TensorInfo };
  const { eps } = args.attrs as { eps: number };
  const [rows, dim] = x.shape;
  const y = allocate([rows, dim]);
  const inv = allocate([rows]);
  dispatchRaw('ArlRmsNorm', RMS_NORM, [y, inv, x, weight], [{ type: 'uint32', data: [rows] }, { type: 'uint32', data: [dim] }, { type: 'float32', data: [eps] }], grid(rows));
  return [y, inv];
}

export function rmsNormGradKernel(args: { inputs: tf.NamedTensorInfoMap }): tf.TensorInfo[] {
  const { x, weight, inv, dy } = args.inputs as Record<string, tf.TensorInfo>;
  const [rows, dim] = x.shape;
  const dx = allocate([rows, dim]);
  dispatchRaw('ArlRmsNormGradX', RMS_NORM_GRAD_X, [dx, x, weight, inv, dy], [{ type: 'uint32', data: [rows] }, { type: 'uint32', data: [dim] }], grid(rows));
  const chunks = Math.ceil(rows / DW_CHUNK_ROWS);
  const partials = allocate([chunks, dim]);
  const uniforms: Uniform[] = [rows, dim, DW_CHUNK_ROWS, chunks].map((v) => ({ type: 'uint32', data: [v] }));
  dispatchRaw('ArlRmsNormGradW', RMS_NORM_GRAD_W, [partials, x, inv, dy], uniforms, grid(Math.ceil((chunks * dim) / 64)));
  return [dx, partials];
}

/** Inference only: the residual sum s = x + r and its RMSNorm in one dispatch (instead of two). */
export const ADD_RMS_NORM = rowNormShader(true);

export function addRmsNormKernel(args: { inputs: tf.NamedTensorInfoMap; attrs?: tf.NamedAttrMap }): tf.TensorInfo[] {
  const { x, residual, weight } = args.inputs as Record<string, tf.TensorInfo>;
  const { eps } = args.attrs as { eps: number };
  const [rows, dim] = x.shape;
  const sum = allocate([rows, dim]);
  const y = allocate([rows, dim]);
  dispatchRaw('ArlAddRmsNorm', ADD_RMS_NORM, [sum, y, x, residual, weight], [{ type: 'uint32', data: [rows] }, { type: 'uint32', data: [dim] }, { type: 'float32', data: [eps] }], grid(rows));
  return [sum, y];
}
