/**
 * The model's large products: the projections and the LM head. In fp32 (the default) they are
 * tf.matMul. Under mixed precision (setMatmulPrecision('mixed'), only after the start-up
 * self-check has passed: src/train/precision.ts) they run through ArlMatMulMixed, f16 operands
 * and f32 accumulation on the tensor cores, forward and both gradients alike, where the backend
 * registers it and M, N and K are multiples of 16 (the kernel's tile edge); other shapes stay f32.
 */
import * as tf from '@tensorflow/tfjs';
import { hasKernel } from './registry.ts';

export const PRECISIONS = ['fp32', 'mixed'] as const;
export type Precision = (typeof PRECISIONS)[number];

let precision: Precision = 'fp32';

/** Sets the precision of matmul(); 'mixed' only once the self-check has passed. */
export function setMatmulPrecision(p: Precision): void {
  precision = p;
}

export function matmulPrecision(): Precision {
  return precision;
}

type Saver = tf.GradSaveFunc;

/** Whether a product of these operands runs in mixed precision now. */
export function runsMixed(a: tf.Tensor2D, b: tf.Tensor2D): boolean {
  return precision === 'mixed' && hasKernel('ArlMatMulMixed') && [...a.shape, ...b.shape].every((d) => d % 16 === 0);
}

const mixedProduct = (a: tf.Tensor, b: tf.Tensor, transposeA: boolean, transposeB: boolean): tf.Tensor2D =>
  tf.engine().runKernel('ArlMatMulMixed', { a, b }, { transposeA, transposeB }) as tf.Tensor2D;

/** op(a) op(b) of 2-D tensors, op transposing where asked, in the precision set. */
export function matmul(a: tf.Tensor2D, b: tf.Tensor2D, transposeA = false, transposeB = false): tf.Tensor2D {
  if (!runsMixed(a, b)) return tf.matMul(a, b, transposeA, transposeB);
  const op = tf.customGrad((...args: (tf.Tensor | Saver)[]) => {
    const [x, y] = args as tf.Tensor[];
    (args[2] as Saver)([x, y]);
    return {
      value: mixedProduct(x, y, transposeA, transposeB),
      // The gradients are products of the same three sizes, so they run mixed too.
      gradFunc: (dy: tf.Tensor, [xs, ys]: tf.Tensor[]) => [
        transposeA ? mixedProduct(ys, dy, transposeB, true) : mixedProduct(dy, ys, false, !transposeB),
        transposeB ? mixedProduct(dy, xs, true, transposeA) : mixedProduct(xs, dy, !transposeA, false),
      ],
    };
  });
  return op(a, b) as tf.Tensor2D;
}
