/**
 * The optimizer on webgpu: the gradients' sums of squares (for the global norm), the step gate
 * (norm, clip scale and finiteness decided on the GPU), and the AdamW update of one variable in place.
 */
import * as tf from '@tensorflow/tfjs';
import { allocate, builtins, dispatchRaw, flatIndex, grid, release, type Uniform, type WebgpuBackend, WG_SUM } from './runtime.ts';

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

