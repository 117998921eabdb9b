/**
 * Fused building blocks of the decoder with hand-written backward passes (tf.customGrad).
 *
 * Autodiff of the plain formulations is correct but expensive on the CPU backends: every
 * broadcasting multiply's gradient casts and reduces, each intermediate is saved (cloned), and
 * the attention's layout transposes and rotary tables are differentiated op by op. These
 * versions save only what the backward pass needs and compute the gradients with a handful of
 * element-wise ops and matmuls. Each is checked against autodiff of the plain formulation in
 * test/kernels.test.ts.
 *
 * Everything the gradient needs is passed to `save`: tensors merely captured by the closure are
 * disposed (the engine tidies the forward pass) before the backward pass runs. Only constants that
 * outlive the step (the model's rotate-half matrix) are captured.
 */
import * as tf from '@tensorflow/tfjs';
import { hasJsKernels } from './js/index.ts';
import { flashAttentionGpu, flashAttentionSupports } from './webgpu/flash-attention.ts';
import { hasWebgpuKernels } from './webgpu/index.ts';
import { rotaryGpu } from './webgpu/rotary.ts';
import { softmaxGradGpu, softmaxMaskedGpu } from './webgpu/softmax.ts';

type Saver = tf.GradSaveFunc;

/**
 * RMSNorm over the last axis: x / sqrt(mean(x^2) + eps) * weight. x [N, D], weight [D]. On wasm
 * and cpu one JS kernel each way (ArlRmsNorm, ArlRmsNormGrad); on webgpu our WGSL kernels
 * (webgpu-kernels.ts); elsewhere tfjs ops.
 */
export function rmsNorm(x: tf.Tensor2D, weight: tf.Tensor1D, eps: number): tf.Tensor2D {
  if (hasWebgpuKernels()) {
    const fused = tf.customGrad((...args: (tf.Tensor | Saver)[]) => {
      const [xIn, w] = args as tf.Tensor[];
      const save = args[2] as Saver;
      const [value, inv] = tf.engine().runKernel('ArlGpuRmsNorm', { x: xIn, weight: w }, { eps }) as tf.Tensor[];
      save([xIn, w, inv]);
      return {
        value,
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
          const [dx, partials] = tf.engine().runKernel('ArlGpuRmsNormGrad', { x: saved[0], weight: saved[1], inv: saved[2], dy }) as tf.Tensor[];
          return [dx, tf.sum(partials, 0)];
        },
      };
    });
    return fused(x, weight) as tf.Tensor2D;
  }
  if (hasJsKernels()) {
    const fused = tf.customGrad((...args: (tf.Tensor | Saver)[]) => {
      const [xIn, w] = args as tf.Tensor[];
      const save = args[2] as Saver;
      save([xIn, w]);
      return {
        value: tf.engine().runKernel('ArlRmsNorm', { x: xIn, weight: w }, { eps }) as tf.Tensor,
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.engine().runKernel('ArlRmsNormGrad', { x: saved[0], weight: saved[1], dy }, { eps }) as tf.Tensor[],
      };
    });
    return fused(x, weight) as tf.Tensor2D;
  }
  return rmsNormOps(x, weight, eps);
}

/** rmsNorm with tfjs ops (backends without our JS kernels). */
export function rmsNormOps(x: tf.Tensor2D, weight: tf.Tensor1D, eps: number): tf.Tensor2D {
  const op = tf.customGrad((...args: (tf.Tensor | Saver)[]) => {
    const [xIn, w] = args as tf.Tensor[];
    const save = args[2] as Saver;
    const inv = tf.rsqrt(tf.add(tf.mean(tf.square(xIn), -1, true), eps)); // [N, 1]
    const value = tf.mul(tf.mul(xIn, inv), w);
    save([xIn, w, inv]);
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xs, ws, r] = saved;
        const xhat = tf.mul(xs, r);
        const dw = tf.sum(tf.mul(dy, xhat), 0);
        const g = tf.mul(dy, ws); // d loss / d xhat
        // d xhat_i / d x_j = r (delta_ij - xhat_i xhat_j / D)
        const dx = tf.mul(tf.sub(g, tf.mul(xhat, tf.mean(tf.mul(g, xhat), -1, true))), r);
        return [dx, dw];
      },
    };
  });
  return op(x, weight) as tf.Tensor2D;
}

