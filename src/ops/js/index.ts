/** Registers our JS kernels (Arl*) for the wasm and cpu backends, on import. */
import * as tf from '@tensorflow/tfjs';
import { adamWKernel, rmsNormGradKernel, rmsNormKernel, subAtTargets, targetNll } from './kernels.ts';

/** True when our JS kernels (Arl*) are registered for the active backend (wasm, cpu). */
export function hasJsKernels(): boolean {
  return tf.getKernel('ArlTargetNll', tf.getBackend()) !== undefined;
}

function registerJsKernels(): void {
  for (const [kernelName, impl] of [
    ['ArlTargetNll', targetNll],
    ['ArlSubAtTargets', subAtTargets],
    ['ArlRmsNorm', rmsNormKernel],
    ['ArlRmsNormGrad', rmsNormGradKernel],
    ['ArlAdamW', adamWKernel],
  ] as const) {
    for (const backendName of ['wasm', 'cpu'] as const) {
      if (!tf.getKernel(kernelName, backendName)) tf.registerKernel({ kernelName, backendName, kernelFunc: impl[backendName] as unknown as tf.KernelFunc });
    }
  }
}
registerJsKernels();
