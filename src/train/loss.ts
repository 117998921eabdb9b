/**
 * Sparse cross-entropy with a loss mask. Targets stay int ids: no one-hot over the vocabulary is
 * ever built. On wasm and cpu two small JS kernels (model/wasm-kernels.ts) read the target's NLL
 * off the softmax and subtract at the targets in the gradient; on webgpu two WGSL kernels
 * (model/webgpu-cross-entropy.ts); elsewhere plain tfjs ops do it.
 */
import * as tf from '@tensorflow/tfjs';
import type { LlamaModel } from '../model/llama.ts';
import { hasJsKernels } from '../ops/js/index.ts';
import { crossEntropyGradGpu, crossEntropyRowsGpu } from '../ops/webgpu/cross-entropy.ts';
import { hasWebgpuKernels } from '../ops/webgpu/index.ts';

/** Mean negative log-likelihood over the rows where mask is 1. logits [N, V], targets int32 [N], mask float32 [N]. */
export function maskedCrossEntropy(logits: tf.Tensor2D, targets: tf.Tensor1D, mask: tf.Tensor1D): tf.Scalar {
  if (hasWebgpuKernels()) return gpuCrossEntropy(logits, targets, mask);
  return hasJsKernels() ? fusedCrossEntropy(logits, targets, mask) : composedCrossEntropy(logits, targets, mask);
}

/** Each row's share of the mean over the masked rows: mask / max(sum(mask), 1). */
function rowWeights(mask: tf.Tensor): tf.Tensor {
  return tf.div(mask, tf.maximum(tf.sum(mask), 1));
}

/**
 * With our WGSL kernels (webgpu): one dispatch writes each row's logsumexp and NLL, one writes
 * the gradient (softmax minus the target, scaled by the row's weight): one pass over [N, V] each way.
 */
function gpuCrossEntropy(logits: tf.Tensor2D, targets: tf.Tensor1D, mask: tf.Tensor1D): tf.Scalar {
  const lossFn = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [x, t, m] = args as tf.Tensor[];
    const save = args[3] as tf.GradSaveFunc;
    const weights = rowWeights(m);
    const [lse, nll] = crossEntropyRowsGpu(x as tf.Tensor2D, t as tf.Tensor1D);
    const value = tf.sum(tf.mul(nll, weights)) as tf.Scalar;
    save([x, lse, t, weights]);
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [savedLogits, savedLse, targetIds, savedWeights] = saved;
        return [crossEntropyGradGpu(savedLogits, savedLse, targetIds, savedWeights, dy), tf.zerosLike(t), tf.zerosLike(m)];
      },
    };
  });
  return lossFn(logits, targets, mask) as tf.Scalar;
}

/**
 * With our JS kernels (wasm, cpu): one softmax (XNNPACK's on wasm), the target's NLL read off the
 * probabilities, and a gradient that is the probabilities scaled per row with the weight taken
 * off at the target: two passes over [N, V] beyond the softmax.
 */
function fusedCrossEntropy(logits: tf.Tensor2D, targets: tf.Tensor1D, mask: tf.Tensor1D): tf.Scalar {
  const lossFn = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [x, t, m] = args as tf.Tensor[];
    const save = args[3] as tf.GradSaveFunc;
    const [rows, vocab] = x.shape;
    const weights = rowWeights(m);
    const probs = tf.softmax(x);
    const nll = tf.engine().runKernel('ArlTargetNll', { probs, logits: x, targets: t }, { vocab }) as tf.Tensor1D;
    const value = tf.sum(tf.mul(nll, weights)) as tf.Scalar;
    save([probs, weights, t]);
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [p, w, targetIds] = saved;
        const scaledWeights = tf.mul(w, dy);
        const scaled = tf.mul(p, tf.reshape(scaledWeights, [rows, 1]));
        const dLogits = tf.engine().runKernel('ArlSubAtTargets', { x: scaled, targets: targetIds, amount: scaledWeights }) as tf.Tensor;
        return [dLogits, tf.zerosLike(t), tf.zerosLike(m)];
      },
    };
  });
  return lossFn(logits, targets, mask) as tf.Scalar;
}

/** Plain tfjs ops (other backends): targets stay int ids, no one-hot over the vocabulary is built. */
export function composedCrossEntropy(logits: tf.Tensor2D, targets: tf.Tensor1D, mask: tf.Tensor1D): tf.Scalar {
  // Everything the gradient needs is computed in the forward and saved: tensors merely captured
  // by the closure would be disposed before the backward pass runs.
  const lossFn = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [x, t, m] = args as tf.Tensor[];
    const save = args[3] as tf.GradSaveFunc;
    const [rows, vocab] = x.shape;
    const rowIds = tf.range(0, rows, 1, 'int32');
    const flatIndex = tf.add(tf.mul(rowIds, tf.scalar(vocab, 'int32')), t);
    const weights = rowWeights(m);
    const shifted = tf.sub(x, tf.max(x, 1, true));
    const logSumExp = tf.log(tf.sum(tf.exp(shifted), 1));
    const picked = tf.gather(tf.reshape(shifted, [-1]), flatIndex);
    const value = tf.sum(tf.mul(tf.sub(logSumExp, picked), weights)) as tf.Scalar;
    save([shifted, weights, tf.stack([rowIds, t], 1)]);
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [savedShifted, savedWeights, targetPairs] = saved;
        const probs = tf.softmax(savedShifted);
        const scaledWeights = tf.mul(savedWeights, dy);
        const atTargets = tf.scatterND(targetPairs, scaledWeights, [rows, vocab]);
        const dLogits = tf.sub(tf.mul(probs, tf.reshape(scaledWeights, [rows, 1])), atTargets);
        return [dLogits, tf.zerosLike(t), tf.zerosLike(m)];
      },
    };
  });
  return lossFn(logits, targets, mask) as tf.Scalar;
}

/** Per-token log-probability of each target, [N] (used by evaluation and key-token scoring; on webgpu no gradient). */
export function targetLogProbs(logits: tf.Tensor2D, targets: tf.Tensor1D): tf.Tensor1D {
  return tf.tidy(() => {
    if (hasWebgpuKernels()) return tf.neg(crossEntropyRowsGpu(logits, targets)[1]); // log p = -(lse - x[target])
    const [rows, vocab] = logits.shape;
    const logProbs = tf.logSoftmax(logits);
    const flatIndex = tf.add(tf.mul(tf.range(0, rows, 1, 'int32'), tf.scalar(vocab, 'int32')), targets);
    return tf.gather(tf.reshape(logProbs, [-1]), flatIndex) as tf.Tensor1D;
  });
}

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
