/** Rotary position embedding (HF "rotate half" layout); one kernel each way where registered (webgpu). */
import * as tf from '@tensorflow/tfjs';
import { hasKernel } from './registry.ts';

/**
 * Rotary positions on t [B, n, T, hd] with tables cos, sin [T, hd]: t*cos + rotate_half(t)*sin,
 * where t @ rotate = rotate_half(t). `backward` applies the transpose, dt = dy*cos + (dy*sin) @ R^T
 * = dy*cos - (dy*sin) @ R. Not differentiable through the kernel: callers give the gradient, as
 * causalSelfAttention does.
 */
export function applyRotary(t: tf.Tensor4D, cos: tf.Tensor2D, sin: tf.Tensor2D, rotate: tf.Tensor2D, backward = false): tf.Tensor4D {
  if (hasKernel('ArlRotary')) return tf.engine().runKernel('ArlRotary', { x: t, cos, sin }, { backward }) as tf.Tensor4D;
  const hd = t.shape[3];
  if (backward) return tf.sub(tf.mul(t, cos), tf.reshape(tf.matMul(tf.reshape(tf.mul(t, sin), [-1, hd]), rotate), t.shape));
  const rotated = tf.reshape(tf.matMul(tf.reshape(t, [-1, hd]), rotate), t.shape);
  return tf.add(tf.mul(t, cos), tf.mul(rotated, sin));
}
