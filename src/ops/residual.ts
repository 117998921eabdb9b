/**
 * The residual stream's add. tfjs's Add keeps both inputs for its gradient (it needs their shapes for broadcasting),
 * which holds the attention and MLP outputs of every layer until the backward pass reaches them (1.5 GB at 1.1B
 * parameters, batch 4 x 1,024). Same-shaped inputs need nothing saved: the gradient is dy for both.
 */
import * as tf from '@tensorflow/tfjs';

/** a + b for same-shaped tensors, saving nothing for the gradient. */
export function residualAdd<T extends tf.Tensor>(a: T, b: T): T {
  if (!tf.util.arraysEqual(a.shape, b.shape)) throw new Error(`residualAdd takes same-shaped tensors (got ${JSON.stringify(a.shape)} and ${JSON.stringify(b.shape)})`);
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => ({
    value: tf.add(args[0] as tf.Tensor, args[1] as tf.Tensor),
    // Two handles on one buffer: each input's gradient may be freed on its own.
    gradFunc: (dy: tf.Tensor) => [dy, tf.clone(dy)],
  }));
  return op(a, b) as T;
}
