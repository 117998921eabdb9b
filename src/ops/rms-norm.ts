/**
 * RMSNorm over the last axis with a hand-written gradient: one kernel each way (ArlRmsNorm,
 * ArlRmsNormGrad) where the backend has them (webgpu, wasm, cpu), tfjs ops elsewhere. And the
 * residual add with its norm in one kernel for decoding (ArlAddRmsNorm).
 *
 * Everything the gradient needs is passed to `save`: tensors merely captured by the closure are
 * disposed (the engine tidies the forward pass) before the backward pass runs.
 */
import * as tf from '@tensorflow/tfjs';
import { hasKernel } from './registry.ts';

type Saver = tf.GradSaveFunc;

/** x / sqrt(mean(x^2) + eps) * weight over the last axis. x [N, D], weight [D]. */
export function rmsNorm(x: tf.Tensor2D, weight: tf.Tensor1D, eps: number): tf.Tensor2D {
  if (!hasKernel('ArlRmsNorm')) return rmsNormOps(x, weight, eps);
  const fused = tf.customGrad((...args: (tf.Tensor | Saver)[]) => {
    const [xIn, w] = args as tf.Tensor[];
    const save = args[2] as Saver;
    const [value, inv] = tf.engine().runKernel('ArlRmsNorm', { x: xIn, weight: w }, { eps }) as tf.Tensor[];
    save([xIn, w, inv]);
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        // dw comes whole [D], or as partial sums over chunks of rows [chunks, D] (webgpu).
        const [dx, dw] = tf.engine().runKernel('ArlRmsNormGrad', { x: saved[0], weight: saved[1], inv: saved[2], dy }, { eps }) as tf.Tensor[];
        return [dx, dw.rank === 1 ? dw : tf.sum(dw, 0)];
      },
    };
  });
  return fused(x, weight) as tf.Tensor2D;
}

/** rmsNorm with tfjs ops (backends without our kernels, and the reference the kernels are tested against). */
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

/** [x + residual, rmsNorm(x + residual) * weight] for [N, D] inputs, without gradients (decoding). */
export function addRmsNorm(x: tf.Tensor2D, residual: tf.Tensor2D, weight: tf.Tensor1D, eps: number): [tf.Tensor2D, tf.Tensor2D] {
  if (!hasKernel('ArlAddRmsNorm')) {
    const sum = tf.add(x, residual) as tf.Tensor2D;
    return [sum, rmsNorm(sum, weight, eps)];
  }
  return tf.engine().runKernel('ArlAddRmsNorm', { x, residual, weight }, { eps }) as unknown as [tf.Tensor2D, tf.Tensor2D];
}
