/** Registers our WGSL kernels (ArlGpu*) for the webgpu backend, and our BatchMatMul over tfjs's. */
import * as tf from '@tensorflow/tfjs';
import { stockWebgpu } from '../../switches.ts';
import { cachedAttentionKernel, kvWriteKernel } from './cached-attention.ts';
import { crossEntropyGradKernel, crossEntropyKernel } from './cross-entropy.ts';
import { flashAttentionGradKernel, flashAttentionKernel } from './flash-attention.ts';
import { batchMatMulKernel } from './matmul.ts';
import { addRmsNormKernel, rmsNormGradKernel, rmsNormKernel } from './rms-norm.ts';
import { rotaryKernel } from './rotary.ts';
import { softmaxGradKernel, softmaxMaskedKernel } from './softmax.ts';
import { swigluGradKernel, swigluKernel } from './swiglu.ts';

let registered = false;

/** Registers the ArlGpu* kernels for the webgpu backend (idempotent). */
export function registerWebgpuKernels(): void {
  if (registered) return;
  registered = true;
  const kernels: [string, (args: never) => tf.TensorInfo | tf.TensorInfo[]][] = [
    ['ArlGpuRmsNorm', rmsNormKernel],
    ['ArlGpuRmsNormGrad', rmsNormGradKernel],
    ['ArlGpuAddRmsNorm', addRmsNormKernel],
    ['ArlGpuRotary', rotaryKernel],
    ['ArlGpuSoftmaxMasked', softmaxMaskedKernel],
    ['ArlGpuSoftmaxGrad', softmaxGradKernel],
    ['ArlGpuSwiGlu', swigluKernel],
    ['ArlGpuSwiGluGrad', swigluGradKernel],
    ['ArlGpuKvWrite', kvWriteKernel],
    ['ArlGpuCachedAttention', cachedAttentionKernel],
    ['ArlGpuFlashAttention', flashAttentionKernel],
    ['ArlGpuFlashAttentionGrad', flashAttentionGradKernel],
    ['ArlGpuCrossEntropy', crossEntropyKernel],
    ['ArlGpuCrossEntropyGrad', crossEntropyGradKernel],
  ];
  for (const [kernelName, kernelFunc] of kernels) tf.registerKernel({ kernelName, backendName: 'webgpu', kernelFunc: kernelFunc as unknown as tf.KernelFunc });
  const stockBatchMatMul = tf.getKernel('BatchMatMul', 'webgpu');
  if (stockBatchMatMul) {
    tf.unregisterKernel('BatchMatMul', 'webgpu');
    tf.registerKernel({ ...stockBatchMatMul, kernelFunc: batchMatMulKernel(stockBatchMatMul) as unknown as tf.KernelFunc });
  }
}

/** True when the active backend is webgpu with our kernels (ARL_STOCK_WEBGPU=1 turns them off, for comparisons). */
export function hasWebgpuKernels(): boolean {
  return registered && tf.getBackend() === 'webgpu' && !stockWebgpu();
}
