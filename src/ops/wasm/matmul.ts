/**
 * BatchMatMul for the tfjs wasm backend, registered over its own. The stock kernel sends every
 * product to XNNPACK's fully-connected operator only when it is a single 2-D product without
 * transposes; anything batched or transposed (all of a training step's backward matmuls, and
 * attention) falls to a naive scalar triple loop that runs 10-30x slower. This one transposes
 * operands physically where needed (a cheap O(n) copy), folds a batch into the rows when the right
 * operand is shared, and otherwise runs XNNPACK once per batch slice on views into the operands'
 * heap memory (no copies). XNNPACK runs on the backend's thread pool.
 */
import * as tf from '@tensorflow/tfjs';
import type { KernelArgs, WasmBackend, WasmModule } from './kernels.ts';
import { threadPool } from './threads.ts';


let boundModule: WasmModule | null = null;
let cBatchMatMul: ((...args: unknown[]) => unknown) | null = null;

function bind(backend: WasmBackend, stock: tf.KernelConfig): void {
  if (boundModule === backend.wasm) return;
  boundModule = backend.wasm;
  cBatchMatMul = backend.wasm.cwrap('BatchMatMul', null, ['number', 'array', 'number', 'number', 'array', 'number', 'number', 'number', 'number']);
  stock.setupFunc?.(backend as unknown as tf.KernelBackend);
}

const shapeBytes = (shape: number[]): Uint8Array => new Uint8Array(new Int32Array(shape).buffer);

/** Products smaller than this many multiply-adds always run inline (the pool would cost more). */
const THREADED_MACS = 1 << 20;
/** Every EXPLORE-th call of a shape runs the other way, to notice when the better way changes. */
const EXPLORE = 16;

/** Per product shape: recent wall times inline and pooled (ms, moving averages). */
const timings = new Map<string, { inline: number; pooled: number; calls: number; retry: boolean }>();

/**
 * Inline or pooled? The pool wins on an idle machine and loses badly when another process holds
 * a core (its closing barrier waits for a scheduler slice), so the choice is measured per shape:
 * the first call pooled, the second inline, then whichever was faster lately; the other way is
 * re-tried every EXPLORE-th call (4x less often when it lost by more than 30%), and at once
 * after the chosen way ran 1.5x slower than usual.
 */
function usePool(m: number, k: number, n: number): { pooled: boolean; record: (ms: number) => void } | null {
  if (!threadPool.available() || m * k * n < THREADED_MACS) return null;
  const key = `${m},${k},${n}`;
  let t = timings.get(key);
  if (!t) timings.set(key, (t = { inline: NaN, pooled: NaN, calls: 0, retry: false }));
  const stats = t;
  stats.calls++;
  let pooled: boolean;
  if (Number.isNaN(stats.pooled)) pooled = true;
  else if (Number.isNaN(stats.inline)) pooled = false;
  else {
    const best = stats.pooled <= stats.inline;
    // A clear loser is re-tried less often (a slowdown of the winner still triggers a retry).
    const clear = Math.max(stats.pooled, stats.inline) > 1.3 * Math.min(stats.pooled, stats.inline);
    pooled = stats.retry || stats.calls % (clear ? 4 * EXPLORE : EXPLORE) === 0 ? !best : best;
    stats.retry = false;
  }
  return {
    pooled,
    record: (ms) => {
      const field = pooled ? 'pooled' : 'inline';
      const previous = stats[field];
      if (!Number.isNaN(previous) && ms > 1.5 * previous && (pooled ? stats.pooled <= stats.inline : stats.inline < stats.pooled)) stats.retry = true;
      stats[field] = Number.isNaN(previous) ? ms : 0.5 * previous + 0.5 * ms;
    },
  };
}

/** out[M, N] = a[M, K] @ b[K, N] by tensor ids, through XNNPACK's fully-connected operator. */
function xnnMatMul(aId: number, bId: number, outId: number, m: number, k: number, n: number): void {
  const choice = usePool(m, k, n);
  if (choice === null) {
    cBatchMatMul!(aId, shapeBytes([1, m, k]), 3, bId, shapeBytes([1, k, n]), 3, 0, 0, outId);
    return;
  }
  threadPool.set(choice.pooled);
  const start = performance.now();
  cBatchMatMul!(aId, shapeBytes([1, m, k]), 3, bId, shapeBytes([1, k, n]), 3, 0, 0, outId);
  choice.record(performance.now() - start);
  threadPool.set(false);
}

/** A temporary tensor id naming `size` floats of existing heap memory (freed with releaseView). */
function view(backend: WasmBackend, offset: number, size: number): number {
  const id = backend.dataIdNextNumber++;
  backend.wasm.tfjs.registerTensor(id, size, offset);
  return id;
}

