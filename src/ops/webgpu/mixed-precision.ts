/**
 * The start-up check of mixed precision: the f16 tensor-core matmul must be supported, compile,
 * and agree with an f32 product on the device, so a run asked for mixed precision can refuse
 * with one line instead of training on wrong products.
 */
import * as tf from '@tensorflow/tfjs';
import type { CausalHint } from '../matmul.ts';
import {
  disposeF16,
  f16ConfigsListed,
  f16MatmulUnsupported,
  f16TilingsInUse,
  formatTiling,
  fromF16,
  matmulF16,
  matmulF16Info,
  packedF16,
  prepareMatmulF16,
  toF16,
  type F16Tiling,
} from './matmul-f16.ts';
import type { WebgpuBackend } from './runtime.ts';

export type MixedPrecisionSupport = { ok: true; detail: string } | { ok: false; reason: string };

/** A small product whose N is not a multiple of the default block and whose K is not one of a 32-deep slice. */
const CHECK = { m: 64, n: 48, k: 80 };
/**
 * Largest |f16 product - reference| relative to the largest |reference|. The reference multiplies
 * the same f16-rounded inputs in f32, so only summation order and the accumulator's rounding
 * differ (about 1e-6 here); a wrong tile or layout is off by order 1.
 */
export const SELF_CHECK_TOLERANCE = 1e-3;

const TRANSPOSES: [boolean, boolean][] = [
  [false, false],
  [true, false],
  [false, true],
  [true, true],
];

/** Worst relative error of matmulF16 against the f32 product of the same f16 inputs, for one transpose case. */
async function relativeError(transposeA: boolean, transposeB: boolean, tiling: F16Tiling, seed: number): Promise<number> {
  const { m, n, k } = CHECK;
  const a = tf.randomUniform(transposeA ? [k, m] : [m, k], -1, 1, 'float32', seed) as tf.Tensor2D;
  const b = tf.randomUniform(transposeB ? [n, k] : [k, n], -1, 1, 'float32', seed + 1) as tf.Tensor2D;
  const a16 = toF16(a);
  const b16 = toF16(b);
  const got = matmulF16(a16, b16, { transposeA, transposeB, tiling });
  const [aWide, bWide] = [fromF16(a16), fromF16(b16)];
  disposeF16(a16);
  disposeF16(b16);
  const error = tf.tidy(() => {
    const want = tf.matMul(aWide, bWide, transposeA, transposeB);
    return tf.div(tf.max(tf.abs(tf.sub(got, want))), tf.maximum(tf.max(tf.abs(want)), 1e-30));
  });
  const value = (await error.data())[0];
  tf.dispose([a, b, got, aWide, bWide, error]);
  return value;
}

/**
 * Ok when the f16 tensor-core matmul (at `given`, else at every tiling products may take) is supported here, compiles,
 * and multiplies a small random product (64x80 by 80x48, every transpose case) within SELF_CHECK_TOLERANCE of the
 * f32 reference; else one line saying what is missing or what failed.
 */
export async function mixedPrecisionSupport(given?: F16Tiling): Promise<MixedPrecisionSupport> {
  const unsupported = f16MatmulUnsupported();
  if (unsupported) return { ok: false, reason: `mixed precision unavailable: ${unsupported}` };
  let tilings: F16Tiling[];
  try {
    tilings = given ? [given] : f16TilingsInUse();
  } catch (err) {
    return { ok: false, reason: `ARL_F16_TILING: ${(err as Error).message}` };
  }
  for (const tiling of tilings) {
    for (const [transposeA, transposeB] of TRANSPOSES) {
      const problem = await prepareMatmulF16(CHECK.m, CHECK.n, CHECK.k, { transposeA, transposeB, tiling });
      if (problem) return { ok: false, reason: `mixed precision unavailable: ${problem}` };
    }
  }
  const device = (tf.backend() as unknown as WebgpuBackend).device;
  // Errors in the check's dispatches become this answer instead of a fatal uncaptured error.
  device.pushErrorScope('validation');
  let worst = 0;
  let failure: string | null = null;
  try {
    checks: for (const tiling of tilings) {
      for (const [i, [transposeA, transposeB]] of TRANSPOSES.entries()) {
        const error = await relativeError(transposeA, transposeB, tiling, 1000 + 2 * i);
        worst = Math.max(worst, error);
        if (!(error <= SELF_CHECK_TOLERANCE)) {
          failure = `the f16 matmul (tiling ${formatTiling(tiling)}, transposeA ${transposeA}, transposeB ${transposeB}) is off by ${error.toExponential(2)} of the largest value (tolerance ${SELF_CHECK_TOLERANCE})`;
          break checks;
        }
      }
    }
  } finally {
    const error = await device.popErrorScope();
    if (error) failure = `the f16 matmul check raised a WebGPU error: ${error.message.replace(/\s+/g, ' ').trim().slice(0, 300)}`;
  }
  if (failure) return { ok: false, reason: `mixed precision unavailable: ${failure}` };
  const unlisted = f16ConfigsListed() ? '' : '; the adapter lists no subgroup-matrix configurations, so this check decided';
  const checked = tilings.map(formatTiling).join(' and ');
  return { ok: true, detail: `f16 tensor-core matmul checked (tiling ${checked}, 64x80 by 80x48, 4 transpose cases): worst relative error ${worst.toExponential(2)}${unlisted}` };
}

/** ArlToF16: {x} (f32 [..., rows, cols], cols even) -> f16, two per int32 word: [..., rows, cols / 2]. */
export function toF16Kernel(args: { inputs: tf.NamedTensorInfoMap }): tf.TensorInfo {
  const { x } = args.inputs as { x: tf.TensorInfo };
  if (x.shape.length < 2 || x.shape.at(-1)! % 2 !== 0) throw new Error(`ArlToF16: want [..., rows, cols] with cols even, got [${x.shape}]`);
  return toF16(x).words;
}

/**
 * ArlMatMulF16: {a, b} (f16 from ArlToF16) -> op(a) op(b) (f32) on the tensor cores. Only reached once the self-check
 * has passed (src/ops/matmul.ts).
 */
export function matmulF16Kernel(args: { inputs: tf.NamedTensorInfoMap; attrs?: tf.NamedAttrMap }): tf.TensorInfo {
  const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
  const { transposeA, transposeB, causal, seq } = args.attrs as { transposeA: boolean; transposeB: boolean } & Partial<CausalHint>;
  return matmulF16Info(packedF16(a), packedF16(b), { transposeA, transposeB, causal: causal && seq ? { causal, seq } : undefined });
}
