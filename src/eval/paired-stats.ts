/**
 * Paired comparisons on the same test documents: a seeded percentile bootstrap over documents for the relative
 * gain of one method's mean over another's and for the mean paired difference.
 */
import { makeRng } from '../core/random.ts';

export interface PairedComparison {
  n: number;
  method: number;
  baseline: number;
  /** method - baseline, and its 95% interval. */
  difference: number;
  difference_ci95: [number, number];
  /** (method - baseline) / baseline and its 95% interval; null where the baseline mean is 0. */
  relative: number | null;
  relative_ci95: [number, number] | null;
}

function mean(values: ArrayLike<number>): number {
  let total = 0;
  for (let i = 0; i < values.length; i++) total += values[i]!;
  return values.length === 0 ? NaN : total / values.length;
}

function percentile(sorted: readonly number[], q: number): number {
  const at = Math.min(sorted.length - 1, Math.max(0, Math.round(q * (sorted.length - 1))));
  return sorted[at]!;
}

/** The comparison of per-document scores `method[i]` and `baseline[i]` (same documents, same order). */
export function comparePaired(method: readonly number[], baseline: readonly number[], o: { resamples?: number; seed?: number } = {}): PairedComparison {
  if (method.length !== baseline.length || method.length === 0) throw new Error(`paired scores need equal, non-zero lengths (got ${method.length} and ${baseline.length})`);
  const n = method.length;
  const rng = makeRng(o.seed ?? 0);
  const differences: number[] = [];
  const relatives: number[] = [];
  const resampledMethod = new Float64Array(n);
  const resampledBaseline = new Float64Array(n);
  for (let r = 0; r < (o.resamples ?? 2000); r++) {
    for (let i = 0; i < n; i++) {
      const k = Math.floor(rng() * n);
      resampledMethod[i] = method[k]!;
      resampledBaseline[i] = baseline[k]!;
    }
    const m = mean(resampledMethod);
    const b = mean(resampledBaseline);
    differences.push(m - b);
    // A resample whose baseline mean is 0 has an unbounded gain: it counts as +Infinity when the method scored.
    relatives.push(b > 0 ? (m - b) / b : m > 0 ? Infinity : 0);
  }
  differences.sort((a, b) => a - b);
  relatives.sort((a, b) => a - b);
  const m = mean(method);
  const b = mean(baseline);
  return {
    n,
    method: m,
    baseline: b,
    difference: m - b,
    difference_ci95: [percentile(differences, 0.025), percentile(differences, 0.975)],
    relative: b > 0 ? (m - b) / b : null,
    relative_ci95: b > 0 ? [percentile(relatives, 0.025), percentile(relatives, 0.975)] : null,
  };
}

/** The mean of per-document scores and its bootstrap 95% interval: the paired difference from a baseline of 0. */
export function meanInterval(values: readonly number[], o: { resamples?: number; seed?: number } = {}): { mean: number; ci95: [number, number] } {
  const c = comparePaired(values, values.map(() => 0), o);
  return { mean: c.method, ci95: c.difference_ci95 };
}

/** Wilson score 95% interval of a proportion, in [0, 1]; unlike the normal approximation it is not [0, 0] at 0 successes. */
export function wilsonInterval(successes: number, n: number): [number, number] {
  if (n === 0) return [0, 1];
  const z = 1.959964;
  const p = successes / n;
  const centre = (p + (z * z) / (2 * n)) / (1 + (z * z) / n);
  const half = (z * Math.sqrt((p * (1 - p)) / n + (z * z) / (4 * n * n))) / (1 + (z * z) / n);
  return [Math.max(0, centre - half), Math.min(1, centre + half)];
}