function releaseView(backend: WasmBackend, id: number): void {
  backend.wasm.tfjs.disposeData(id); // also drops XNNPACK operators cached on this id
}

/**
 * Relative costs per element (2-core machine, ns): XNNPACK packing its right operand (done on every
 * call, since a training step's operands are new tensors) and a transpose (layout.ts).
 */
const PACK_COST = 5;
const MOVE_COST = 0.7;

/**
 * Whether A[m,k] @ B[k,n] (each operand stored transposed where its flag says) is cheaper as
 * (B^T A^T)^T: packing A instead of B, at the price of other transposes. True for the weight
 * gradients X^T dY, whose dY is wider than X.
 */
function swapCheaper(m: number, k: number, n: number, transposeA: boolean, transposeB: boolean): boolean {
  const direct = MOVE_COST * ((transposeA ? m * k : 0) + (transposeB ? k * n : 0)) + PACK_COST * k * n;
  const swapped = MOVE_COST * ((transposeB ? 0 : k * n) + (transposeA ? 0 : m * k) + m * n) + PACK_COST * k * m;
  return swapped < direct;
}

/** Swaps the last two axes of a [batch, rows, cols] tensor into new memory. */
function transposeLast2(backend: WasmBackend, x: tf.TensorInfo, batch: number, rows: number, cols: number): tf.TensorInfo {
  const transpose = tf.getKernel('Transpose', 'wasm')!.kernelFunc;
  const x3d: tf.TensorInfo = { dataId: x.dataId, shape: [batch, rows, cols], dtype: x.dtype };
  return transpose({ inputs: { x: x3d }, backend: backend as unknown as tf.KernelBackend, attrs: { perm: [0, 2, 1] } }) as tf.TensorInfo;
}

export const batchMatMul = (stock: tf.KernelConfig) => (args: KernelArgs): tf.TensorInfo => {
  const backend = args.backend as WasmBackend;
  bind(backend, stock);
  const a = args.inputs.a as tf.TensorInfo;
  const b = args.inputs.b as tf.TensorInfo;
  const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
  const aRank = a.shape.length;
  const bRank = b.shape.length;
  const m = transposeA ? a.shape[aRank - 1] : a.shape[aRank - 2];
  const k = transposeA ? a.shape[aRank - 2] : a.shape[aRank - 1];
  const n = transposeB ? b.shape[bRank - 2] : b.shape[bRank - 1];
  const batchA = tf.util.sizeFromShape(a.shape.slice(0, -2));
  const batchB = tf.util.sizeFromShape(b.shape.slice(0, -2));
  const plain = a.dtype === 'float32' && b.dtype === 'float32' && m > 0 && n > 0 && k > 0;
  const broadcastable = batchA === batchB || batchB === 1 || batchA === 1;
  if (!plain || !broadcastable) return stock.kernelFunc(args as never) as tf.TensorInfo;

  const outer = tf.backend_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
  if (batchA === 1 && batchB === 1 && swapCheaper(m, k, n, transposeA, transposeB)) {
    // out = (B^T A^T)^T: XNNPACK packs the right operand on every call, and here A is the smaller one.
    const outT = batchMatMul(stock)({ ...args, inputs: { a: b, b: a }, attrs: { transposeA: !transposeB, transposeB: !transposeA } });
    const out = transposeLast2(backend, outT, 1, n, m);
    backend.disposeData(outT.dataId);
    return { ...out, shape: [...outer, m, n] };
  }
  const batch = Math.max(batchA, batchB);
  const temps: tf.TensorInfo[] = [];
  const aRows = transposeA ? (temps.push(transposeLast2(backend, a, batchA, k, m)), temps[temps.length - 1]) : a;
  const bRows = transposeB ? (temps.push(transposeLast2(backend, b, batchB, n, k)), temps[temps.length - 1]) : b;
  const out = backend.makeOutput([...outer, m, n], 'float32');
  const aData = backend.dataIdMap.get(aRows.dataId);
  const bData = backend.dataIdMap.get(bRows.dataId);
  const outData = backend.dataIdMap.get(out.dataId);
  if (batchB === 1) {
    // One product: the batch of A folds into its rows.
    xnnMatMul(aData.id, bData.id, outData.id, batchA * m, k, n);
  } else {
    for (let i = 0; i < batch; i++) {
      const ai = batchA === 1 ? aData.id : view(backend, aData.memoryOffset + 4 * i * m * k, m * k);
      const bi = view(backend, bData.memoryOffset + 4 * i * k * n, k * n);
      const oi = view(backend, outData.memoryOffset + 4 * i * m * n, m * n);
      xnnMatMul(ai, bi, oi, m, k, n);
      if (batchA !== 1) releaseView(backend, ai);
      releaseView(backend, bi);
      releaseView(backend, oi);
    }
  }
  for (const t of temps) backend.disposeData(t.dataId);
  return out;
};
