/** Registers our WGSL kernels for the webgpu backend, and our BatchMatMul and Transpose over tfjs's. */
import { registerKernels, replaceKernel } from '../registry.ts';
import { attentionHeadsGradKernel, attentionHeadsKernel } from './attention-heads.ts';
import { cachedAttentionKernel, kvWriteKernel } from './cached-attention.ts';
import { crossEntropyGradKernel, crossEntropyKernel } from './cross-entropy.ts';
import { flashAttentionGradKernel, flashAttentionKernel } from './flash-attention.ts';
import { batchMatMulKernel } from './matmul.ts';
import { matmulF16Kernel, toF16Kernel } from './mixed-precision.ts';
import { adamwKernel, stepGateKernel, sumSquaresKernel } from './optimizer.ts';
import { addRmsNormKernel, rmsNormGradKernel, rmsNormKernel } from './rms-norm.ts';
import { randomNormalKernel } from './random-normal.ts';
import { rotaryKernel } from './rotary.ts';
import { softmaxGradKernel, softmaxMaskedKernel } from './softmax.ts';
import { swigluGradKernel, swigluKernel } from './swiglu.ts';
import { transposeKernel } from './transpose.ts';

let registered = false;

/** Registers the kernels (idempotent); call once the webgpu backend is loaded. */
export function registerWebgpuKernels(): void {
  if (registered) return;
  registered = true;
  registerKernels('webgpu', [
    ['ArlRmsNorm', rmsNormKernel],
    ['ArlRmsNormGrad', rmsNormGradKernel],
    ['ArlAddRmsNorm', addRmsNormKernel],
    ['ArlRotary', rotaryKernel],
    ['ArlAttentionHeads', attentionHeadsKernel],
    ['ArlAttentionHeadsGrad', attentionHeadsGradKernel],
    ['ArlSoftmaxMasked', softmaxMaskedKernel],
    ['ArlSoftmaxGrad', softmaxGradKernel],
    ['ArlSwiGlu', swigluKernel],
    ['ArlSwiGluGrad', swigluGradKernel],
    ['ArlKvWrite', kvWriteKernel],
    ['ArlCachedAttention', cachedAttentionKernel],
    ['ArlFlashAttention', flashAttentionKernel],
    ['ArlFlashAttentionGrad', flashAttentionGradKernel],
    ['ArlCrossEntropy', crossEntropyKernel],
    ['ArlCrossEntropyGrad', crossEntropyGradKernel],
    ['ArlSumSquares', sumSquaresKernel],
    ['ArlStepGate', stepGateKernel],
    ['ArlAdamW', adamwKernel],
    ['ArlRandomNormal', randomNormalKernel],
    ['ArlToF16', toF16Kernel],
    ['ArlMatMulF16', matmulF16Kernel],
  ]);
  replaceKernel('BatchMatMul', 'webgpu', batchMatMulKernel);
  replaceKernel('Transpose', 'webgpu', transposeKernel);
}
