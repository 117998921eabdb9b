/**
 * Slice and Transpose for the tfjs wasm backend, registered over its own, on the heap from JS.
 *
 * - The stock Slice reads its whole input out of the heap (readSync copies it) before copying the
 *   slice; on the threaded build's shared heap that copy dominated: 2.4 ms to take 8 of 12 heads of
 *   a [8, 12, 128, 32] tensor. This one copies the slice's contiguous runs in place.
 * - The stock Transpose moves a matrix element by element in a cache-hostile order (3 ms for
 *   [1024, 344]); a training step transposes one operand of every backward product
 *   (matmul.ts). Matrices, and batches of them, are transposed here eight source rows at a time
 *   (0.25 ms); other permutations stay with the stock kernel, which handles them well.
 *
 * Only 4-byte dtypes (float32, int32) are handled; anything else goes to the stock kernel.
 */
import * as tf from '@tensorflow/tfjs';
import { heapWords, type KernelArgs, type WasmBackend, wordOffset } from './kernels.ts';

const fourByte = (dtype: tf.DataType): boolean => dtype === 'float32' || dtype === 'int32';

export const slice = (stock: tf.KernelConfig) => (args: KernelArgs): tf.TensorInfo => {
  const backend = args.backend as WasmBackend;
  const x = args.inputs.x as tf.TensorInfo;
  if (!fourByte(x.dtype)) return stock.kernelFunc(args as never) as tf.TensorInfo;
  const { begin, size } = args.attrs as { begin: number | number[]; size: number | number[] };
  const [start, extent] = tf.slice_util.parseSliceParams(x as tf.Tensor, begin, size);
  const out = backend.makeOutput(extent, x.dtype);
  const total = tf.util.sizeFromShape(extent);
  if (total === 0) return out;
  const rank = x.shape.length;
  const strides = [...tf.util.computeStrides(x.shape), 1];
  // The innermost axis not taken whole: each run of `run` words from there on is contiguous.
  let inner = rank - 1;
  while (inner > 0 && extent[inner] === x.shape[inner]) inner--;
  const run = extent[inner] * strides[inner];
  const heap = heapWords(backend);
  const src = wordOffset(backend, x);
  let dst = wordOffset(backend, out);
  // An odometer over the axes before `inner`.
  const index = new Array<number>(inner).fill(0);
  for (let copied = 0; copied < total; copied += run) {
    let from = src + start[inner] * strides[inner];
    for (let a = 0; a < inner; a++) from += (start[a] + index[a]) * strides[a];
    heap.copyWithin(dst, from, from + run);
    dst += run;
    for (let a = inner - 1; a >= 0; a--) {
      if (++index[a] < extent[a]) break;
      index[a] = 0;
    }
  }
  return out;
};

/**
 * dst[c * rows + r] = src[r * cols + c], eight source rows at a time (each column's eight values land together).
 * Unrolled by hand: a loop over the eight measured half as fast.
 */
function transposeMatrix(heap: Int32Array, src: number, dst: number, rows: number, cols: number): void {
  let r = 0;
  for (; r + 8 <= rows; r += 8) {
    const s0 = src + r * cols;
    for (let c = 0, d = dst + r; c < cols; c++, d += rows) {
      let s = s0 + c;
      heap[d] = heap[s];
      s += cols;
      heap[d + 1] = heap[s];
      s += cols;
      heap[d + 2] = heap[s];
      s += cols;
      heap[d + 3] = heap[s];
      s += cols;
      heap[d + 4] = heap[s];
      s += cols;
      heap[d + 5] = heap[s];
      s += cols;
      heap[d + 6] = heap[s];
      s += cols;
      heap[d + 7] = heap[s];
    }
  }
  for (; r < rows; r++) {
    for (let c = 0; c < cols; c++) heap[dst + c * rows + r] = heap[src + r * cols + c];
  }
}

/**
 * The permutation with size-1 axes dropped and adjacent axes that stay adjacent merged:
 * [B, R, C] with perm [0, 2, 1] stays [B, R, C]; [1, R, C] with [0, 2, 1] becomes [R, C] with [1, 0].
 */
function simplify(shape: number[], perm: number[]): { shape: number[]; perm: number[] } {
  const kept = perm.filter((axis) => shape[axis] !== 1);
  const groups: number[][] = [];
  for (const axis of kept) {
    const last = groups[groups.length - 1];
    if (last && last[last.length - 1] === axis - 1) last.push(axis);
    else groups.push([axis]);
  }
  const order = groups.map((g) => g[0]).sort((a, b) => a - b);
  return {
    shape: order.map((first) => groups.find((g) => g[0] === first)!.reduce((n, axis) => n * shape[axis], 1)),
    perm: groups.map((g) => order.indexOf(g[0])),
  };
}

export const transpose = (stock: tf.KernelConfig) => (args: KernelArgs): tf.TensorInfo => {
  const backend = args.backend as WasmBackend;
  const x = args.inputs.x as tf.TensorInfo;
  const { perm } = args.attrs as { perm: number[] };
  if (!fourByte(x.dtype)) return stock.kernelFunc(args as never) as tf.TensorInfo;
  const reduced = simplify(x.shape, perm);
  const matrices = reduced.perm.length === 2 && reduced.perm[0] === 1;
  const batched = reduced.perm.length === 3 && reduced.perm.join() === '0,2,1';
  if (!matrices && !batched) return stock.kernelFunc(args as never) as tf.TensorInfo;
  const [batch, rows, cols] = matrices ? [1, ...reduced.shape] : reduced.shape;
  const out = backend.makeOutput(perm.map((axis) => x.shape[axis]), x.dtype);
  const heap = heapWords(backend);
  const src = wordOffset(backend, x);
  const dst = wordOffset(backend, out);
  for (let b = 0; b < batch; b++) transposeMatrix(heap, src + b * rows * cols, dst + b * rows * cols, rows, cols);
  return out;
};
