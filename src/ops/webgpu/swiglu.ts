/** SwiGLU on webgpu: silu(gate) * up, element-wise; the gradient writes both inputs' gradients at once. */
import * as tf from '@tensorflow/tfjs';
import { allocate, builtins, dispatchRaw, flatIndex, grid } from './runtime.ts';

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

export function swigluKernel(args: { inputs: tf.NamedTensorInfoMap }): tf.TensorInfo {
  const { gate, up } = args.inputs as { gate: tf.TensorInfo; up: tf.TensorInfo };
  const size = tf.util.sizeFromShape(gate.shape);
  const y = allocate(gate.shape);
  dispatchRaw('ArlSwiGlu', SWIGLU, [y, gate, up], [{ type: 'uint32', data: [size] }], grid(Math.ceil(size / 256)));
  return y;
}

export function swigluGradKernel(args: { inputs: tf.NamedTensorInfoMap }): tf.TensorInfo[] {
  const { gate, up, dy } = args.inputs as Record<string, tf.TensorInfo>;
  const size = tf.util.sizeFromShape(gate.shape);
  const dGate = allocate(gate.shape);
  const dUp = allocate(gate.shape);
  dispatchRaw('ArlSwiGluGrad', SWIGLU_GRAD, [dGate, dUp, gate, up, dy], [{ type: 'uint32', data: [size] }], grid(Math.ceil(size / 256)));
  return [dGate, dUp];
}

