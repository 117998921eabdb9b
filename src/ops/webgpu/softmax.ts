/**
 * Attention softmax over materialised scores, one workgroup per row: the mask add and the softmax
 * forward in one dispatch (tfjs: 2), and the backward p * (dp - sum(dp * p)) in one (tfjs: 4).
 */
import * as tf from '@tensorflow/tfjs';
import { allocate, builtins, dispatchRaw, grid } from './runtime.ts';

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

export function softmaxMaskedKernel(args: { inputs: tf.NamedTensorInfoMap }): tf.TensorInfo {
  const { scores, mask } = args.inputs as Record<string, tf.TensorInfo>;
  const cols = scores.shape[scores.shape.length - 1];
  const rows = tf.util.sizeFromShape(scores.shape) / cols;
  const p = allocate(scores.shape);
  dispatchRaw('ArlSoftmaxMasked', SOFTMAX_MASKED, [p, scores, mask], [rows, cols, mask.shape[0]].map((v) => ({ type: 'uint32', data: [v] })), grid(Math.ceil(rows / SOFTMAX_ROWS_PER_WG)));
  return p;
}

export function softmaxGradKernel(args: { inputs: tf.NamedTensorInfoMap }): tf.TensorInfo {
  const { p, dp } = args.inputs as Record<string, tf.TensorInfo>;
  const cols = p.shape[p.shape.length - 1];
  const rows = tf.util.sizeFromShape(p.shape) / cols;
  const ds = allocate(p.shape);
  dispatchRaw('ArlSoftmaxGrad', SOFTMAX_GRAD, [ds, p, dp], [rows, cols].map((v) => ({ type: 'uint32', data: [v] })), grid(Math.ceil(rows / SOFTMAX_ROWS_PER_WG)));
  return ds;
}
