/**
 * Dynamic loss scaling for mixed precision: the loss is multiplied by a scale before the backward
 * pass so small gradients survive the f16 operands of the backward products; the gradients are
 * divided by it again before clipping. A step whose gradients overflowed (inf or NaN) is skipped
 * and the scale halved; after `growthInterval` good steps in a row the scale doubles. Powers of
 * two, so scaling and unscaling are exact in f32.
 */

export interface LossScaleOptions {
  initial: number;
  growthInterval: number;
}

/** PyTorch's GradScaler defaults. */
export const DEFAULT_LOSS_SCALE: LossScaleOptions = { initial: 2 ** 16, growthInterval: 2000 };

/** Below this a run whose gradients keep overflowing is diverging, not underflowing. */
export const MIN_LOSS_SCALE = 2 ** -14;

export class LossScaler {
  scale: number;
  /** Good steps since the last overflow or growth. */
  goodSteps = 0;

  constructor(readonly options: LossScaleOptions = DEFAULT_LOSS_SCALE, scale = options.initial) {
    this.scale = scale;
  }

  /**
   * Records the outcome of a step taken at scale `used`. With steps overlapped the next step may
   * already have been recorded at the same scale and overflow too: the scale is halved once per
   * scale used, not once per overflowed step.
   */
  update(finite: boolean, used: number): void {
    if (!finite) {
      this.scale = Math.min(this.scale, used / 2);
      this.goodSteps = 0;
      return;
    }
    if (used !== this.scale) return; // a step recorded before the last change says nothing about this scale
    this.goodSteps += 1;
    if (this.goodSteps >= this.options.growthInterval) {
      this.scale *= 2;
      this.goodSteps = 0;
    }
  }
}

export interface ScaledStepResult {
  loss: number;
  gradNorm: number;
  /** The scale the step ran at. */
  lossScale: number;
  /** The gradients overflowed at that scale: the update was skipped. */
  skipped: boolean;
}

/**
 * Runs one step at the scaler's current scale (`run` takes it) and updates the scaler from its
 * outcome: an overflow (finite loss, non-finite gradient norm) is a skipped step. A non-finite
 * loss is not the scale's doing and is left to the caller.
 */
export async function scaledStep(scaler: LossScaler, run: (lossScale: number) => Promise<{ loss: number; gradNorm: number }>): Promise<ScaledStepResult> {
  const used = scaler.scale;
  const { loss, gradNorm } = await run(used);
  const skipped = Number.isFinite(loss) && !Number.isFinite(gradNorm);
  if (Number.isFinite(loss)) scaler.update(!skipped, used);
  return { loss, gradNorm, lossScale: used, skipped };
}
