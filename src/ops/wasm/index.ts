/** Registers our kernels for the wasm backend over (or beside) its own. */
import * as tf from '@tensorflow/tfjs';
import { cast, gatherV2, identity, unsortedSegmentSum } from './kernels.ts';
import { batchMatMul } from './matmul.ts';

let registered = false;

/** Registers the kernels (idempotent); call once the wasm backend is loaded. */
export function registerWasmKernels(): void {
  if (registered) return;
  registered = true;
  if (!tf.getKernel('UnsortedSegmentSum', 'wasm')) {
    tf.registerKernel({ kernelName: 'UnsortedSegmentSum', backendName: 'wasm', kernelFunc: unsortedSegmentSum as unknown as tf.KernelFunc });
  }
  const replace = (kernelName: string, make: (stock: tf.KernelConfig) => (args: never) => tf.TensorInfo): void => {
    const stock = tf.getKernel(kernelName, 'wasm');
    if (!stock) return;
    tf.unregisterKernel(kernelName, 'wasm');
    tf.registerKernel({ kernelName, backendName: 'wasm', kernelFunc: make(stock) as unknown as tf.KernelFunc });
  };
  replace('BatchMatMul', batchMatMul);
  replace('Identity', identity);
  replace('Cast', cast);
  replace('GatherV2', gatherV2);
}
