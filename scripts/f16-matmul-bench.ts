/**
 * Times the f16 tensor-core matmul (src/ops/webgpu/matmul-f16.ts) at the projection shapes of a
 * 1.1B Llama (d 2048, F 5632) over 4,096 tokens, for several tilings, and checks each product
 * against the f32 product of the same f16 inputs. Prints JSON lines: the adapter and the
 * start-up self-check, then one per shape and tiling (ms, TFLOP/s, relative error), and our f32
 * matmul at each shape for comparison. Where the kernel cannot run it prints one line saying why
 * and exits 0.
 *
 *   node --import tsx scripts/f16-matmul-bench.ts                   (from the repo)
 *   bash scripts/gpu-run.sh node dist/bench/f16-matmul-bench.mjs    (GPU box, after scripts/gpu-pack.sh)
 *
 * Env: F16_TILINGS (comma-separated TMxTN/WMxWN/K[m], K 0 = unstaged, m = slices copied as subgroup matrices),
 * SHAPES (comma-separated MxKxN, or BxMxKxN for a batch of B products as attention's, e.g. 16x8192x64x1024),
 * TRANSPOSES (comma-separated nn, tn, nt, tt: which operands are stored transposed), ITER (products per timed batch,
 * default 20), BATCHES (timed batches, default 5: ms is their median, ms_range their least and greatest, since one
 * batch of a few milliseconds read up to 4x apart on an H100).
 */
import * as tf from '@tensorflow/tfjs';
import { selectBackend } from '../src/backend.ts';
import { DEFAULT_F16_TILING, disposeF16, f16MatmulUnsupported, formatTiling, fromF16, matmulF16, parseTiling, prepareMatmulF16, toF16, type F16Matrix, type F16Tiling } from '../src/ops/webgpu/matmul-f16.ts';
import { mixedPrecisionSupport, SELF_CHECK_TOLERANCE } from '../src/ops/webgpu/mixed-precision.ts';
import type { WebgpuBackend } from '../src/ops/webgpu/runtime.ts';
import { positiveEnv, relativeError, time, timing } from './matmul-timing.ts';

const DEFAULT_TILINGS = [
  ...['2x2/2x2/0', '2x2/2x2/32', '2x4/2x2/32', '4x2/2x2/32', '4x4/2x2/32', '2x2/2x4/32', '4x2/2x4/32'],
  // Slices copied as subgroup matrices: slower on an H100, kept for other GPUs.
  ...['2x2/2x2/32m', '4x4/2x2/32m'],
];
/** [tokens x d] x [d x F] (gate/up), [tokens x F] x [F x d] (down), [tokens x d] x [d x d] (attention projections). */
const DEFAULT_SHAPES = ['4096x2048x5632', '4096x5632x2048', '4096x2048x2048'];

const tilings = (process.env.F16_TILINGS ?? DEFAULT_TILINGS.join(',')).split(',').filter(Boolean).map(parseTiling);
const shapes = (process.env.SHAPES ?? DEFAULT_SHAPES.join(',')).split(',').filter(Boolean).map((s) => {
  const dims = s.split('x').map(Number);
  if (![3, 4].includes(dims.length) || !dims.every((d) => Number.isInteger(d) && d > 0)) throw new Error(`SHAPES: "${s}" is not MxKxN or BxMxKxN`);
  const [batch, m, k, n] = dims.length === 4 ? dims : [1, ...dims];
  return { batch, m, k, n };
});
const transposes = (process.env.TRANSPOSES ?? 'nn').split(',').filter(Boolean).map((t) => {
  if (!/^[nt][nt]$/.test(t)) throw new Error(`TRANSPOSES: "${t}" is not one of nn, tn, nt, tt`);
  return { transposeA: t[0] === 't', transposeB: t[1] === 't', name: t };
});
const [iterations, batches] = positiveEnv('f16-matmul-bench', { ITER: 20, BATCHES: 5 });

const print = (record: Record<string, unknown>): void => console.log(JSON.stringify({ bench: 'f16-matmul', ...record }));

let adapter: string;
try {
  adapter = (await selectBackend('webgpu', { f16: true })).detail;
} catch (err) {
  print({ unavailable: `no webgpu backend: ${(err as Error).message.split('\n')[0]}` });
  process.exit(0);
}
const unsupported = f16MatmulUnsupported();
if (unsupported) {
  print({ adapter, unavailable: unsupported });
  process.exit(0);
}
const check = await mixedPrecisionSupport();
print({ adapter, default_tiling: formatTiling(DEFAULT_F16_TILING), self_check: check.ok ? check.detail : check.reason });
const device = (tf.backend() as unknown as WebgpuBackend).device;

async function benchTiling(shape: (typeof shapes)[number], t: (typeof transposes)[number], a16: F16Matrix, b16: F16Matrix, want: tf.Tensor, tiling: F16Tiling): Promise<void> {
  const { batch, m, k, n } = shape;
  const options = { transposeA: t.transposeA, transposeB: t.transposeB, tiling };
  const where = { ...(batch > 1 ? { batch } : {}), m, k, n, transpose: t.name, tiling: formatTiling(tiling) };
  const problem = await prepareMatmulF16(m, n, k, options);
  if (problem) {
    print({ ...where, error: problem });
    return;
  }
  device.pushErrorScope('validation');
  let result: Record<string, unknown>;
  try {
    const got = matmulF16(a16, b16, options);
    const error = await relativeError(got, want);
    got.dispose();
    const measured = await time(() => matmulF16(a16, b16, options), iterations, batches);
    result = { ...timing(measured, 2 * batch * m * n * k), max_rel_error: +error.toExponential(2), correct: error <= SELF_CHECK_TOLERANCE };
  } finally {
    const error = await device.popErrorScope();
    if (error) result = { error: error.message.replace(/\s+/g, ' ').trim().slice(0, 300) };
  }
  print({ ...where, ...result });
}

for (const shape of shapes) {
  const { batch, m, k, n } = shape;
  const lead = batch > 1 ? [batch] : [];
  for (const t of transposes) {
    const a = tf.randomUniform([...lead, ...(t.transposeA ? [k, m] : [m, k])], -1, 1, 'float32', 1);
    const b = tf.randomUniform([...lead, ...(t.transposeB ? [n, k] : [k, n])], -1, 1, 'float32', 2);
    const a16 = toF16(a);
    const b16 = toF16(b);
    // The reference: our f32 matmul of the same f16-rounded inputs, timed as the baseline.
    const [aWide, bWide] = [fromF16<tf.Tensor2D | tf.Tensor3D>(a16), fromF16<tf.Tensor2D | tf.Tensor3D>(b16)];
    const want = tf.matMul(aWide, bWide, t.transposeA, t.transposeB);
    const f32 = await time(() => tf.matMul(aWide, bWide, t.transposeA, t.transposeB), iterations, batches);
    print({ ...(batch > 1 ? { batch } : {}), m, k, n, transpose: t.name, tiling: 'f32', ...timing(f32, 2 * batch * m * n * k) });
    for (const tiling of tilings) await benchTiling(shape, t, a16, b16, want, tiling);
    tf.dispose([a, b, aWide, bWide, want]);
    disposeF16(a16);
    disposeF16(b16);
  }
}
process.exit(0);
