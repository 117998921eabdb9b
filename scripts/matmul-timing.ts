/** Timing and checking of GPU products, shared by the matmul benches (scripts/matmul-bench.ts, scripts/f16-matmul-bench.ts). */
import * as tf from '@tensorflow/tfjs';

/** The first element of `x`, to wait for the GPU by reading it. */
const firstElement = (x: tf.Tensor): tf.Tensor => tf.tidy(() => tf.slice(tf.reshape(x, [-1]), [0], [1]));

export interface Timing {
  ms: number;
  range: [number, number];
}

/**
 * Mean wall-clock ms of `run` over `iterations` calls, in each of `batches` batches, after two warm-up calls: the median
 * batch, and the least and greatest (one batch of a few milliseconds read up to 4x apart on an H100). Waits for the GPU
 * by reading one element.
 */
export async function time(run: () => tf.Tensor, iterations: number, batches: number): Promise<Timing> {
  for (let i = 0; i < 2; i++) {
    const out = run();
    const first = firstElement(out);
    await first.data();
    tf.dispose([out, first]);
  }
  const means: number[] = [];
  for (let batch = 0; batch < batches; batch++) {
    const outs: tf.Tensor[] = [];
    const start = performance.now();
    for (let i = 0; i < iterations; i++) {
      outs.push(run());
      if (i > 0) outs[i - 1].dispose(); // freed once its dispatch is submitted; keeps memory flat
    }
    const last = firstElement(outs[outs.length - 1]);
    await last.data();
    means.push((performance.now() - start) / iterations);
    tf.dispose([outs[outs.length - 1], last]);
  }
  means.sort((x, y) => x - y);
  return { ms: means[Math.floor(means.length / 2)], range: [means[0], means[means.length - 1]] };
}

/** A timing as printed: median ms, its range, TFLOP/s of `flops` at the median. */
export const timing = ({ ms, range }: Timing, flops: number): Record<string, unknown> => ({
  ms: +ms.toFixed(3),
  ms_range: range.map((v) => +v.toFixed(3)),
  tflops: +(flops / ms / 1e9).toFixed(1),
});

/** Max |got - want| / max |want|. */
export async function relativeError(got: tf.Tensor, want: tf.Tensor): Promise<number> {
  const error = tf.tidy(() => tf.div(tf.max(tf.abs(tf.sub(got, want))), tf.maximum(tf.max(tf.abs(want)), 1e-30)));
  const value = (await error.data())[0];
  error.dispose();
  return value;
}

/** Positive whole numbers from the environment (ITER, BATCHES), or a line saying which is wrong and exit 2. */
export function positiveEnv(bench: string, names: Record<string, number>): number[] {
  const values = Object.entries(names).map(([name, fallback]) => [name, Number(process.env[name] ?? fallback)] as const);
  const bad = values.filter(([, v]) => !(Number.isInteger(v) && v > 0));
  if (bad.length > 0) {
    console.error(`${bench}: ${bad.map(([n]) => `${n} (${process.env[n]})`).join(', ')} must be positive whole numbers`);
    process.exit(2);
  }
  return values.map(([, v]) => v);
}
