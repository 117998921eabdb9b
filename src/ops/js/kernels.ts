/**
 * Our kernels in JS on typed arrays, for the wasm and cpu backends: single passes where a
 * composition of tfjs ops would make several (and reductions across rows, which the wasm backend
 * does by transposing). Registered by index.ts.
 */
import * as tf from '@tensorflow/tfjs';
import type { KernelArgs, WasmBackend } from '../wasm/kernels.ts';

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
export const targetNll = jsKernel(
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
export const subAtTargets = jsKernel(
  ['x', 'targets', 'amount'],
  (inputs) => [{ shape: inputs[0].shape, dtype: 'float32' }],
  ([x, targets, amount], [out]) => {
    const rows = targets.length;
    const vocab = rows === 0 ? 0 : x.length / rows;
    out.set(x);
    for (let r = 0; r < rows; r++) out[r * vocab + targets[r]] -= amount[r];
  },
);

/** ArlRmsNorm: y = x / sqrt(mean(x^2) + eps) * w over the last axis, and the rows' 1 / rms; x [N, D], w [D] -> y [N, D], inv [N]. */
export const rmsNormKernel = jsKernel(
  ['x', 'weight'],
  (inputs) => [
    { shape: inputs[0].shape, dtype: 'float32' },
    { shape: [inputs[0].shape[0]], dtype: 'float32' },
  ],
  ([x, w], [y, invOut], _infos, attrs) => {
    const eps = (attrs as { eps: number }).eps;
    const d = w.length;
    const rows = d === 0 ? 0 : x.length / d;
    for (let r = 0; r < rows; r++) {
      const base = r * d;
      let ss = 0;
      for (let j = 0; j < d; j++) ss += x[base + j] * x[base + j];
      const inv = 1 / Math.sqrt(ss / d + eps);
      for (let j = 0; j < d; j++) y[base + j] = x[base + j] * inv * w[j];
      invOut[r] = inv;
    }
  },
);

/**
 * ArlRmsNormGrad: from x [N, D], w [D] and dy [N, D]: dx [N, D] and dw [D]. The forward's inv is
 * not read: r is recomputed in double precision, as the forward computed it.
 * With r = 1/sqrt(mean(x^2)+eps), xhat = x r, g = dy w: dx = r (g - xhat mean(g xhat)), dw = sum_rows dy xhat.
 */
export const rmsNormGradKernel = jsKernel(
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
export const adamWKernel = jsKernel(
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
