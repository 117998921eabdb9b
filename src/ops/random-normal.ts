/** Normal random values N(0, std) for weight initialisation, drawn by our kernel where registered (webgpu), else by tfjs. */
import * as tf from '@tensorflow/tfjs';
import { hasKernel } from './registry.ts';

export function randomNormal(shape: number[], std: number, seed: number): tf.Tensor {
  if (!hasKernel('ArlRandomNormal')) return tf.randomNormal(shape, 0, std, 'float32', seed);
  return tf.engine().runKernel('ArlRandomNormal', {}, { shape, std, seed } as unknown as tf.NamedAttrMap) as tf.Tensor;
}
