/**
 * AdamW (Loshchilov & Hutter): Adam moments with weight decay applied directly to the weights,
 * not through the gradient. Decay applies to matrices only (norm gains are left alone), as in
 * nanoGPT. Moments are tf.Variables updated in place so no tensors accumulate across steps.
 */
import * as tf from '@tensorflow/tfjs';
import { hasJsKernels } from '../ops/js/index.ts';
import { hasWebgpuKernels } from '../ops/webgpu/index.ts';
import { adamwUpdateGpu, globalNormGpu, readStepGate, stepGateGpu } from '../ops/webgpu/optimizer.ts';

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

  /** Force the tfjs-ops update even where the JS kernel exists (tests compare the two). */
  composed = false;

  constructor(readonly params: tf.Variable[], readonly opts: AdamWOptions) {
    // tidy frees the zeros each variable was made from (the variable keeps its own reference).
    this.m = tf.tidy(() => params.map((p) => tf.variable(tf.zerosLike(p), false)));
    this.v = tf.tidy(() => params.map((p) => tf.variable(tf.zerosLike(p), false)));
  }

  /** Whether updates run as the in-place WGSL kernel (which takes a step gate: stepGateGpu). */
  get onGpu(): boolean {
    return hasWebgpuKernels() && !this.composed;
  }

  /**
   * One update with gradients in `params` order. On the GPU path `gate` (from stepGateGpu) scales
   * the gradients and skips the update when it marks the step not finite; without one, unscaled.
   */
  apply(grads: tf.Tensor[], lr: number, gate?: tf.Tensor1D): void {
    this.step += 1;
    const { beta1, beta2, eps, weightDecay } = this.opts;
    const correction1 = 1 - Math.pow(beta1, this.step);
    const correction2 = 1 - Math.pow(beta2, this.step);
    if (this.onGpu) {
      // One WGSL dispatch per parameter, updating weights and moments in place.
      const stepGate = gate ?? tf.tensor1d([0, 1, 1, 0]);
      this.params.forEach((p, i) => {
        const decay = p.rank >= 2 && weightDecay > 0 ? 1 - lr * weightDecay : 1;
        adamwUpdateGpu(p, grads[i], this.m[i], this.v[i], stepGate, { lr, beta1, beta2, eps, decay, correction1, correction2 });
      });
      if (stepGate !== gate) stepGate.dispose();
      return;
    }
    if (tf.getBackend() === 'cpu' && hasJsKernels() && !this.composed) {
      // One JS pass per parameter (ArlAdamW) instead of a dozen element-wise kernels, each
      // allocating. (On wasm the tfjs kernels are vectorised C++ and measured as fast or faster.)
      this.params.forEach((p, i) => {
        const decay = p.rank >= 2 && weightDecay > 0 ? 1 - lr * weightDecay : 1;
        const attrs = { lr, beta1, beta2, eps, decay, correction1, correction2 };
        const [pNew, mNew, vNew] = tf.engine().runKernel('ArlAdamW', { param: p, grad: grads[i], m: this.m[i], v: this.v[i] }, attrs) as tf.Tensor[];
        this.m[i].assign(mNew);
        this.v[i].assign(vNew);
        p.assign(pNew);
        tf.dispose([pNew, mNew, vNew]);
      });
      return;
    }
    tf.tidy(() => {
      this.params.forEach((p, i) => {
        const g = grads[i];
        const m = tf.add(tf.mul(this.m[i], beta1), tf.mul(g, 1 - beta1));
        const v = tf.add(tf.mul(this.v[i], beta2), tf.mul(tf.square(g), 1 - beta2));
        this.m[i].assign(m);
        this.v[i].assign(v);
        const update = tf.div(tf.div(m, correction1), tf.add(tf.sqrt(tf.div(v, correction2)), eps));
        const decayed = p.rank >= 2 && weightDecay > 0 ? tf.mul(p, 1 - lr * weightDecay) : p;
        p.assign(tf.sub(decayed, tf.mul(update, lr)));
      });
    });
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
    // On webgpu one sum-of-squares dispatch per gradient. Elsewhere a chain of adds, not addN
    // (webgpu binds every addN input as a storage buffer, limit 8 per shader).
    const norm = hasWebgpuKernels() ? globalNormGpu(grads) : (tf.sqrt(sumAll(grads.map((g) => tf.sum(tf.square(g))))) as tf.Scalar);
    const scale = maxNorm > 0 ? tf.minimum(1, tf.div(maxNorm, tf.add(norm, 1e-6))) : tf.scalar(1);
    return { clipped: grads.map((g) => tf.mul(g, scale)), norm };
  });
}

/** Sum of same-shaped tensors by pairwise adds (safe on every backend, unlike a many-input addN). */
export function sumAll<T extends tf.Tensor>(tensors: T[]): T {
  return tf.tidy(() => tensors.reduce((a, b) => tf.add(a, b) as T));
}

/**
 * One AdamW step on the mean gradient of `microLosses` (micro-batches whose gradients are summed
 * before the step), clipped to `clip`. The step is skipped when the loss or the norm is not finite
 * (the caller sees them and decides). Returns the mean loss and the pre-clip gradient norm.
 */
export async function stepOnMeanGradient(optimizer: AdamW, microLosses: (() => tf.Scalar)[], o: { clip: number; lr: number }): Promise<{ loss: number; gradNorm: number }> {
  const variables = optimizer.params;
  let summed: tf.Tensor[] | null = null;
  const losses: tf.Scalar[] = [];
  for (const microLoss of microLosses) {
    const { value, grads } = tf.tidy(() => tf.variableGrads(microLoss, variables));
    losses.push(value);
    const ordered = variables.map((v) => grads[v.name]);
    if (summed === null) summed = ordered;
    else {
      const previous: tf.Tensor[] = summed;
      summed = previous.map((g, i) => tf.add(g, ordered[i]));
      tf.dispose([...previous, ...ordered]);
    }
  }
  const count = microLosses.length;
  const meanGrads = count > 1 ? tf.tidy(() => summed!.map((g) => tf.div(g, count))) : summed!;
  if (count > 1) tf.dispose(summed!);
  const lossTotal = sumAll(losses);
  if (optimizer.onGpu) {
    // Clip scale and finiteness are decided on the GPU: the update is recorded without waiting.
    const gate = stepGateGpu(meanGrads, lossTotal, { maxNorm: o.clip, lossDivisor: count });
    optimizer.apply(meanGrads, o.lr, gate);
    tf.dispose([...meanGrads, lossTotal, ...losses]);
    const { loss, norm, finite } = await readStepGate(gate);
    gate.dispose();
    if (!finite) optimizer.step -= 1; // the kernel skipped the update
    return { loss, gradNorm: norm };
  }
  const { clipped, norm } = clipByGlobalNorm(meanGrads, o.clip);
  tf.dispose(meanGrads);
  const [lossSum, gradNorm] = await Promise.all([lossTotal.data(), norm.data()]).then(([l, n]) => [l[0], n[0]]);
  tf.dispose([lossTotal, norm, ...losses]);
  const loss = lossSum / count;
  if (Number.isFinite(loss) && Number.isFinite(gradNorm)) optimizer.apply(clipped, o.lr);
  tf.dispose(clipped);
  return { loss, gradNorm };
}
