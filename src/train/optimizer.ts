/**
 * AdamW (Loshchilov & Hutter): Adam moments with weight decay applied directly to the weights,
 * not through the gradient. Decay applies to matrices only (norm gains are left alone), as in
 * nanoGPT. Moments are tf.Variables updated in place so no tensors accumulate across steps.
 */
import * as tf from '@tensorflow/tfjs';
import { adamwUpdate, adamwUpdateOps, gatedUpdates, readStepGate, stepGate } from '../ops/adamw.ts';
import { globalNorm, sumAll } from '../ops/global-norm.ts';
import { variableGradients } from './gradients.ts';

export interface AdamWOptions {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

export class AdamW {
  readonly m: tf.Variable[];
  readonly v: tf.Variable[];
  /** Number of updates applied (for bias correction). */
  step = 0;

  /** Force the tfjs-ops update even where a kernel exists (tests compare the two). */
  composed = false;

  constructor(readonly params: tf.Variable[], readonly opts: AdamWOptions) {
    // tidy frees the zeros each variable was made from (the variable keeps its own reference).
    this.m = tf.tidy(() => params.map((p) => tf.variable(tf.zerosLike(p), false)));
    this.v = tf.tidy(() => params.map((p) => tf.variable(tf.zerosLike(p), false)));
  }

  /**
   * Whether updates take a step gate (stepGate: clip scale and finiteness decided on the device),
   * so a step is recorded without waiting for the previous one's numbers.
   */
  get gated(): boolean {
    return gatedUpdates() && !this.composed;
  }

  /**
   * One update with gradients in `params` order. Where updates are gated, `gate` (from stepGate)
   * scales the gradients and skips the update when it marks the step not finite; without one, unscaled.
   */
  apply(grads: tf.Tensor[], lr: number, gate?: tf.Tensor1D): void {
    this.step += 1;
    const { beta1, beta2, eps, weightDecay } = this.opts;
    const correction1 = 1 - Math.pow(beta1, this.step);
    const correction2 = 1 - Math.pow(beta2, this.step);
    const gating = this.gated ? (gate ?? tf.tensor1d([0, 1, 1, 0])) : undefined;
    const update = this.composed ? adamwUpdateOps : adamwUpdate;
    this.params.forEach((p, i) => {
      const decay = p.rank >= 2 && weightDecay > 0 ? 1 - lr * weightDecay : 1;
      update(p, grads[i], this.m[i], this.v[i], { lr, beta1, beta2, eps, decay, correction1, correction2 }, gating);
    });
    if (gating !== gate) gating?.dispose();
  }

  dispose(): void {
    tf.dispose([...this.m, ...this.v]);
  }
}

/** Linear warmup to peak, then cosine decay to minLr at totalSteps. */
export function learningRate(step: number, opts: { lr: number; minLr: number; warmup: number; totalSteps: number }): number {
  if (step < opts.warmup) return (opts.lr * (step + 1)) / opts.warmup;
  if (step >= opts.totalSteps) return opts.minLr;
  const progress = (step - opts.warmup) / Math.max(1, opts.totalSteps - opts.warmup);
  return opts.minLr + 0.5 * (opts.lr - opts.minLr) * (1 + Math.cos(Math.PI * progress));
}

/** Scales gradients so their global L2 norm is at most maxNorm. Returns the clipped grads (new tensors) and the norm before clipping. */
export function clipByGlobalNorm(grads: tf.Tensor[], maxNorm: number): { clipped: tf.Tensor[]; norm: tf.Scalar } {
  return tf.tidy(() => {
    const norm = globalNorm(grads);
    const scale = maxNorm > 0 ? tf.minimum(1, tf.div(maxNorm, tf.add(norm, 1e-6))) : tf.scalar(1);
    return { clipped: grads.map((g) => tf.mul(g, scale)), norm };
  });
}

/**
 * One AdamW step on the mean gradient of `microLosses` (micro-batches whose gradients are summed
 * before the step), clipped to `clip`. The step is skipped when the loss or the norm is not finite
 * (the caller sees them and decides). With `lossScale` (dynamic loss scaling) the gradients are
 * taken of the loss times the scale and divided by it before the norm and the clip. Returns the
 * mean (unscaled) loss and the pre-clip gradient norm.
 */
export async function stepOnMeanGradient(optimizer: AdamW, microLosses: (() => tf.Scalar)[], o: { clip: number; lr: number; lossScale?: number }): Promise<{ loss: number; gradNorm: number }> {
  const variables = optimizer.params;
  const lossScale = o.lossScale ?? 1;
  let summed: tf.Tensor[] | null = null;
  const losses: tf.Scalar[] = [];
  for (const microLoss of microLosses) {
    const scaled = lossScale === 1 ? microLoss : () => tf.mul(microLoss(), lossScale) as tf.Scalar;
    const { value, grads } = variableGradients(scaled, variables);
    losses.push(value);
    const ordered = grads.map((g, i) => g ?? tf.zerosLike(variables[i]));
    if (summed === null) summed = ordered;
    else {
      const previous: tf.Tensor[] = summed;
      summed = previous.map((g, i) => tf.add(g, ordered[i]));
      tf.dispose([...previous, ...ordered]);
    }
  }
  const count = microLosses.length;
  const lossTotal = sumAll(losses);
  if (optimizer.gated) {
    const meanGrads = count > 1 ? tf.tidy(() => summed!.map((g) => tf.div(g, count))) : summed!;
    if (count > 1) tf.dispose(summed!);
    // Clip scale and finiteness are decided on the device: the update is recorded without waiting.
    // The gate unscales: the norm and the factor AdamW applies both carry 1 / lossScale.
    const gate = stepGate(meanGrads, lossTotal, { maxNorm: o.clip, lossDivisor: count * lossScale, gradScale: 1 / lossScale });
    optimizer.apply(meanGrads, o.lr, gate);
    tf.dispose([...meanGrads, lossTotal, ...losses]);
    const { loss, norm, finite } = await readStepGate(gate);
    gate.dispose();
    if (!finite) optimizer.step -= 1; // the kernel skipped the update
    return { loss, gradNorm: norm };
  }
  const divisor = count * lossScale;
  const meanGrads = divisor !== 1 ? tf.tidy(() => summed!.map((g) => tf.div(g, divisor))) : summed!;
  if (divisor !== 1) tf.dispose(summed!);
  const { clipped, norm } = clipByGlobalNorm(meanGrads, o.clip);
  tf.dispose(meanGrads);
  const [lossSum, gradNorm] = await Promise.all([lossTotal.data(), norm.data()]).then(([l, n]) => [l[0], n[0]]);
  tf.dispose([lossTotal, norm, ...losses]);
  const loss = lossSum / divisor;
  if (Number.isFinite(loss) && Number.isFinite(gradNorm)) optimizer.apply(clipped, o.lr);
  tf.dispose(clipped);
  return { loss, gradNorm };
}
