/**
 * Putting values on the device. tfjs uploads a tensor's values when a kernel first reads them, through a staging
 * buffer it creates, maps and destroys for each tensor: fresh host memory every time, the dearest part of loading a
 * 1B-parameter checkpoint once the transposes run on the device. queue.writeBuffer copies the values into Dawn's own
 * staging memory, which it reuses, at once.
 */
import * as tf from '@tensorflow/tfjs';

// WebGPU's GPUBufferUsage flags (fixed by the spec): what tfjs gives a tensor's buffer.
const COPY_SRC = 0x4;
const COPY_DST = 0x8;
const STORAGE = 0x80;

interface UploadingBackend {
  device: { limits: { maxStorageBufferBindingSize: number } };
  queue: { writeBuffer(buffer: unknown, offset: number, data: ArrayBuffer, dataOffset: number, size: number): void };
  bufferManager: { acquireBuffer(size: number, usage: number): unknown };
  tensorMap: { get(id: tf.DataId): { values: unknown; resource: unknown } | undefined };
}

const backend = (): UploadingBackend => tf.backend() as unknown as UploadingBackend;

/**
 * A float32 tensor of `shape` holding `values`, already on the device (webgpu backend): `values` may be overwritten
 * as soon as this returns. The write is ordered on the queue before any kernel encoded after it reads the tensor, and
 * the buffer comes from tfjs's pool, which hands out no buffer a pending command still uses.
 */
export function deviceTensor(values: Float32Array, shape: number[]): tf.Tensor {
  const b = backend();
  const tensor = tf.tensor(values, shape, 'float32');
  const data = b.tensorMap.get(tensor.dataId)!;
  const buffer = b.bufferManager.acquireBuffer(values.byteLength, STORAGE | COPY_SRC | COPY_DST);
  b.queue.writeBuffer(buffer, 0, values.buffer as ArrayBuffer, values.byteOffset, values.byteLength);
  data.resource = buffer;
  data.values = null; // as tfjs's own upload leaves it: the values live on the device only
  return tensor;
}

/** The largest buffer a webgpu kernel may bind (a transpose binds its whole input): the device's limit. */
export function maxBindingBytes(): number {
  return backend().device.limits.maxStorageBufferBindingSize;
}