/** SwiGLU: silu(gate) * up, element-wise (one WGSL kernel each way on webgpu). */
export function swiglu(gate: tf.Tensor2D, up: tf.Tensor2D): tf.Tensor2D {
  if (hasWebgpuKernels()) {
    const fused = tf.customGrad((...args: (tf.Tensor | Saver)[]) => {
      const [g, u] = args as tf.Tensor[];
      const save = args[2] as Saver;
      save([g, u]);
      return {
        value: tf.engine().runKernel('ArlGpuSwiGlu', { gate: g, up: u }) as tf.Tensor,
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.engine().runKernel('ArlGpuSwiGluGrad', { gate: saved[0], up: saved[1], dy }) as tf.Tensor[],
      };
    });
    return fused(gate, up) as tf.Tensor2D;
  }
  return swigluOps(gate, up);
}

/** swiglu with tfjs ops (and the reference the fused kernels are tested against). */
export function swigluOps(gate: tf.Tensor2D, up: tf.Tensor2D): tf.Tensor2D {
  const op = tf.customGrad((...args: (tf.Tensor | Saver)[]) => {
    const [g, u] = args as tf.Tensor[];
    const save = args[2] as Saver;
    const sig = tf.sigmoid(g);
    const silu = tf.mul(g, sig);
    const value = tf.mul(silu, u);
    save([g, u, sig]);
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [gs, us, s] = saved;
        const dUp = tf.mul(dy, tf.mul(gs, s));
        // silu'(g) = s + g s (1 - s) = s (1 + g (1 - s))
        const dSilu = tf.mul(s, tf.add(1, tf.mul(gs, tf.sub(1, s))));
        const dGate = tf.mul(tf.mul(dy, us), dSilu);
        return [dGate, dUp];
      },
    };
  });
  return op(gate, up) as tf.Tensor2D;
}

/** Shapes and constants of one causal self-attention call. */
export interface AttentionSpec {
  batch: number;
  seq: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  /** Rotary tables for positions start..start+seq-1, [seq, headDim] (HF "rotate half" layout). */
  cos: tf.Tensor2D;
  sin: tf.Tensor2D;
  /** R with x @ R = rotate_half(x), [headDim, headDim]; R^T = -R. */
  rotate: tf.Tensor2D;
  /** Additive mask [groups*seq, seq]: 0 where visible, a large negative number elsewhere. */
  mask: tf.Tensor2D;
  /** The sliding window the mask was built with (null: none). Given, webgpu takes flash attention (no mask needed). */
  window?: number | null;
}

/** [B*T, n*hd] -> [B, n, T, hd] */
function toHeads(flat: tf.Tensor, s: AttentionSpec, n: number): tf.Tensor4D {
  return tf.transpose(tf.reshape(flat, [s.batch, s.seq, n, s.headDim]), [0, 2, 1, 3]);
}

/** [B, n, T, hd] -> [B*T, n*hd] */
function fromHeads(heads: tf.Tensor, s: AttentionSpec, n: number): tf.Tensor2D {
  return tf.reshape(tf.transpose(tf.reshape(heads, [s.batch, n, s.seq, s.headDim]), [0, 2, 1, 3]), [s.batch * s.seq, n * s.headDim]);
}

/** Rotary position embedding on [B, n, T, hd]: t*cos + rotate_half(t)*sin (on webgpu one kernel without autodiff: callers give the gradient, as causalSelfAttention does). */
export function applyRotary(t: tf.Tensor4D, cos: tf.Tensor2D, sin: tf.Tensor2D, rotate: tf.Tensor2D): tf.Tensor4D {
  if (hasWebgpuKernels()) return rotaryGpu(t, cos, sin, false);
  const hd = t.shape[3];
  const rotated = tf.reshape(tf.matMul(tf.reshape(t, [-1, hd]), rotate), t.shape);
  return tf.add(tf.mul(t, cos), tf.mul(rotated, sin));
}

/** Transpose of applyRotary: dt = dy*cos + (dy*sin) @ R^T = dy*cos - (dy*sin) @ R. */
function rotaryBackward(dy: tf.Tensor4D, cos: tf.Tensor2D, sin: tf.Tensor2D, rotate: tf.Tensor2D): tf.Tensor4D {
  if (hasWebgpuKernels()) return rotaryGpu(dy, cos, sin, true);
  const hd = dy.shape[3];
  const back = tf.reshape(tf.matMul(tf.reshape(tf.mul(dy, sin), [-1, hd]), rotate), dy.shape);
  return tf.sub(tf.mul(dy, cos), back);
}

/**
 * Causal grouped-query self-attention with rotary positions, from the projections to the merged
 * heads: q [B*T, H*hd], k and v [B*T, KV*hd] -> [B*T, H*hd]. See causalSelfAttention.
 */
export function causalAttention(q: tf.Tensor2D, k: tf.Tensor2D, v: tf.Tensor2D, s: AttentionSpec): tf.Tensor2D {
  return causalSelfAttention(tf.concat([q, k, v], 1), s);
}

