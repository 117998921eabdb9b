/**
 * Kernels for the tfjs wasm backend, registered over (or beside) its own:
 *
 * - BatchMatMul. The stock kernel sends every product to XNNPACK's fully-connected operator only
 *   when it is a single 2-D product without transposes; anything batched or transposed (all of a
 *   training step's backward matmuls, and attention) falls to a naive scalar triple loop that runs
 *   10-30x slower. This one transposes operands physically where needed (a cheap O(n) copy),
 *   folds a batch into the rows when the right operand is shared, and otherwise runs XNNPACK once
 *   per batch slice on views into the operands' heap memory (no copies).
 * - Identity, and Cast to the same dtype: the stock kernels copy the data; these share it by
 *   reference count, as the cpu backend does. The engine clones every tensor it saves for the
 *   backward pass, so on wasm each one was a full copy.
 * - UnsortedSegmentSum, the gradient of gather (the token embedding), which the backend lacks.
 * - Our own kernels for the loss (ArlTargetNll, ArlSubAtTargets), registered for wasm and cpu:
 *   single passes in JS where a composition of tfjs ops would make several full passes over the
 *   [rows, vocab] logits.
 *
 * They run on the wasm heap from JS; XNNPACK itself runs on the backend's thread pool.
 */
import * as tf from '@tensorflow/tfjs';
import { threadPool } from './wasm-threads.ts';

interface WasmModule {
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

type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap };

