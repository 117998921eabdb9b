/**
 * Weight tensors made from values in Hugging Face's layout, where a linear kernel is [out, in] and ours is [in, out].
 * How depends on the backend: on webgpu each tensor's values go to the device as soon as it is made
 * (./webgpu/upload.ts), so they are read into one buffer reused tensor after tensor, uploaded in HF layout and
 * transposed on the device (a transpose moves values: bit-exact), in milliseconds where JS takes seconds at 1B
 * parameters. The CPU backends (cpu, wasm, tensorflow) keep or copy the array a tensor is made from, so the transpose
 * is done in JS, from the reused buffer into the array the tensor keeps.
 */
import * as tf from '@tensorflow/tfjs';
import { deviceTensor, maxBindingBytes } from './webgpu/upload.ts';

/** [rows, cols] row-major -> [cols, rows] row-major into `out`, in tiles that keep reads and writes in cache. */
export function transposeInto(data: Float32Array, rows: number, cols: number, out: Float32Array): Float32Array {
  const TILE = 32;
  for (let r0 = 0; r0 < rows; r0 += TILE) {
    const r1 = Math.min(rows, r0 + TILE);
    for (let c0 = 0; c0 < cols; c0 += TILE) {
      const c1 = Math.min(cols, c0 + TILE);
      for (let c = c0; c < c1; c++) {
        const o = c * rows;
        for (let r = r0; r < r1; r++) out[o + r] = data[r * cols + c];
      }
    }
  }
  return out;
}

/** Makes weight tensors from HF-layout values, one at a time: read each tensor's values into values(), then call tensor(). */
export interface HfWeightMaker {
  /** An array of `count` floats to read the next tensor's HF-layout values into; valid until tensor() is called. */
  values(count: number, transposed: boolean): Float32Array;
  /** The tensor of `shape` (ours) from the values just read, transposed from HF's [shape[1], shape[0]] when `transposed`. */
  tensor(values: Float32Array, shape: number[], transposed: boolean): tf.Tensor;
}

/** A buffer that grows to the largest size asked for and is reused. */
function scratch(): (count: number) => Float32Array {
  let buffer = new Float32Array(0);
  return (count) => {
    if (buffer.length < count) buffer = new Float32Array(count);
    return buffer.subarray(0, count);
  };
}

function deviceMaker(maxBytes: number): HfWeightMaker {
  const buffer = scratch();
  const transposedBuffer = scratch();
  return {
    values: (count) => buffer(count),
    tensor: (hfValues, shape, hfTransposed) => {
      // A tensor larger than a kernel may bind (lavapipe's 128 MiB; not an H200's) is transposed in JS.
      const inJs = hfTransposed && hfValues.length * 4 > maxBytes;
      const values = inJs ? transposeInto(hfValues, shape[1], shape[0], transposedBuffer(hfValues.length)) : hfValues;
      const transposed = hfTransposed && !inJs;
      // On the device when made: the buffer may take the next tensor's values.
      const hf = deviceTensor(values, transposed ? [shape[1], shape[0]] : shape);
      if (!transposed) return hf;
      const out = tf.transpose(hf);
      hf.dispose();
      return out;
    },
  };
}

function jsMaker(): HfWeightMaker {
  const buffer = scratch();
  return {
    // A transposed tensor's values are read into the reused buffer and transposed into a fresh array; any other
    // tensor keeps the array its values were read into.
    values: (count, transposed) => (transposed ? buffer(count) : new Float32Array(count)),
    tensor: (values, shape, transposed) => {
      if (!transposed) return tf.tensor(values, shape, 'float32');
      return tf.tensor(transposeInto(values, shape[1], shape[0], new Float32Array(values.length)), shape, 'float32');
    },
  };
}

/**
 * The way the active backend makes weight tensors from HF-layout values. On webgpu a tensor larger than
 * `maxDeviceBytes` (default: the most a kernel may bind) is transposed in JS.
 */
export function hfWeightMaker(options: { maxDeviceBytes?: number } = {}): HfWeightMaker {
  return tf.getBackend() === 'webgpu' ? deviceMaker(options.maxDeviceBytes ?? maxBindingBytes()) : jsMaker();
}
