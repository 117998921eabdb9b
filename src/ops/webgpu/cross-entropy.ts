/**
 * Sparse cross-entropy for the webgpu backend in two WGSL kernels (ArlCrossEntropy and its gradient).
 *
 * Why: tfjs's ops take ~8 dispatches and several full [N, V] passes (max, sub, exp, sum, log,
 * gather forward; softmax again, mul, a dense scatterND into [N, V] and a sub backward: ~3 ms of
 * GPU time per step at N = V = 8192 on the H200, docs/benchmarks.md).
 * - Forward (1 dispatch, one workgroup per row): each invocation keeps an online max and sum over
 *   its strided share of the row, the workgroup combines the pairs, and writes the row's
 *   logsumexp [N] and NLL [N] = lse - x[target]. One read of the logits.
 * - Backward (1 dispatch, element-wise): dx[r, j] = (exp(x[r, j] - lse[r]) - (j == target[r])) *
 *   weight[r] * dy. One read, one write; no one-hot and no second softmax.
 *
 * Checked against the tfjs formulation, values and gradients, in test/webgpu-cross-entropy.test.ts.
 */
import * as tf from '@tensorflow/tfjs';
import { allocate, builtins, dispatchRaw, flatIndex, grid, type Uniform } from './runtime.ts';

const CROSS_ENTROPY = `
@group(0) @binding(0) var<storage, read_write> lse: array<f32>;
@group(0) @binding(1) var<storage, read_write> nll: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> targets: array<i32>;
struct U { rows: u32, vocab: u32 };
@group(0) @binding(4) var<uniform> u: U;
var<workgroup> maxes: array<f32, 256>;
var<workgroup> sums: array<f32, 256>;
@compute @workgroup_size(256) fn main(${builtins}) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= u.rows) { return; }
  let base = row * u.vocab;
  // Online softmax denominator: s is the sum of exp(x - m) over what this invocation has seen.
  var m = -3.402823e38;
  var s = 0.0;
  for (var j = lid; j < u.vocab; j += 256u) {
    let v = x[base + j];
    if (v > m) { s = s * exp(m - v) + 1.0; m = v; } else { s += exp(v - m); }
  }
  maxes[lid] = m;
  sums[lid] = s;
  workgroupBarrier();
  for (var stride = 128u; stride > 0u; stride = stride >> 1u) {
    if (lid < stride) {
      let ma = maxes[lid];
      let mb = maxes[lid + stride];
      let mm = max(ma, mb);
      sums[lid] = sums[lid] * exp(ma - mm) + sums[lid + stride] * exp(mb - mm);
      maxes[lid] = mm;
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    let l = maxes[0] + log(sums[0]);
    lse[row] = l;
    nll[row] = l - x[base + u32(targets[row])];
  }
}`;

const CROSS_ENTROPY_GRAD = `
@group(0) @binding(0) var<storage, read_write> dx: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> lse: array<f32>;
@group(0) @binding(3) var<storage, read> targets: array<i32>;
@group(0) @binding(4) var<storage, read> weights: array<f32>;
@group(0) @binding(5) var<storage, read> dy: array<f32>;
struct U { size: u32, vocab: u32 };
@group(0) @binding(6) var<uniform> u: U;
@compute @workgroup_size(256) fn main(${builtins}) {
  let idx = ${flatIndex(256)};
  if (idx >= u.size) { return; }
  let row = idx / u.vocab;
  let atTarget = select(0.0, 1.0, idx - row * u.vocab == u32(targets[row]));
  dx[idx] = (exp(x[idx] - lse[row]) - atTarget) * weights[row] * dy[0];
}`;

export function crossEntropyKernel(args: { inputs: tf.NamedTensorInfoMap }): tf.TensorInfo[] {
  const { logits, targets } = args.inputs as Record<string, tf.TensorInfo>;
  const [rows, vocab] = logits.shape;
  const lse = allocate([rows]);
  const nll = allocate([rows]);
  const uniforms: Uniform[] = [rows, vocab].map((v) => ({ type: 'uint32', data: [v] }));
  dispatchRaw('ArlCrossEntropy', CROSS_ENTROPY, [lse, nll, logits, targets], uniforms, grid(rows));
  return [lse, nll];
}

export function crossEntropyGradKernel(args: { inputs: tf.NamedTensorInfoMap }): tf.TensorInfo {
  const { logits, lse, targets, weights, dy } = args.inputs as Record<string, tf.TensorInfo>;
  const [rows, vocab] = logits.shape;
  const size = rows * vocab;
  const dx = allocate([rows, vocab]);
  const uniforms: Uniform[] = [size, vocab].map((v) => ({ type: 'uint32', data: [v] }));
  dispatchRaw('ArlCrossEntropyGrad', CROSS_ENTROPY_GRAD, [dx, logits, lse, targets, weights, dy], uniforms, grid(Math.ceil(size / 256)));
  return dx;
}