/**
 * Whether webgpu attention takes the flash kernels: ARL_FLASH_ATTENTION=1 always, =0 never, and by default only
 * where no gradient is being taken (scoring, evaluation, prefill). On the H200 (docs/benchmarks.md, 09:32 run,
 * 29.4M model, T 512) their forward beats the materialised path (280k vs 237k tokens/s) but their backward
 * does not (a training step 105.0 vs 100.5 ms).
 */
function takesFlashAttention(headDim: number): boolean {
  const flag = process.env.ARL_FLASH_ATTENTION;
  if (flag === '0' || !flashAttentionSupports(headDim)) return false;
  return flag === '1' || !(tf.engine() as unknown as { isTapeOn(): boolean }).isTapeOn();
}

/**
 * Causal grouped-query self-attention with rotary positions on the fused projection
 * qkv [B*T, (H + 2 KV)*hd] (queries, then keys, then values, each head-major) -> [B*T, H*hd].
 * One layout transpose in and one out each way; rotary is applied to queries and keys together.
 * The G = H/KV query heads sharing a KV head are folded into the query-length axis
 * ([B, KV, G*T, hd]) so one batched matmul serves the group and K/V are never copied per head.
 * On webgpu (with the window given) flash attention's kernels instead where takesFlashAttention says so.
 */
export function causalSelfAttention(qkv: tf.Tensor2D, s: AttentionSpec): tf.Tensor2D {
  if (hasWebgpuKernels() && s.window !== undefined && takesFlashAttention(s.headDim)) {
    const { batch, seq, heads, kvHeads, headDim, window } = s;
    return flashAttentionGpu(qkv, s.cos, s.sin, { batch, seq, heads, kvHeads, headDim, window });
  }
  const { batch, seq, heads, kvHeads, headDim, cos, sin, rotate, mask } = s;
  const groups = heads / kvHeads;
  const scale = 1 / Math.sqrt(headDim);
  const n = heads + 2 * kvHeads;
  const op = tf.customGrad((...args: (tf.Tensor | Saver)[]) => {
    const [qkvIn] = args as tf.Tensor[];
    const save = args[1] as Saver;
    const all = toHeads(qkvIn, s, n); // [B, H + 2 KV, T, hd]
    const qk = applyRotary(tf.slice(all, [0, 0, 0, 0], [batch, heads + kvHeads, seq, headDim]), cos, sin, rotate);
    const qh = tf.reshape(tf.mul(tf.slice(qk, [0, 0, 0, 0], [batch, heads, seq, headDim]), scale), [batch, kvHeads, groups * seq, headDim]);
    const kh = tf.slice(qk, [0, heads, 0, 0], [batch, kvHeads, seq, headDim]);
    const vh = tf.slice(all, [0, heads + kvHeads, 0, 0], [batch, kvHeads, seq, headDim]);
    const scores = tf.matMul(qh, kh, false, true); // [B, KV, G*T, T]
    const probs = hasWebgpuKernels() ? softmaxMaskedGpu(scores, mask) : tf.softmax(tf.add(scores, mask));
    const context = tf.matMul(probs, vh); // [B, KV, G*T, hd]
    const value = fromHeads(context, s, heads);
    save([qh, kh, vh, probs, cos, sin]);
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [qs, ks, vs, p, cosSaved, sinSaved] = saved as [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D, tf.Tensor4D, tf.Tensor2D, tf.Tensor2D];
        const dContext = tf.reshape(toHeads(dy, s, heads), [batch, kvHeads, groups * seq, headDim]);
        const dv = tf.matMul(p, dContext, true, false); // [B, KV, T, hd]
        const dp = tf.matMul(dContext, vs, false, true); // [B, KV, G*T, T]
        const dScores = hasWebgpuKernels() ? softmaxGradGpu(p, dp) : tf.mul(p, tf.sub(dp, tf.sum(tf.mul(dp, p), -1, true)));
        const dqScaled = tf.matMul(dScores, ks); // gradient w.r.t. the scaled, rotated queries
        const dkRot = tf.matMul(dScores, qs, true, false); // [B, KV, T, hd]
        const dqRot = tf.mul(tf.reshape(dqScaled, [batch, heads, seq, headDim]), scale);
        const dqk = rotaryBackward(tf.concat([dqRot, dkRot], 1) as tf.Tensor4D, cosSaved, sinSaved, rotate);
        return [fromHeads(tf.concat([dqk, dv], 1), s, n)];
      },
    };
  });
  return op(qkv) as tf.Tensor2D;
}
