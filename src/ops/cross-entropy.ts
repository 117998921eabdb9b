/**
 * Sparse cross-entropy with a loss mask. Targets stay int ids: no one-hot over the vocabulary is
 * ever built. Where the backend has them, either two kernels over the logits (ArlCrossEntropy and
 * its gradient: webgpu) or two small kernels around tfjs's softmax that read the target's NLL off
 * it and subtract at the targets in the gradient (ArlTargetNll, ArlSubAtTargets: wasm and cpu);
 * elsewhere plain tfjs ops do it.
 */
import * as tf from '@tensorflow/tfjs';
import { hasKernel } from './registry.ts';

/** Mean negative log-likelihood over the rows where mask is 1. logits [N, V], targets int32 [N], mask float32 [N]. */
export function maskedCrossEntropy(logits: tf.Tensor2D, targets: tf.Tensor1D, mask: tf.Tensor1D): tf.Scalar {
  if (hasKernel('ArlCrossEntropy')) return logitsCrossEntropy(logits, targets, mask);
  return hasKernel('ArlTargetNll') ? softmaxCrossEntropy(logits, targets, mask) : composedCrossEntropy(logits, targets, mask);
}

/** Each row's share of the mean over the masked rows: mask / max(sum(mask), 1). */
function rowWeights(mask: tf.Tensor): tf.Tensor {
  return tf.div(mask, tf.maximum(tf.sum(mask), 1));
}

/**
 * ArlCrossEntropy writes each row's logsumexp and NLL, ArlCrossEntropyGrad the gradient (softmax
 * minus the target, scaled by the row's weight): one pass over [N, V] each way.
 */
function logitsCrossEntropy(logits: tf.Tensor2D, targets: tf.Tensor1D, mask: tf.Tensor1D): tf.Scalar {
  const lossFn = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [x, t, m] = args as tf.Tensor[];
    const save = args[3] as tf.GradSaveFunc;
    const weights = rowWeights(m);
    const [lse, nll] = crossEntropyRows(x as tf.Tensor2D, t as tf.Tensor1D);
    const value = tf.sum(tf.mul(nll, weights)) as tf.Scalar;
    save([x, lse, t, weights]);
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [savedLogits, savedLse, targetIds, savedWeights] = saved;
        const dLogits = tf.engine().runKernel('ArlCrossEntropyGrad', { logits: savedLogits, lse: savedLse, targets: targetIds, weights: savedWeights, dy }) as tf.Tensor;
        return [dLogits, tf.zerosLike(t), tf.zerosLike(m)];
      },
    };
  });
  return lossFn(logits, targets, mask) as tf.Scalar;
}

/**
 * One softmax (XNNPACK's on wasm), the target's NLL read off the probabilities (ArlTargetNll), and
 * a gradient that is the probabilities scaled per row with the weight taken off at the target
 * (ArlSubAtTargets): two passes over [N, V] beyond the softmax.
 */
function softmaxCrossEntropy(logits: tf.Tensor2D, targets: tf.Tensor1D, mask: tf.Tensor1D): tf.Scalar {
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

/** Per-row [logsumexp, NLL of the target] of logits [N, V] for int32 targets [N] (ArlCrossEntropy; no gradient). */
function crossEntropyRows(logits: tf.Tensor2D, targets: tf.Tensor1D): [tf.Tensor1D, tf.Tensor1D] {
  return tf.engine().runKernel('ArlCrossEntropy', { logits, targets }) as unknown as [tf.Tensor1D, tf.Tensor1D];
}

/** Per-token log-probability of each target, [N] (used by evaluation and key-token scoring; through the kernel no gradient). */
export function targetLogProbs(logits: tf.Tensor2D, targets: tf.Tensor1D): tf.Tensor1D {
  return tf.tidy(() => {
    if (hasKernel('ArlCrossEntropy')) return tf.neg(crossEntropyRows(logits, targets)[1]); // log p = -(lse - x[target])
    const [rows, vocab] = logits.shape;
    const logProbs = tf.logSoftmax(logits);
    const flatIndex = tf.add(tf.mul(tf.range(0, rows, 1, 'int32'), tf.scalar(vocab, 'int32')), targets);
    return tf.gather(tf.reshape(logProbs, [-1]), flatIndex) as tf.Tensor1D;
  });
}
