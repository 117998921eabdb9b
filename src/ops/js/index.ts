/** Registers our JS kernels: for the wasm and cpu backends, except AdamW (cpu only: on wasm tfjs's vectorised C++ measured as fast or faster). */
import * as tf from '@tensorflow/tfjs';
import { adamWKernel, rmsNormGradKernel, rmsNormKernel, subAtTargets, targetNll } from './kernels.ts';

export function registerJsKernels(): void {
  const kernels = [
    ['ArlTargetNll', targetNll, ['wasm', 'cpu']],
    ['ArlSubAtTargets', subAtTargets, ['wasm', 'cpu']],
    ['ArlRmsNorm', rmsNormKernel, ['wasm', 'cpu']],
    ['ArlRmsNormGrad', rmsNormGradKernel, ['wasm', 'cpu']],
    ['ArlAdamW', adamWKernel, ['cpu']],
  ] as const;
  for (const [kernelName, impl, backends] of kernels) {
    for (const backendName of backends) {
      if (!tf.getKernel(kernelName, backendName)) tf.registerKernel({ kernelName, backendName, kernelFunc: impl[backendName] as unknown as tf.KernelFunc });
    }
  }
}
