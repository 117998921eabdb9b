/** Copies a webgpu tensor's values onto the device now (tfjs otherwise uploads them when a kernel first reads them). */
import * as tf from '@tensorflow/tfjs';

interface UploadingBackend {
  uploadToGPU(dataId: object): void;
}

/** Uploads `t` (on the webgpu backend); tfjs drops its JS values once they are on the device. */
export function uploadNow(t: tf.Tensor): void {
  (tf.backend() as unknown as UploadingBackend).uploadToGPU(t.dataId);
}

/** The largest buffer a webgpu kernel may bind (a transpose binds its whole input): the device's limit. */
export function maxBindingBytes(): number {
  const { device } = tf.backend() as unknown as { device: { limits: { maxStorageBufferBindingSize: number } } };
  return device.limits.maxStorageBufferBindingSize;
}
