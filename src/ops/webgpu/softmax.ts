/**
 * Attention softmax over materialised scores, 64 invocations per row: the mask add and the softmax
 * forward in one dispatch (tfjs: 2), and the backward p * (dp - sum(dp * p)) in one (tfjs: 4). Each
 * invocation keeps its elements of the row in registers, so the inputs are read once (reading them in
 * each of the forward's three passes made it 3x slower than memory allows at 1.1B on an H100).
 */
import * as tf from '@tensorflow/tfjs';
import { allocate, builtins, dispatchRaw, grid, shaderText } from './runtime.ts';

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

/**
 * WGSL lines for each of a row's elements this invocation holds: element lane + 64 i, i < cols / 64 rounded up, kept in
 * registers (one read of the inputs instead of one per pass), `ok{i}` saying whether it is in the row.
 */
function perElement(cols: number, line: (i: number, at: string) => string): string {
  return Array.from({ length: Math.ceil(cols / 64) }, (_, i) => line(i, `lane + ${64 * i}u`)).join('\n  ');
}

/** The masked softmax of rows `cols` wide (compiled per width: the elements an invocation holds are written out). */
function softmaxMaskedShader(cols: number): string {
  return `
@group(0) @binding(0) var<storage, read_write> p: array<f32>;
@group(0) @binding(1) var<storage, read> scores: array<f32>;
@group(0) @binding(2) var<storage, read> mask: array<f32>;
struct U { rows: u32, maskRows: u32 };
@group(0) @binding(3) var<uniform> u: U;
${ROW_REDUCE}
@compute @workgroup_size(256) fn main(${builtins}) {
  let row = rowOf(wid, nwg, lid);
  let lane = lid % 64u;
  // No early return: the reductions' barriers need every invocation of the workgroup.
  let live = row < u.rows;
  let base = row * ${cols}u;
  let maskBase = (row % u.maskRows) * ${cols}u;
  var m = -3.402823e38;
  ${perElement(cols, (i, at) => `let ok${i} = live && ${at} < ${cols}u;
  var x${i} = -3.402823e38;
  if (ok${i}) { x${i} = scores[base + ${at}] + mask[maskBase + ${at}]; m = max(m, x${i}); }`)}
  let rowMax = rowReduce(m, lid, true);
  var total = 0.0;
  ${perElement(cols, (i) => `x${i} = exp(x${i} - rowMax); if (ok${i}) { total += x${i}; }`)}
  let inv = 1.0 / rowReduce(total, lid, false);
  ${perElement(cols, (i, at) => `if (ok${i}) { p[base + ${at}] = x${i} * inv; }`)}
}`;
}

/** The softmax backward p * (dp - sum(dp * p)) of rows `cols` wide. */
function softmaxGradShader(cols: number): string {
  return `
@group(0) @binding(0) var<storage, read_write> ds: array<f32>;
@group(0) @binding(1) var<storage, read> p: array<f32>;
@group(0) @binding(2) var<storage, read> dp: array<f32>;
struct U { rows: u32 };
@group(0) @binding(3) var<uniform> u: U;
${ROW_REDUCE}
@compute @workgroup_size(256) fn main(${builtins}) {
  let row = rowOf(wid, nwg, lid);
  let lane = lid % 64u;
  let live = row < u.rows;
  let base = row * ${cols}u;
  var dot = 0.0;
  ${perElement(cols, (i, at) => `let ok${i} = live && ${at} < ${cols}u;
  var p${i} = 0.0;
  var dp${i} = 0.0;
  if (ok${i}) { p${i} = p[base + ${at}]; dp${i} = dp[base + ${at}]; dot += p${i} * dp${i}; }`)}
  let c = rowReduce(dot, lid, false);
  ${perElement(cols, (i, at) => `if (ok${i}) { ds[base + ${at}] = p${i} * (dp${i} - c); }`)}
}`;
}

export function softmaxMaskedKernel(args: { inputs: tf.NamedTensorInfoMap }): tf.TensorInfo {
  const { scores, mask } = args.inputs as Record<string, tf.TensorInfo>;
  const cols = scores.shape[scores.shape.length - 1];
  const rows = tf.util.sizeFromShape(scores.shape) / cols;
  const p = allocate(scores.shape);
  dispatchRaw('ArlSoftmaxMasked', shaderText(`softmax ${cols}`, () => softmaxMaskedShader(cols)), [p, scores, mask], [rows, mask.shape[0]].map((v) => ({ type: 'uint32', data: [v] })), grid(Math.ceil(rows / SOFTMAX_ROWS_PER_WG)));
  return p;
}

export function softmaxGradKernel(args: { inputs: tf.NamedTensorInfoMap }): tf.TensorInfo {
  const { p, dp } = args.inputs as Record<string, tf.TensorInfo>;
  const cols = p.shape[p.shape.length - 1];
  const rows = tf.util.sizeFromShape(p.shape) / cols;
  const ds = allocate(p.shape);
  dispatchRaw('ArlSoftmaxGrad', shaderText(`softmax grad ${cols}`, () => softmaxGradShader(cols)), [ds, p, dp], [rows].map((v) => ({ type: 'uint32', data: [v] })), grid(Math.ceil(rows / SOFTMAX_ROWS_PER_WG)));
  return ds;
}