function unsortedSegmentSum(args: KernelArgs): tf.TensorInfo {
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

let stockIdentity: tf.KernelConfig | null = null;
let stockCast: tf.KernelConfig | null = null;

function identity(args: KernelArgs): tf.TensorInfo {
  const x = args.inputs.x as tf.TensorInfo;
  if (x.dtype === 'string') return stockIdentity!.kernelFunc(args as never) as tf.TensorInfo;
  return share(args.backend as never, x);
}

function cast(args: KernelArgs): tf.TensorInfo {
  const x = args.inputs.x as tf.TensorInfo;
  const { dtype } = args.attrs as { dtype: tf.DataType };
  if (dtype !== x.dtype || dtype === 'string') return stockCast!.kernelFunc(args as never) as tf.TensorInfo;
  return share(args.backend as never, x);
}

// ---------------------------------------------------------------------------------------------
// BatchMatMul through XNNPACK

let stockBatchMatMul: tf.KernelConfig | null = null;
let boundModule: WasmModule | null = null;
let cBatchMatMul: ((...args: unknown[]) => unknown) | null = null;

function bind(backend: WasmBackend): void {
  if (boundModule === backend.wasm) return;
  boundModule = backend.wasm;
  cBatchMatMul = backend.wasm.cwrap('BatchMatMul', null, ['number', 'array', 'number', 'number', 'array', 'number', 'number', 'number', 'number']);
  stockBatchMatMul?.setupFunc?.(backend as unknown as tf.KernelBackend);
}

const shapeBytes = (shape: number[]): Uint8Array => new Uint8Array(new Int32Array(shape).buffer);

/** Products smaller than this many multiply-adds always run inline (the pool would cost more). */
const THREADED_MACS = 1 << 20;
/** Every EXPLORE-th call of a shape runs the other way, to notice when the better way changes. */
const EXPLORE = 8;

/** Per product shape: recent wall times inline and pooled (ms, moving averages). */
const timings = new Map<string, { inline: number; pooled: number; calls: number }>();

/**
 * Inline or pooled? The pool wins on an idle machine and loses badly when another process holds
 * a core (its closing barrier waits for a scheduler slice), so the choice is measured per shape:
 * the first call pooled, the second inline, then whichever was faster lately, re-trying the
 * other every EXPLORE-th call.
 */
function usePool(m: number, k: number, n: number): { pooled: boolean; record: (ms: number) => void } | null {
  if (!threadPool.available() || m * k * n < THREADED_MACS) return null;
  const key = `${m},${k},${n}`;
  let t = timings.get(key);
  if (!t) timings.set(key, (t = { inline: NaN, pooled: NaN, calls: 0 }));
  const stats = t;
  stats.calls++;
  let pooled: boolean;
  if (Number.isNaN(stats.pooled)) pooled = true;
  else if (Number.isNaN(stats.inline)) pooled = false;
  else {
    const best = stats.pooled <= stats.inline;
    pooled = stats.calls % EXPLORE === 0 ? !best : best;
  }
  return {
    pooled,
    record: (ms) => {
      const field = pooled ? 'pooled' : 'inline';
      stats[field] = Number.isNaN(stats[field]) ? ms : 0.5 * stats[field] + 0.5 * ms;
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

/** Swaps the last two axes of a [batch, rows, cols] tensor into new memory. */
function transposeLast2(backend: WasmBackend, x: tf.TensorInfo, batch: number, rows: number, cols: number): tf.TensorInfo {
  const transpose = tf.getKernel('Transpose', 'wasm')!.kernelFunc;
  const x3d: tf.TensorInfo = { dataId: x.dataId, shape: [batch, rows, cols], dtype: x.dtype };
  return transpose({ inputs: { x: x3d }, backend: backend as unknown as tf.KernelBackend, attrs: { perm: [0, 2, 1] } }) as tf.TensorInfo;
}

function batchMatMul(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as WasmBackend;
  bind(backend);
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
  if (!plain || !broadcastable) return stockBatchMatMul!.kernelFunc(args as never) as tf.TensorInfo;

  const outer = tf.backend_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
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
}

// ---------------------------------------------------------------------------------------------
// Loss kernels (JS on typed arrays; registered for wasm and cpu)

interface CpuBackend {
  data: { get(dataId: tf.DataId): { values: tf.backend_util.BackendValues } };
  makeTensorInfo(shape: number[], dtype: tf.DataType, values?: tf.backend_util.BackendValues): tf.TensorInfo;
}

type Typed = Float32Array | Int32Array;

/** Reads inputs and allocates the output as typed arrays, on either backend. */
function jsKernel(body: (inputs: Typed[], attrs: tf.NamedAttrMap | undefined) => { shape: number[]; dtype: tf.DataType; fill: (out: Typed) => void }, inputNames: string[]) {
  const wasm = (args: KernelArgs): tf.TensorInfo => {
    const backend = args.backend as WasmBackend;
    const arrays = inputNames.map((n) => backend.typedArrayFromHeap(args.inputs[n] as tf.TensorInfo));
    const spec = body(arrays, args.attrs);
    const out = backend.makeOutput(spec.shape, spec.dtype);
    // the heap may have grown in makeOutput: re-read the inputs
    const fresh = inputNames.map((n) => backend.typedArrayFromHeap(args.inputs[n] as tf.TensorInfo));
    for (let i = 0; i < arrays.length; i++) arrays[i] = fresh[i];
    spec.fill(backend.typedArrayFromHeap(out));
    return out;
  };
  const cpu = (args: KernelArgs): tf.TensorInfo => {
    const backend = args.backend as CpuBackend;
    const arrays = inputNames.map((n) => backend.data.get((args.inputs[n] as tf.TensorInfo).dataId).values as Typed);
    const spec = body(arrays, args.attrs);
    const values = spec.dtype === 'int32' ? new Int32Array(tf.util.sizeFromShape(spec.shape)) : new Float32Array(tf.util.sizeFromShape(spec.shape));
    spec.fill(values);
    return backend.makeTensorInfo(spec.shape, spec.dtype, values);
  };
  return { wasm, cpu };
}

/**
 * ArlTargetNll: per-row negative log-likelihood of the target, -log softmax(logits)[t], from the
 * softmax probabilities; rows whose target probability underflows fall back to logsumexp over
 * the logits. Inputs probs, logits [N, V] float32, targets [N] int32; output [N].
 */
const targetNll = jsKernel((inputs, attrs) => {
  const vocab = (attrs as { vocab: number }).vocab;
  const rows = inputs[2].length;
  return {
    shape: [rows],
    dtype: 'float32',
    fill: (out) => {
      const [probs, logits, targets] = inputs;
      for (let r = 0; r < rows; r++) {
        const base = r * vocab;
        const t = targets[r];
        const p = probs[base + t];
        if (p > 1e-30) {
          out[r] = -Math.log(p);
          continue;
        }
        let max = -Infinity;
        for (let j = 0; j < vocab; j++) max = Math.max(max, logits[base + j]);
        let sum = 0;
        for (let j = 0; j < vocab; j++) sum += Math.exp(logits[base + j] - max);
        out[r] = max + Math.log(sum) - logits[base + t];
      }
    },
  };
}, ['probs', 'logits', 'targets']);

/** ArlSubAtTargets: a copy of x [N, V] with amount[r] subtracted at (r, targets[r]). */
const subAtTargets = jsKernel((inputs) => {
  const [x, targets] = inputs;
  const rows = targets.length;
  const vocab = rows === 0 ? 0 : x.length / rows;
  return {
    shape: [rows, vocab],
    dtype: 'float32',
    fill: (out) => {
      const [xs, ts, amount] = inputs;
      out.set(xs);
      for (let r = 0; r < rows; r++) out[r * vocab + ts[r]] -= amount[r];
    },
  };
}, ['x', 'targets', 'amount']);

/** True when the loss kernels are registered for the active backend. */
export function hasLossKernels(): boolean {
  return tf.getKernel('ArlTargetNll', tf.getBackend()) !== undefined;
}

function registerLossKernels(): void {
  for (const [kernelName, impl] of [
    ['ArlTargetNll', targetNll],
    ['ArlSubAtTargets', subAtTargets],
  ] as const) {
    for (const backendName of ['wasm', 'cpu'] as const) {
      if (!tf.getKernel(kernelName, backendName)) tf.registerKernel({ kernelName, backendName, kernelFunc: impl[backendName] as unknown as tf.KernelFunc });
    }
  }
}
registerLossKernels();

let registered = false;

export function registerWasmKernels(): void {
  if (registered) return;
  registered = true;
  if (!tf.getKernel('UnsortedSegmentSum', 'wasm')) {
    tf.registerKernel({ kernelName: 'UnsortedSegmentSum', backendName: 'wasm', kernelFunc: unsortedSegmentSum as unknown as tf.KernelFunc });
  }
  const replace = (kernelName: string, kernelFunc: (args: KernelArgs) => tf.TensorInfo): tf.KernelConfig | null => {
    const stock = tf.getKernel(kernelName, 'wasm');
    if (!stock) return null;
    tf.unregisterKernel(kernelName, 'wasm');
    tf.registerKernel({ kernelName, backendName: 'wasm', kernelFunc: kernelFunc as unknown as tf.KernelFunc });
    return stock;
  };
  stockBatchMatMul = replace('BatchMatMul', batchMatMul);
  stockIdentity = replace('Identity', identity);
  stockCast = replace('Cast', cast);
}
