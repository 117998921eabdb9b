/** The model's next-token loss. */
import * as tf from '@tensorflow/tfjs';
import type { LlamaModel } from '../model/llama.ts';
import { maskedCrossEntropy } from '../ops/cross-entropy.ts';

/**
 * Next-token loss of the model on a batch: x, y are row-major [batch, seq] ids, y shifted by one; `weights`
 * ([batch, seq], optional) weighs each target: the loss is the weighted mean (task rows weigh answers only).
 */
export function languageModelLoss(model: LlamaModel, x: Int32Array, y: Int32Array, batch: number, seq: number, weights?: Float32Array): tf.Scalar {
  const logits = model.logits(tf.tensor2d(x, [batch, seq], 'int32'));
  const rows = batch * seq;
  const mask = weights ? tf.tensor1d(weights, 'float32') : tf.ones([rows]);
  return maskedCrossEntropy(tf.reshape(logits, [rows, -1]) as tf.Tensor2D, tf.tensor1d(y, 'int32'), mask as tf.Tensor1D);
}
