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
 * - GatherV2 on the first axis (the embedding lookup): row copies instead of per-element C++.
 * - Our own kernels (Arl*: the loss's target NLL and gradient, RMSNorm forward and backward),
 *   registered for wasm and cpu: single passes in JS where a composition of tfjs ops would make
 *   several passes (and reductions across rows, which the wasm backend does by transposing).
 *
 * They run on the wasm heap from JS; XNNPACK itself runs on the backend's thread pool.
 */
import * as tf from '@tensorflow/tfjs';
import { threadPool } from './threads.ts';

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

let stockGather: tf.KernelConfig | null = null;

/** Row gather (the token embedding lookup): one copyWithin per row instead of per element. */
function gatherV2(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as WasmBackend;
  const x = args.inputs.x as tf.TensorInfo;
  const indices = args.inputs.indices as tf.TensorInfo;
  const { axis, batchDims } = args.attrs as { axis: number; batchDims: number };
  if ((axis !== 0 && axis !== -x.shape.length) || batchDims !== 0 || x.dtype === 'string' || x.dtype === 'bool' || indices.dtype !== 'int32') {
    return stockGather!.kernelFunc(args as never) as tf.TensorInfo;
  }
  const rows = x.shape[0];
  const rowSize = tf.util.sizeFromShape(x.shape.slice(1));
  const ids = backend.typedArrayFromHeap(indices).slice();
  for (const id of ids) {
    if (id < 0 || id >= rows) throw new Error(`GatherV2: the index value ${id} is not in [0, ${rows - 1}]`);
  }
  const out = backend.makeOutput([...indices.shape, ...x.shape.slice(1)], x.dtype);
  const heap = backend.typedArrayFromHeap(out);
  const src = backend.dataIdMap.get(x.dataId).memoryOffset >> 2;
  const dst = backend.dataIdMap.get(out.dataId).memoryOffset >> 2;
  const all = new Int32Array(heap.buffer); // any 4-byte view of the heap will do for a copy
  for (let i = 0; i < ids.length; i++) all.copyWithin(dst + i * rowSize, src + ids[i] * rowSize, src + (ids[i] + 1) * rowSize);
  return out;
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

interface OutputSpec {
  shape: number[];
  dtype: tf.DataType;
}

/**
 * A kernel in JS on typed arrays, for either backend: `plan` sees the inputs and attributes and
 * says which outputs to allocate; `fill` then writes them (inputs re-read: the wasm heap may
 * have moved while the outputs were allocated).
 */
function jsKernel(
  inputNames: string[],
  plan: (inputs: tf.TensorInfo[], attrs: tf.NamedAttrMap | undefined) => OutputSpec[],
  fill: (inputs: Typed[], outputs: Typed[], infos: tf.TensorInfo[], attrs: tf.NamedAttrMap | undefined) => void,
): { wasm: (args: KernelArgs) => tf.TensorInfo | tf.TensorInfo[]; cpu: (args: KernelArgs) => tf.TensorInfo | tf.TensorInfo[] } {
  const single = <T>(list: T[]): T | T[] => (list.length === 1 ? list[0] : list);
  const wasm = (args: KernelArgs): tf.TensorInfo | tf.TensorInfo[] => {
    const backend = args.backend as WasmBackend;
    const infos = inputNames.map((n) => args.inputs[n] as tf.TensorInfo);
    const outs = plan(infos, args.attrs).map((o) => backend.makeOutput(o.shape, o.dtype));
    fill(
      infos.map((i) => backend.typedArrayFromHeap(i)),
      outs.map((o) => backend.typedArrayFromHeap(o)),
      infos,
      args.attrs,
    );
    return single(outs);
  };
  const cpu = (args: KernelArgs): tf.TensorInfo | tf.TensorInfo[] => {
    const backend = args.backend as CpuBackend;
    const infos = inputNames.map((n) => args.inputs[n] as tf.TensorInfo);
    const specs = plan(infos, args.attrs);
    const values = specs.map((o) => (o.dtype === 'int32' ? new Int32Array(tf.util.sizeFromShape(o.shape)) : new Float32Array(tf.util.sizeFromShape(o.shape))));
    fill(
      infos.map((i) => backend.data.get(i.dataId).values as Typed),
      values,
      infos,
      args.attrs,
    );
    return single(specs.map((o, i) => backend.makeTensorInfo(o.shape, o.dtype, values[i])));
  };
  return { wasm, cpu };
}

/**
 * ArlTargetNll: per-row negative log-likelihood of the target, -log softmax(logits)[t], from the
 * softmax probabilities; rows whose target probability underflows fall back to logsumexp over
 * the logits. Inputs probs, logits [N, V] float32, targets [N] int32; output [N].
 */
const targetNll = jsKernel(
  ['probs', 'logits', 'targets'],
  (inputs) => [{ shape: [inputs[2].shape[0]], dtype: 'float32' }],
  ([probs, logits, targets], [out], infos) => {
    const rows = targets.length;
    const vocab = infos[0].shape[1];
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
);

/** ArlSubAtTargets: a copy of x [N, V] with amount[r] subtracted at (r, targets[r]). */
const subAtTargets = jsKernel(
  ['x', 'targets', 'amount'],
  (inputs) => [{ shape: inputs[0].shape, dtype: 'float32' }],
  ([x, targets, amount], [out]) => {
    const rows = targets.length;
    const vocab = rows === 0 ? 0 : x.length / rows;
    out.set(x);
    for (let r = 0; r < rows; r++) out[r * vocab + targets[r]] -= amount[r];
  },
);

/** ArlRmsNorm: y = x / sqrt(mean(x^2) + eps) * w over the last axis; x [N, D], w [D] -> y [N, D]. */
const rmsNormKernel = jsKernel(
  ['x', 'weight'],
  (inputs) => [{ shape: inputs[0].shape, dtype: 'float32' }],
  ([x, w], [y], _infos, attrs) => {
    const eps = (attrs as { eps: number }).eps;
    const d = w.length;
    const rows = d === 0 ? 0 : x.length / d;
    for (let r = 0; r < rows; r++) {
      const base = r * d;
      let ss = 0;
      for (let j = 0; j < d; j++) ss += x[base + j] * x[base + j];
      const inv = 1 / Math.sqrt(ss / d + eps);
      for (let j = 0; j < d; j++) y[base + j] = x[base + j] * inv * w[j];
    }
  },
);

/**
 * ArlRmsNormGrad: from x [N, D], w [D] and dy [N, D]: dx [N, D] and dw [D].
 * With r = 1/sqrt(mean(x^2)+eps), xhat = x r, g = dy w: dx = r (g - xhat mean(g xhat)), dw = sum_rows dy xhat.
 */
const rmsNormGradKernel = jsKernel(
  ['x', 'weight', 'dy'],
  (inputs) => [
    { shape: inputs[0].shape, dtype: 'float32' },
    { shape: inputs[1].shape, dtype: 'float32' },
  ],
  ([x, w, dy], [dx, dw], _infos, attrs) => {
    const eps = (attrs as { eps: number }).eps;
    const d = w.length;
    const rows = d === 0 ? 0 : x.length / d;
    const dwAcc = new Float64Array(d);
    for (let r = 0; r < rows; r++) {
      const base = r * d;
      let ss = 0;
      for (let j = 0; j < d; j++) ss += x[base + j] * x[base + j];
      const inv = 1 / Math.sqrt(ss / d + eps);
      let dot = 0; // sum_j g_j xhat_j
      for (let j = 0; j < d; j++) {
        const xhat = x[base + j] * inv;
        const g = dy[base + j];
        dwAcc[j] += g * xhat;
        dot += g * w[j] * xhat;
      }
      const mean = dot / d;
      for (let j = 0; j < d; j++) dx[base + j] = inv * (dy[base + j] * w[j] - x[base + j] * inv * mean);
    }
    for (let j = 0; j < d; j++) dw[j] = dwAcc[j];
  },
);

/**
 * ArlAdamW: one AdamW update of a parameter from its gradient and moments, all [size]:
 * m' = b1 m + (1-b1) g, v' = b2 v + (1-b2) g^2, p' = p decay - lr (m'/c1) / (sqrt(v'/c2) + eps).
 * Outputs p', m', v' (new tensors: a parameter's data may be cached by XNNPACK as packed weights).
 */
const adamWKernel = jsKernel(
  ['param', 'grad', 'm', 'v'],
  (inputs) => [0, 0, 0].map(() => ({ shape: inputs[0].shape, dtype: 'float32' as const })),
  ([p, g, m, v], [pOut, mOut, vOut], _infos, attrs) => {
    const { lr, beta1, beta2, eps, decay, correction1, correction2 } = attrs as Record<string, number>;
    const a1 = 1 - beta1;
    const a2 = 1 - beta2;
    for (let i = 0; i < p.length; i++) {
      const gi = g[i];
      const mi = beta1 * m[i] + a1 * gi;
      const vi = beta2 * v[i] + a2 * gi * gi;
      mOut[i] = mi;
      vOut[i] = vi;
      pOut[i] = p[i] * decay - (lr * (mi / correction1)) / (Math.sqrt(vi / correction2) + eps);
    }
  },
);

/** True when our JS kernels (Arl*) are registered for the active backend (wasm, cpu). */
export function hasJsKernels(): boolean {
  return tf.getKernel('ArlTargetNll', tf.getBackend()) !== undefined;
}

function registerJsKernels(): void {
  for (const [kernelName, impl] of [
    ['ArlTargetNll', targetNll],
    ['ArlSubAtTargets', subAtTargets],
    ['ArlRmsNorm', rmsNormKernel],
    ['ArlRmsNormGrad', rmsNormGradKernel],
    ['ArlAdamW', adamWKernel],
  ] as const) {
    for (const backendName of ['wasm', 'cpu'] as const) {
      if (!tf.getKernel(kernelName, backendName)) tf.registerKernel({ kernelName, backendName, kernelFunc: impl[backendName] as unknown as tf.KernelFunc });
    }
  }
}
registerJsKernels();

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
  stockGather = replace('GatherV2', gatherV2);
}
