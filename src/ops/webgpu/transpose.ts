/**
 * Transpose on webgpu where the last axis stays last and is a multiple of 4 wide (attention's [B, T, H, hd] <->
 * [B, H, T, hd]), registered over tfjs's, which takes the others: one vec4 an invocation. tfjs's kernel moves one element
 * an invocation through generic index arithmetic: about 110 us for a 33 MB tensor of the 1.1B model on an H100, a
 * third of what its memory allows.
 */
import * as tf from '@tensorflow/tfjs';
import { stockWebgpu } from '../../switches.ts';
import { allocate, builtins, dispatchRaw, flatIndex, grid } from './runtime.ts';

/** out (rank 4, vec4s) = x permuted: output coordinates (c0, c1, c2, c3) read x at sum c_d * stride_d (vec4 units). */
const TRANSPOSE = `
@group(0) @binding(0) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
struct U { size: u32, d1: u32, d2: u32, d3: u32, s0: u32, s1: u32, s2: u32 };
@group(0) @binding(2) var<uniform> u: U;
@compute @workgroup_size(256) fn main(${builtins}) {
  let i = ${flatIndex(256)};
  if (i >= u.size) { return; }
  let c3 = i % u.d3;
  let c2 = (i / u.d3) % u.d2;
  let c1 = (i / (u.d3 * u.d2)) % u.d1;
  let c0 = i / (u.d3 * u.d2 * u.d1);
  out[i] = x[c0 * u.s0 + c1 * u.s1 + c2 * u.s2 + c3];
}`;

/** Our Transpose, taking `stock` (tfjs's own) for the permutations it leaves to tfjs. */
export const transposeKernel = (stock: tf.KernelConfig) => (args: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap }): tf.TensorInfo => {
  const { x } = args.inputs as { x: tf.TensorInfo };
  const perm = (args.attrs as { perm: number[] }).perm;
  const rank = x.shape.length;
  const size = tf.util.sizeFromShape(x.shape);
  if (stockWebgpu() || x.dtype !== 'float32' || rank < 2 || rank > 4 || perm[rank - 1] !== rank - 1 || x.shape[rank - 1] % 4 !== 0 || size === 0) {
    return stock.kernelFunc(args as never) as tf.TensorInfo;
  }
  // As rank 4 in vec4 units: leading axes of 1 where the rank is lower.
  const pad = 4 - rank;
  const shape = [...Array<number>(pad).fill(1), ...x.shape.slice(0, -1), x.shape[rank - 1] / 4];
  const order = [...Array.from({ length: pad }, (_, i) => i), ...perm.map((p) => p + pad)];
  const strides = shape.map((_, d) => shape.slice(d + 1).reduce((a, b) => a * b, 1));
  const out = allocate(perm.map((p) => x.shape[p]));
  const uniforms = [size / 4, shape[order[1]], shape[order[2]], shape[order[3]], strides[order[0]], strides[order[1]], strides[order[2]]];
  dispatchRaw('ArlTranspose', TRANSPOSE, [out, x], uniforms.map((v) => ({ type: 'uint32', data: [v] })), grid(Math.ceil(size / 4 / 256)));
  return out;
};
