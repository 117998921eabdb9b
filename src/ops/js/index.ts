/** Registers our JS kernels (Arl*) for the wasm and cpu backends. */
import * as tf from '@tensorflow/tfjs';
import { adamWKernel, rmsNormGradKernel, rmsNormKernel, subAtTargets, targetNll } from './kernels.ts';

export function registerJsKernels(): void {
  const kernels = [
    ['ArlTargetNll', targetNll, ['wasm', 'cpu']],
    ['ArlSubAtTargets', subAtTargets, ['wasm', 'cpu']],
    ['ArlRmsNorm', rmsNormKernel, ['wasm', 'cpu']],
    ['ArlRmsNormGrad', rmsNormGradKernel, ['wasm', 'cpu']],
    ['ArlAdamW', adamWKernel, ['wasm', 'cpu']],
  ] as const;
  for (const [kernelName, impl, backends] of kernels) {
    for (const backendName of backends) {
      if (!tf.getKernel(kernelName, backendName)) tf.registerKernel({ kernelName, backendName, kernelFunc: impl[backendName] as unknown as tf.KernelFunc });
    }
  }
}

/** True when our JS kernels (Arl*) are registered for the active backend (wasm, cpu). */
export function hasJsKernels(): boolean {
  return tf.getKernel('ArlTargetNll', tf.getBackend()) !== undefined;
}
