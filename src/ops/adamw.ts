/**
 * The AdamW update of one variable (ArlAdamW where registered: in place on webgpu, new tensors on
 * cpu; tfjs ops elsewhere), and the step gate: the gradient norm, clip scale and finiteness test
 * computed on the device (ArlStepGate, webgpu) so that the update is recorded without a readback
 * between backward and update (which would leave the GPU idle while the update is recorded).
 */
import * as tf from '@tensorflow/tfjs';
import { hasKernel } from './registry.ts';

export interface AdamWStep {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** Multiplier of the weights before the update: 1 - lr * weightDecay, or 1. */
  decay: number;
  correction1: number;
  correction2: number;
}

/** Whether the backend's AdamW takes a step gate (stepGate), which also skips non-finite steps. */
export function gatedUpdates(): boolean {
  return hasKernel('ArlStepGate');
}

/**
 * Gives `variable` a buffer of its own if another tensor shares it (tf.variable(t) and clones
 * share data), so writing it in place cannot change that tensor. A one-time copy per variable.
 */
function ownBuffer(variable: tf.Variable): void {
  if (tf.backend().refCount(variable.dataId) <= 1) return;
  const copy = tf.add(variable, 0);
  variable.assign(copy);
  copy.dispose();
}

/**
 * AdamW on one variable, updating `param`, `m` and `v`. `gate` (from stepGate) is required where
 * gatedUpdates() says so: it scales the gradient by the clip scale and skips a non-finite step.
 */
export function adamwUpdate(param: tf.Variable, grad: tf.Tensor, m: tf.Variable, v: tf.Variable, s: AdamWStep, gate?: tf.Tensor1D): void {
  if (!hasKernel('ArlAdamW')) {
    adamwUpdateOps(param, grad, m, v, s);
    return;
  }
  if (gate) {
    // The gated kernel writes in place.
    for (const variable of [param, m, v]) ownBuffer(variable);
    tf.engine().runKernel('ArlAdamW', { param, grad, m, v, gate }, { ...s });
    return;
  }
  const [pNew, mNew, vNew] = tf.engine().runKernel('ArlAdamW', { param, grad, m, v }, { ...s }) as tf.Tensor[];
  m.assign(mNew);
  v.assign(vNew);
  param.assign(pNew);
  tf.dispose([pNew, mNew, vNew]);
}

/** adamwUpdate with tfjs ops (backends without the kernel, and the reference it is tested against). */
export function adamwUpdateOps(param: tf.Variable, grad: tf.Tensor, m: tf.Variable, v: tf.Variable, s: AdamWStep): void {
  tf.tidy(() => {
    const mNew = tf.add(tf.mul(m, s.beta1), tf.mul(grad, 1 - s.beta1));
    const vNew = tf.add(tf.mul(v, s.beta2), tf.mul(tf.square(grad), 1 - s.beta2));
    m.assign(mNew);
    v.assign(vNew);
    const update = tf.div(tf.div(mNew, s.correction1), tf.add(tf.sqrt(tf.div(vNew, s.correction2)), s.eps));
    const decayed = s.decay !== 1 ? tf.mul(param, s.decay) : param;
    param.assign(tf.sub(decayed, tf.mul(update, s.lr)));
  });
}

/** A step gate read back: the gradient norm, whether loss and norm were finite (else the update was skipped), the loss. */
export interface StepGate {
  norm: number;
  finite: boolean;
  loss: number;
}

/**
 * The step's gate [norm, factor, 1 if loss and norm are finite else 0, lossSum / lossDivisor]
 * from the gradients, read as `gradScale` times themselves (1 / the loss scale: unscaled before
 * the norm); the factor AdamW multiplies them by is gradScale times the clip scale (clip scale 1
 * when maxNorm is 0). Only where gatedUpdates(); read it with readStepGate after the updates are recorded.
 */
export function stepGate(grads: tf.Tensor[], lossSum: tf.Scalar, o: { maxNorm: number; lossDivisor: number; gradScale?: number }): tf.Tensor1D {
  const inputs: tf.NamedTensorMap = { lossSum };
  grads.forEach((g, i) => (inputs[`t${i}`] = g));
  return tf.engine().runKernel('ArlStepGate', inputs, { count: grads.length, maxNorm: o.maxNorm, lossDivisor: o.lossDivisor, gradScale: o.gradScale ?? 1 }) as tf.Tensor1D;
}

/** Reads a gate written by stepGate. */
export async function readStepGate(gate: tf.Tensor1D): Promise<StepGate> {
  const [norm, , finite, loss] = await gate.data();
  return { norm, finite: finite === 1, loss };
}
