/** The global L2 norm of a list of tensors (gradient clipping). */
import * as tf from '@tensorflow/tfjs';
import { hasKernel } from './registry.ts';

/**
 * sqrt of the sum of squares of every element of `tensors`, a scalar: one sum-of-squares kernel
 * per tensor (ArlSumSquares, webgpu) and one sum, or tfjs ops summed by a chain of adds, not addN
 * (webgpu binds every addN input as a storage buffer, limit 8 per shader).
 */
export function globalNorm(tensors: tf.Tensor[]): tf.Scalar {
  if (!hasKernel('ArlSumSquares')) return tf.sqrt(sumAll(tensors.map((g) => tf.sum(tf.square(g))))) as tf.Scalar;
  const inputs: tf.NamedTensorMap = {};
  tensors.forEach((t, i) => (inputs[`t${i}`] = t));
  const partials = tf.engine().runKernel('ArlSumSquares', inputs, { count: tensors.length }) as tf.Tensor;
  return tf.tidy(() => tf.sqrt(tf.sum(partials)) as tf.Scalar);
}

/** Sum of same-shaped tensors by pairwise adds (safe on every backend, unlike a many-input addN). */
export function sumAll<T extends tf.Tensor>(tensors: T[]): T {
  return tf.tidy(() => tensors.reduce((a, b) => tf.add(a, b) as T));
}
