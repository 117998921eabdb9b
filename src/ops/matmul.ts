/**
 * The model's large products: the projections and the LM head. In fp32 (the default) they are
 * tf.matMul. Under mixed precision (setMatmulPrecision('mixed'), only after the start-up
 * self-check has passed: src/train/precision.ts) each operand is cast once to f16 (ArlToF16) and
 * the products run on the tensor cores with f32 accumulation (ArlMatMulF16), forward and both
 * gradients alike, where the backend registers them and M, N and K are multiples of 16 (the
 * kernel's tile edge); other shapes stay f32. The forward's f16 operands are kept for the
 * gradient's products, so a step casts each weight and activation once and each gradient once.
 * batchedProduct serves attention's batched products.
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

/** Whether products over these sizes run in mixed precision now. */
function mixedSizes(sizes: number[]): boolean {
  return precision === 'mixed' && hasKernel('ArlMatMulF16') && sizes.every((d) => d % 16 === 0);
}

/** Whether a product of these operands (matrices, or batches of them) runs in mixed precision now. */
export function runsMixed(a: tf.Tensor, b: tf.Tensor): boolean {
  return mixedSizes([...a.shape.slice(-2), ...b.shape.slice(-2)]);
}

/** Whether batched products over these sizes (attention's) run in mixed precision now; ARL_MIXED_ATTENTION=0 keeps them f32. */
export function batchedRunsMixed(...sizes: number[]): boolean {
  return mixedAttention() && mixedSizes(sizes);
}

/** x [..., rows, cols] as an operand of the tensor-core products: f16, two per int32 word, [..., rows, cols / 2]. */
export function toHalf(x: tf.Tensor): tf.Tensor {
  return tf.engine().runKernel('ArlToF16', { x }) as tf.Tensor;
}

const halfProduct = <T extends tf.Tensor = tf.Tensor2D>(a: tf.Tensor, b: tf.Tensor, transposeA: boolean, transposeB: boolean, hint?: CausalHint): T =>
  tf.engine().runKernel('ArlMatMulF16', { a, b }, { transposeA, transposeB, ...hint }) as T;

/** op(a) op(b) of 2-D tensors, op transposing where asked, in the precision set. */
export function matmul(a: tf.Tensor2D, b: tf.Tensor2D, transposeA = false, transposeB = false): tf.Tensor2D {
  if (!runsMixed(a, b)) return tf.matMul(a, b, transposeA, transposeB);
  const op = tf.customGrad((...args: (tf.Tensor | Saver)[]) => {
    const [x16, y16] = (args.slice(0, 2) as tf.Tensor[]).map(toHalf);
    (args[2] as Saver)([x16, y16]);
    return {
      value: halfProduct(x16, y16, transposeA, transposeB),
      // The gradients are products of the same three sizes, so they run mixed too, on the saved f16 operands.
      gradFunc: (dy: tf.Tensor, [xs, ys]: tf.Tensor[]) => {
        const dy16 = toHalf(dy);
        const grads = [
          transposeA ? halfProduct(ys, dy16, transposeB, true) : halfProduct(dy16, ys, false, !transposeB),
          transposeB ? halfProduct(dy16, xs, true, transposeA) : halfProduct(xs, dy16, !transposeA, false),
        ];
        // Freed now rather than when the whole backward pass ends (the engine's later dispose of them is a no-op).
        tf.dispose([dy16, xs, ys]);
        return grads;
      },
    };
  });
  return op(a, b) as tf.Tensor2D;
}

/**
 * Which of causal attention's batched products this is, so that a kernel may skip what causality makes zero (a hint:
 * the full product is the same). The G*T side's rows are tokens t = row % seq of G query heads; t sees keys j <= t.
 * - scores: [G*T, T] outputs (q k^T, dO v^T); their tiles wholly above the diagonal may be left zero.
 * - queries: [G*T, T] x [T, x] (p v, dS k); the first operand is zero above the diagonal, so a row's sum stops at its token.
 * - keys: [G*T, T]^T x [G*T, x] (p^T dO, dS^T q); the same zeros, so a key's sum starts at its own token.
 */
export type CausalProduct = 'scores' | 'queries' | 'keys';
export interface CausalHint {
  causal: CausalProduct;
  seq: number;
}

/**
 * Whether an m x k by k x n product has the shape `hint` says, with output tiles of `rows` rows and K taken `step` at a
 * time lying within one query head's rows: then a kernel may skip as the hint says.
 */
export function causalSkips(hint: Partial<CausalHint>, rows: number, step: number, m: number, n: number, k: number): hint is CausalHint {
  const { causal, seq } = hint;
  if (causal === undefined || seq === undefined || seq % rows !== 0 || seq % step !== 0) return false;
  if (causal === 'scores') return n === seq && m % seq === 0;
  if (causal === 'queries') return k === seq && m % seq === 0;
  return m === seq && k % seq === 0;
}

/**
 * op(a) op(b) over leading batch axes (the same in both), with no gradient of its own: for the products inside a
 * custom gradient (attention's scores and context, and their gradients). f32 operands multiply in f32; f16 ones (both
 * from toHalf, where batchedRunsMixed holds) on the tensor cores, so an operand used twice is cast once. Given `hint`,
 * our webgpu kernels skip causal attention's zeros.
 */
export function batchedProduct<T extends tf.Tensor>(a: T, b: T, transposeA = false, transposeB = false, hint?: CausalHint): T {
  if (a.dtype !== 'int32' && b.dtype !== 'int32') return tf.engine().runKernel('BatchMatMul', { a, b }, { transposeA, transposeB, ...hint }) as T;
  const lead = a.shape.slice(0, -2);
  const stacked = (x: tf.Tensor): tf.Tensor3D => tf.reshape(x, [-1, x.shape[x.rank - 2], x.shape[x.rank - 1]]);
  const [a3, b3] = [stacked(a), stacked(b)];
  const out = halfProduct<tf.Tensor3D>(a3, b3, transposeA, transposeB, hint);
  const shaped = tf.reshape(out, [...lead, ...out.shape.slice(-2)]) as unknown as T;
  tf.dispose([a3, b3, out]);
  return shaped;
}
