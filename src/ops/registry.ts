/**
 * Which implementation of an op runs. Each op (src/ops/<op>.ts) calls its kernel by one name
 * (Arl*) on every backend; a backend runs our kernel where one is registered for it (webgpu:
 * ./webgpu, wasm and cpu: ./js), and the op falls back to its composition of tfjs ops elsewhere.
 */
import * as tf from '@tensorflow/tfjs';
import { stockWebgpu } from '../switches.ts';
import { registerJsKernels } from './js/index.ts';

export type KernelFunc = (args: never) => tf.TensorInfo | tf.TensorInfo[];

/** Whether the active backend runs our kernel `kernelName` (on webgpu not under ARL_STOCK_WEBGPU=1). */
export function hasKernel(kernelName: string): boolean {
  const backend = tf.getBackend();
  return tf.getKernel(kernelName, backend) !== undefined && !(backend === 'webgpu' && stockWebgpu());
}

/** Registers `kernels` for `backendName`, leaving any name already registered there as it is. */
export function registerKernels(backendName: string, kernels: [string, KernelFunc][]): void {
  for (const [kernelName, kernelFunc] of kernels) {
    if (!tf.getKernel(kernelName, backendName)) tf.registerKernel({ kernelName, backendName, kernelFunc: kernelFunc as unknown as tf.KernelFunc });
  }
}

/** Registers `make(stock)` in place of the backend's own kernel `kernelName`; returns the stock one (null, and nothing done, where the backend has none). */
export function replaceKernel(kernelName: string, backendName: string, make: (stock: tf.KernelConfig) => KernelFunc): tf.KernelConfig | null {
  const stock = tf.getKernel(kernelName, backendName);
  if (!stock) return null;
  tf.unregisterKernel(kernelName, backendName);
  tf.registerKernel({ ...stock, kernelFunc: make(stock) as unknown as tf.KernelFunc });
  return stock;
}

// The JS kernels need no backend set-up: registered on import, as tfjs registers its own.
registerJsKernels();
