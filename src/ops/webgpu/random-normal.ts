/**
 * Normal random values drawn on the GPU: a counter-based hash (PCG) of (seed, index) and Box-Muller. tfjs draws
 * random values in JavaScript, about 30M a second, so a 1.1B-parameter model took most of a minute to create.
 */
import * as tf from '@tensorflow/tfjs';
import { allocate, builtins, dispatchRaw, flatIndex, grid, type Uniform } from './runtime.ts';

const RANDOM_NORMAL = `
@group(0) @binding(0) var<storage, read_write> y: array<f32>;
struct U { size: u32, seed: u32, scale: f32 };
@group(0) @binding(1) var<uniform> u: U;
fn pcg(x: u32) -> u32 {
  let state = x * 747796405u + 2891336453u;
  let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}
@compute @workgroup_size(256) fn main(${builtins}) {
  let pair = ${flatIndex(256)};
  let i = 2u * pair;
  if (i >= u.size) { return; }
  let h1 = pcg(pair ^ pcg(u.seed));
  let h2 = pcg(h1 ^ 0x9e3779b9u);
  // 24-bit uniforms; u1 in (0, 1] keeps log finite.
  let u1 = (f32(h1 >> 8u) + 1.0) / 16777216.0;
  let u2 = f32(h2 >> 8u) / 16777216.0;
  let r = u.scale * sqrt(-2.0 * log(u1));
  let angle = 6.283185307179586 * u2;
  y[i] = r * cos(angle);
  if (i + 1u < u.size) { y[i + 1u] = r * sin(angle); }
}`;

export function randomNormalKernel(args: { attrs: { shape: number[]; std: number; seed: number } }): tf.TensorInfo {
  const { shape, std, seed } = args.attrs;
  const size = tf.util.sizeFromShape(shape);
  const y = allocate(shape);
  const uniforms: Uniform[] = [{ type: 'uint32', data: [size] }, { type: 'uint32', data: [seed >>> 0] }, { type: 'float32', data: [std] }];
  dispatchRaw('ArlRandomNormal', RANDOM_NORMAL, [y], uniforms, grid(Math.ceil(size / 2 / 256)));
  return y;
}
