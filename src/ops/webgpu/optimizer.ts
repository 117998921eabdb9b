/**
 * The optimizer's kernels on webgpu: the gradients' sums of squares (ArlSumSquares, for the global
 * norm), the step gate (ArlStepGate: norm, clip scale and finiteness decided on the GPU), and the
 * AdamW update of one variable in place (ArlAdamW).
 */
import * as tf from '@tensorflow/tfjs';
import { allocate, builtins, dispatchRaw, flatIndex, grid, release, type Uniform, WG_SUM } from './runtime.ts';

type KernelArgs = { inputs: tf.NamedTensorInfoMap; attrs?: tf.NamedAttrMap };

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
function sumSquaresPartials(tensors: tf.TensorInfo[]): tf.TensorInfo {
  const partials = allocate([tensors.length * SUM_SQUARES_GROUPS]);
  tensors.forEach((t, slot) => {
    const uniforms: Uniform[] = [{ type: 'uint32', data: [tf.util.sizeFromShape(t.shape)] }, { type: 'uint32', data: [slot] }];
    dispatchRaw('ArlSumSquares', SUM_SQUARES, [partials, t], uniforms, [SUM_SQUARES_GROUPS, 1, 1]);
  });
  return partials;
}

/** The many-input kernels take their tensors as t0, t1, ... (count in the attributes). */
const listed = (inputs: tf.NamedTensorInfoMap, count: number): tf.TensorInfo[] => Array.from({ length: count }, (_, i) => inputs[`t${i}`] as tf.TensorInfo);

/** ArlSumSquares: {t0..} -> [count * 64] parts of their sums of squares (one dispatch per tensor). */
export function sumSquaresKernel(args: KernelArgs): tf.TensorInfo {
  const { count } = args.attrs as { count: number };
  return sumSquaresPartials(listed(args.inputs, count));
}

/** Finite test by the exponent bits (a NaN compare may be folded away by a fast-math compiler). */
const IS_FINITE = 'fn isFinite(x: f32) -> bool { return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u; }';

/** gate = [norm, gradScale * clip scale, 1 if loss and norm are finite else 0, loss / lossDivisor] from the partial sums of the gradients before gradScale. */
const STEP_GATE = `
@group(0) @binding(0) var<storage, read_write> gate: array<f32>;
@group(0) @binding(1) var<storage, read> partials: array<f32>;
@group(0) @binding(2) var<storage, read> lossSum: array<f32>;
struct U { count: u32, maxNorm: f32, lossDivisor: f32, gradScale: f32 };
@group(0) @binding(3) var<uniform> u: U;
${WG_SUM}
${IS_FINITE}
@compute @workgroup_size(256) fn main(${builtins}) {
  var acc = 0.0;
  for (var i = lid; i < u.count; i += 256u) { acc += partials[i]; }
  let norm = sqrt(workgroupSum(acc, lid)) * u.gradScale;
  if (lid == 0u) {
    let loss = lossSum[0] / u.lossDivisor;
    gate[0] = norm;
    gate[1] = u.gradScale * select(1.0, min(1.0, u.maxNorm / (norm + 1e-6)), u.maxNorm > 0.0);
    gate[2] = select(0.0, 1.0, isFinite(loss) && isFinite(norm));
    gate[3] = loss;
  }
}`;

/** ArlStepGate: {lossSum, t0..} -> gate [4] from the sums of squares of t0.. (see STEP_GATE). */
export function stepGateKernel(args: KernelArgs): tf.TensorInfo {
  const { count, maxNorm, lossDivisor, gradScale } = args.attrs as { count: number; maxNorm: number; lossDivisor: number; gradScale?: number };
  const partials = sumSquaresPartials(listed(args.inputs, count));
  const gate = allocate([4]);
  const uniforms: Uniform[] = [{ type: 'uint32', data: [count * SUM_SQUARES_GROUPS] }, { type: 'float32', data: [maxNorm] }, { type: 'float32', data: [lossDivisor] }, { type: 'float32', data: [gradScale ?? 1] }];
  dispatchRaw('ArlStepGate', STEP_GATE, [gate, partials, args.inputs.lossSum as tf.TensorInfo], uniforms, [1, 1, 1]);
  release(partials);
  return gate;
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

/** ArlAdamW: {param, grad, m, v, gate} -> nothing: param, m and v are updated in place, scaled and skipped by the gate. */
export function adamwKernel(args: KernelArgs): tf.TensorInfo[] {
  const { param, grad, m, v, gate } = args.inputs as Record<string, tf.TensorInfo>;
  const s = args.attrs as Record<string, number>;
  const size = tf.util.sizeFromShape(param.shape);
  const f = (x: number): Uniform => ({ type: 'float32', data: [x] });
  const uniforms: Uniform[] = [{ type: 'uint32', data: [size] }, f(s.lr), f(s.beta1), f(s.beta2), f(s.eps), f(s.decay), f(s.correction1), f(s.correction2)];
  dispatchRaw('ArlAdamW', ADAMW, [param, m, v, grad, gate], uniforms, grid(Math.ceil(size / 256)));
  return [];
}
