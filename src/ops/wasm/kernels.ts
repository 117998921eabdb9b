/**
 * Kernels for the tfjs wasm backend, registered over (or beside) its own (BatchMatMul: matmul.ts):
 *
 * - Identity, and Cast to the same dtype: the stock kernels copy the data; these share it by
 *   reference count, as the cpu backend does. The engine clones every tensor it saves for the
 *   backward pass, so on wasm each one was a full copy.
 * - UnsortedSegmentSum, the gradient of gather (the token embedding), which the backend lacks.
 * - GatherV2 on the first axis (the embedding lookup): row copies instead of per-element C++.
 *
 * They run on the wasm heap from JS. Those taking `stock` (the backend's own kernel) leave the
 * cases they do not cover to it.
 */
import * as tf from '@tensorflow/tfjs';

export interface WasmModule {
  cwrap: (name: string, ret: string | null, args: string[]) => (...args: unknown[]) => unknown;
  HEAPU8: Uint8Array;
  tfjs: { registerTensor: (id: number, size: number, offset: number) => void; disposeData: (id: number) => void };
}

interface TensorData {
  id: number;
  memoryOffset: number;
}

export interface WasmBackend {
  wasm: WasmModule;
  dataIdMap: { get(dataId: tf.DataId): TensorData };
  dataIdNextNumber: number;
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  disposeData(dataId: tf.DataId, force?: boolean): boolean;
  typedArrayFromHeap(info: tf.TensorInfo): Float32Array | Int32Array;
}

export type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap };

/** A 4-byte view of the whole heap (any 4-byte view will do for copies), taken after any allocation: a grown heap has a new buffer. */
export function heapWords(backend: WasmBackend): Int32Array {
  return new Int32Array(backend.wasm.HEAPU8.buffer);
}

/** Where a tensor's data starts on the heap, in 4-byte words. */
export const wordOffset = (backend: WasmBackend, info: tf.TensorInfo): number => backend.dataIdMap.get(info.dataId).memoryOffset >> 2;

export function unsortedSegmentSum(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as WasmBackend;
  const x = args.inputs.x as tf.TensorInfo;
  const segmentIds = args.inputs.segmentIds as tf.TensorInfo;
  const numSegments = (args.attrs as { numSegments: number }).numSegments;
  if (segmentIds.shape.length !== 1) throw new Error('wasm UnsortedSegmentSum: only 1-D segment ids are supported');
  const rows = x.shape[0];
  const rowSize = rows === 0 ? 0 : tf.util.sizeFromShape(x.shape) / rows;
  const out = backend.makeOutput([numSegments, ...x.shape.slice(1)], x.dtype);
  const outValues = backend.typedArrayFromHeap(out);
  outValues.fill(0);
  const xValues = backend.typedArrayFromHeap(x);
  const ids = backend.typedArrayFromHeap(segmentIds);
  for (let r = 0; r < rows; r++) {
    const segment = ids[r];
    if (segment < 0 || segment >= numSegments) continue;
    const src = r * rowSize;
    const dst = segment * rowSize;
    for (let j = 0; j < rowSize; j++) outValues[dst + j] += xValues[src + j];
  }
  return out;
}

/** A new tensor info on the same data (tensors are immutable; the backend counts references). */
function share(backend: WasmBackend & { incRef(dataId: tf.DataId): void }, x: tf.TensorInfo, dtype = x.dtype): tf.TensorInfo {
  backend.incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape.slice(), dtype };
}

/** Row gather (the token embedding lookup): one copyWithin per row instead of per element. */
export const gatherV2 = (stock: tf.KernelConfig) => (args: KernelArgs): tf.TensorInfo => {
  const backend = args.backend as WasmBackend;
  const x = args.inputs.x as tf.TensorInfo;
  const indices = args.inputs.indices as tf.TensorInfo;
  const { axis, batchDims } = args.attrs as { axis: number; batchDims: number };
  if ((axis !== 0 && axis !== -x.shape.length) || batchDims !== 0 || x.dtype === 'string' || x.dtype === 'bool' || indices.dtype !== 'int32') {
    return stock.kernelFunc(args as never) as tf.TensorInfo;
  }
  const rows = x.shape[0];
  const rowSize = tf.util.sizeFromShape(x.shape.slice(1));
  const ids = backend.typedArrayFromHeap(indices).slice();
  for (const id of ids) {
    if (id < 0 || id >= rows) throw new Error(`GatherV2: the index value ${id} is not in [0, ${rows - 1}]`);
  }
  const out = backend.makeOutput([...indices.shape, ...x.shape.slice(1)], x.dtype);
  const heap = heapWords(backend);
  const src = wordOffset(backend, x);
  const dst = wordOffset(backend, out);
  for (let i = 0; i < ids.length; i++) heap.copyWithin(dst + i * rowSize, src + ids[i] * rowSize, src + (ids[i] + 1) * rowSize);
  return out;
};

export const identity = (stock: tf.KernelConfig) => (args: KernelArgs): tf.TensorInfo => {
  const x = args.inputs.x as tf.TensorInfo;
  if (x.dtype === 'string') return stock.kernelFunc(args as never) as tf.TensorInfo;
  return share(args.backend as never, x);
};

export const cast = (stock: tf.KernelConfig) => (args: KernelArgs): tf.TensorInfo => {
  const x = args.inputs.x as tf.TensorInfo;
  const { dtype } = args.attrs as { dtype: tf.DataType };
  if (dtype !== x.dtype || dtype === 'string') return stock.kernelFunc(args as never) as tf.TensorInfo;
  return share(args.backend as never, x);
};
