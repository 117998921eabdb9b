/**
 * The model's large products: the projections and the LM head. In fp32 (the default) they are
 * tf.matMul. Under mixed precision (setMatmulPrecision('mixed'), only after the start-up
 * self-check has passed: src/train/precision.ts) they run through ArlMatMulMixed, f16 operands
 * and f32 accumulation on the tensor cores, forward and both gradients alike, where the backend
 * registers it and M, N and K are multiples of 16 (the kernel's tile edge); other shapes stay f32.
 * batchedProduct does the same for attention's batched products.
 */
import * as tf from '@tensorflow/tfjs';
import { mixedAttention } from '../switches.ts';
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

/** Whether a product of these operands (matrices, or batches of them) runs in mixed precision now. */
export function runsMixed(a: tf.Tensor, b: tf.Tensor): boolean {
  return precision === 'mixed' && hasKernel('ArlMatMulMixed') && [...a.shape.slice(-2), ...b.shape.slice(-2)].every((d) => d % 16 === 0);
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

/**
 * op(a) op(b) over leading batch axes (the same in both), in the precision set, with no gradient of its own: for
 * the products inside a custom gradient (attention's scores and context, and their gradients). ARL_MIXED_ATTENTION=0
 * keeps them f32 under mixed precision.
 */
export function batchedProduct<T extends tf.Tensor>(a: T, b: T, transposeA = false, transposeB = false): T {
  if (!runsMixed(a, b) || !mixedAttention()) return tf.matMul(a, b, transposeA, transposeB) as unknown as T;
  const lead = a.shape.slice(0, -2);
  const stacked = (x: tf.Tensor): tf.Tensor3D => tf.reshape(x, [-1, x.shape[x.rank - 2], x.shape[x.rank - 1]]);
  const [a3, b3] = [stacked(a), stacked(b)];
  const out = mixedProduct(a3, b3, transposeA, transposeB);
  const shaped = tf.reshape(out, [...lead, ...out.shape.slice(-2)]) as unknown as T;
  tf.dispose([a3, b3, out]);
  return shaped;
}
