/**
 * The optimizer's kernels on webgpu: the gradients' sums of squares (ArlSumSquares, for the global
 * norm), the step gate (ArlStepGate: norm, clip scale and finiteness decided on the GPU), and the
 * AdamW update of one variable in place (ArlAdamW).
 */
import * as tf from '@tensorflow/tfjs';
import { allocate, builtins, dispatchRaw, flatIndex, grid, release, type Uniform, WG_SUM } from './runtime.ts';

type KernelArgs = { inputs: tf.NamedTensorInfoMap; attrs?: tf.NamedAttrMap };

/** Each invocation sums at least this many loads (vec4 where the size allows) before the workgroup reduction. */
const LOADS_PER_INVOCATION = 8;
/** At most this many workgroups per tensor: enough to keep an H100's memory busy on a 1.1B model's largest gradients. */
const MAX_SUM_SQUARES_GROUPS = 1024;

/** How a memory-bound kernel reads t: as vec4s where its size allows, and how many reads (of vec4s or of floats) that is. */
function accesses(t: tf.TensorInfo): { vec4: boolean; size: number } {
  const elements = tf.util.sizeFromShape(t.shape);
  const vec4 = elements % 4 === 0;
  return { vec4, size: vec4 ? elements / 4 : elements };
}

/**
 * partials[offset + workgroup] = part of sum(x^2), the workgroups striding over x (as vec4 where its length allows).
 * With one small fixed grid of 64 workgroups, the gradient norm of a 1.1B model took 30 ms of an H100's step.
 */
const sumSquaresShader = (vec4: boolean): string => `
@group(0) @binding(0) var<storage, read_write> partials: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<${vec4 ? 'vec4<f32>' : 'f32'}>;
struct U { size: u32, offset: u32 };
@group(0) @binding(2) var<uniform> u: U;
${WG_SUM}
@compute @workgroup_size(256) fn main(${builtins}) {
  var acc = 0.0;
  for (var i = wid.x * 256u + lid; i < u.size; i += nwg.x * 256u) { let v = x[i]; acc += ${vec4 ? 'dot(v, v)' : 'v * v'}; }
  let total = workgroupSum(acc, lid);
  if (lid == 0u) { partials[u.offset + wid.x] = total; }
}`;
const SUM_SQUARES_VEC4 = sumSquaresShader(true);
const SUM_SQUARES_SCALAR = sumSquaresShader(false);

/** Parts of the sums of squares of `tensors` (one dispatch per tensor, each part one workgroup's) and how many. */
function sumSquaresPartials(tensors: tf.TensorInfo[]): { partials: tf.TensorInfo; count: number } {
  const plans = tensors.map((t) => {
    const { vec4, size } = accesses(t);
    return { t, vec4, size, groups: Math.min(MAX_SUM_SQUARES_GROUPS, Math.max(1, Math.ceil(size / (256 * LOADS_PER_INVOCATION)))) };
  });
  const count = plans.reduce((n, p) => n + p.groups, 0);
  const partials = allocate([count]);
  let offset = 0;
  for (const { t, vec4, size, groups } of plans) {
    const uniforms: Uniform[] = [{ type: 'uint32', data: [size] }, { type: 'uint32', data: [offset] }];
    dispatchRaw('ArlSumSquares', vec4 ? SUM_SQUARES_VEC4 : SUM_SQUARES_SCALAR, [partials, t], uniforms, [groups, 1, 1]);
    offset += groups;
  }
  return { partials, count };
}

/** The many-input kernels take their tensors as t0, t1, ... (count in the attributes). */
const listed = (inputs: tf.NamedTensorInfoMap, count: number): tf.TensorInfo[] => Array.from({ length: count }, (_, i) => inputs[`t${i}`] as tf.TensorInfo);

/** ArlSumSquares: {t0..} -> parts of their sums of squares, summing to the total (one dispatch per tensor). */
export function sumSquaresKernel(args: KernelArgs): tf.TensorInfo {
  const { count } = args.attrs as { count: number };
  return sumSquaresPartials(listed(args.inputs, count)).partials;
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
  const { partials, count: parts } = sumSquaresPartials(listed(args.inputs, count));
  const gate = allocate([4]);
  const uniforms: Uniform[] = [{ type: 'uint32', data: [parts] }, { type: 'float32', data: [maxNorm] }, { type: 'float32', data: [lossDivisor] }, { type: 'float32', data: [gradScale ?? 1] }];
  dispatchRaw('ArlStepGate', STEP_GATE, [gate, partials, args.inputs.lossSum as tf.TensorInfo], uniforms, [1, 1, 1]);
  release(partials);
  return gate;
}

/** AdamW on p, m, v in place from g, scaled and skipped by the gate; as vec4s where the size allows (memory-bound: one 16-byte access a buffer). */
const adamwShader = (vec4: boolean): string => {
  const element = vec4 ? 'vec4<f32>' : 'f32';
  return `
@group(0) @binding(0) var<storage, read_write> p: array<${element}>;
@group(0) @binding(1) var<storage, read_write> m: array<${element}>;
@group(0) @binding(2) var<storage, read_write> v: array<${element}>;
@group(0) @binding(3) var<storage, read> g: array<${element}>;
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
};
const ADAMW_VEC4 = adamwShader(true);
const ADAMW_SCALAR = adamwShader(false);

/** ArlAdamW: {param, grad, m, v, gate} -> nothing: param, m and v are updated in place, scaled and skipped by the gate. */
export function adamwKernel(args: KernelArgs): tf.TensorInfo[] {
  const { param, grad, m, v, gate } = args.inputs as Record<string, tf.TensorInfo>;
  const s = args.attrs as Record<string, number>;
  const { vec4, size } = accesses(param);
  const f = (x: number): Uniform => ({ type: 'float32', data: [x] });
  const uniforms: Uniform[] = [{ type: 'uint32', data: [size] }, f(s.lr), f(s.beta1), f(s.beta2), f(s.eps), f(s.decay), f(s.correction1), f(s.correction2)];
  dispatchRaw('ArlAdamW', vec4 ? ADAMW_VEC4 : ADAMW_SCALAR, [param, m, v, grad, gate], uniforms, grid(Math.ceil(size / 256)));
  return [];
}
