/**
 * Rotary positions on [B, n, T, hd] in one element-wise dispatch each way (tfjs: a matmul by the
 * rotate-half matrix and 3 element-wise ops). Forward y = x cos + rotate_half(x) sin; backward
 * (its transpose) dx = dy cos + rotate_half^T(dy sin).
 */
import * as tf from '@tensorflow/tfjs';
import { allocate, builtins, dispatchRaw, flatIndex, grid } from './runtime.ts';

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

export function rotaryKernel(args: { inputs: tf.NamedTensorInfoMap; attrs?: tf.NamedAttrMap }): tf.TensorInfo {
  const { x, cos, sin } = args.inputs as Record<string, tf.TensorInfo>;
  const { backward } = args.attrs as { backward: boolean };
  const size = tf.util.sizeFromShape(x.shape);
  const [seq, headDim] = cos.shape;
  const y = allocate(x.shape);
  dispatchRaw('ArlRotary', ROTARY, [y, x, cos, sin], [size, seq, headDim, backward ? 1 : 0].map((v) => ({ type: 'uint32', data: [v] })), grid(Math.ceil(size / 256)));
  return y;
}
