/**
 * Times our f32 webgpu matmul (src/ops/webgpu/matmul.ts) for several tilings at the products of a training step of the
 * three reference shapes (29M, SmolLM-135M, TinyLlama-1.1B), against tfjs's own, and checks each against tfjs's.
 * Prints JSON lines: the adapter, then per product one for tfjs's kernel and one per tiling (ms, TFLOP/s, relative
 * error), then per model and tiling the summed ms over the model's products (`total_ms`). A tiling none of whose tiles
 * fits a product is reported as not fitting, and counted at tfjs's time (the kernel leaves such products to tfjs).
 *
 *   node --import tsx scripts/matmul-bench.ts                   (from the repo)
 *   bash scripts/gpu-run.sh node dist/bench/matmul-bench.mjs    (GPU box, after scripts/gpu-pack.sh)
 *
 * Env: TILINGS (space-separated ARL_MATMUL_TILING values), MODELS (space-separated, of 29m 135m 1.1b; default all),
 * PRODUCTS (space-separated [Bx]MxKxN:tt[:CAUSAL@SEQ] instead of the models' products, tt saying which operands are
 * stored transposed, CAUSAL one of scores, queries, keys: attention's causal hint as training passes it, e.g.
 * 8192x512x1536:nn or 16x8192x1024x64:nn:queries@1024), ITER (products per timed batch, default 10), BATCHES (timed
 * batches, default 3). A hinted product's operand is zero where causality makes it so (its output, for scores), so
 * tfjs's full product is the reference; its TFLOP/s count only the work causality leaves.
 */
import * as tf from '@tensorflow/tfjs';
import { selectBackend } from '../src/backend.ts';
import { batchedProduct, type CausalHint, type CausalProduct } from '../src/ops/matmul.ts';
import { formatMatmulTiling, matmulTilingFor, measureMatmulResidency, parseMatmulTilings, workgroupStorageBytes } from '../src/ops/webgpu/matmul.ts';
import { positiveEnv, relativeError, time, timing } from './matmul-timing.ts';

/**
 * The default (first), then variants: operands with k contiguous staged as stored (the default before s), on both
 * tilings or on 128 x 64 alone (where s takes registers: 264 workgroups at once on an H100, not 396), attention's
 * 64-wide products with K tiles of 32 or 64 (each row of the probabilities read 128 or 256 contiguous bytes a tile, not
 * 64) on 128 x 64 and 64 x 64, grouped tiles, the loop kept, four k steps written out, 128 threads of 8 x 16 outputs
 * (whole loop, four steps, K tiles of 8), 128 threads of 8 x 8 on 128 x 64, 256 threads of 16 x 8 on 256 x 128, each 32
 * threads over 8 x 4 of the thread grid, K tiles of 32 on 128 x 128 (attention's scores, K 64, then take two K tiles,
 * not four), two K tiles staged, each share with its own address (the default before one address per operand), and
 * every K tile's reads checked (the default before unchecked interior reads).
 */
const DEFAULT_TILINGS = [
  '128x128/16uvias,128x64/16uvias', '128x128/16uvia,128x64/16uvia', '128x128/16uvias,128x64/16uvia', '128x128/16uvias,128x64/32uvias', '128x128/16uvias,64x64/32uvias', '128x128/16uvias,128x64/64uvias', '128x128/16uvias,64x64/64uvias',
  '128x128/16uvgias,128x64/16uvgias', '128x128/16vias,128x64/16vias', '128x128/16u4vias,128x64/16uvias',
  '128x128/16uvias@8x16,128x64/16uvias', '128x128/16u4vias@8x16,128x64/16uvias', '128x128/8uvias@8x16,128x64/16uvias', '128x64/16uvias@8x8',
  '256x128/16uvias@16x8,128x128/16uvias,128x64/16uvias', '128x128/16uvwias,128x64/16uvwias', '128x128/32uvias,128x64/16uvias',
  '128x128/16uvdias,128x64/16uvdias', '128x128/16uvi,128x64/16uvi', '128x128/16uv,128x64/16uv',
];
/** y = x W over N tokens: forward N x in x out (nn), input gradient N x out x in (nt), weight gradient in x N x out (tn). */
const projection = (tokens: number, inner: number, outer: number): string[] => [`${tokens}x${inner}x${outer}:nn`, `${tokens}x${outer}x${inner}:nt`, `${inner}x${tokens}x${outer}:tn`];
/** Each reference model's products, by the model's name in the bench's lines. */
const DEFAULT_PRODUCTS: Record<string, string[]> = {
  // d 512, F 1368, vocab 8192 tied, 16 x 512 tokens, 8 heads of 64 (attention's products batched over them).
  '29m': [
    ...projection(8192, 512, 1536), ...projection(8192, 512, 512), ...projection(8192, 512, 1368), ...projection(8192, 1368, 512),
    '8192x512x8192:nt', '8192x8192x512:nn', '8192x8192x512:tn',
    '128x512x64x512:nt:scores@512', '128x512x512x64:nn:queries@512', '128x512x512x64:tn:keys@512',
  ],
  // SmolLM-135M: d 576, q/k/v 960 (9 query heads, 3 key/value heads of 64), F 1536, vocab 49152 tied, 8 x 1024 tokens;
  // attention: 8 sequences x 3 key/value heads, each with 3 query heads' 1,024 positions stacked.
  '135m': [
    ...projection(8192, 576, 960), ...projection(8192, 576, 576), ...projection(8192, 576, 1536), ...projection(8192, 1536, 576),
    '8192x576x49152:nt', '8192x49152x576:nn', '49152x8192x576:tn',
    '24x3072x64x1024:nt:scores@1024', '24x3072x1024x64:nn:queries@1024', '24x1024x3072x64:tn:keys@1024',
  ],
  // TinyLlama-1.1B: d 2048, q/k/v 2560, F 5632, vocab 32000, 4 x 1024 tokens; attention: 4 sequences x 4 key/value
  // heads, each with 8 query heads' 1,024 positions stacked.
  '1.1b': [
    ...projection(4096, 2048, 2560), ...projection(4096, 2048, 2048), ...projection(4096, 2048, 5632), ...projection(4096, 5632, 2048),
    '4096x2048x32000:nn', '4096x32000x2048:nt', '2048x4096x32000:tn',
    '16x8192x64x1024:nt:scores@1024', '16x8192x1024x64:nn:queries@1024', '16x1024x8192x64:tn:keys@1024',
  ],
};

const print = (record: Record<string, unknown>): void => console.log(JSON.stringify({ bench: 'matmul', ...record }));
const fail = (line: string): never => {
  console.error(`matmul-bench: ${line}`);
  process.exit(2);
};

const tilings = (process.env.TILINGS ?? DEFAULT_TILINGS.join(' ')).split(/\s+/).filter(Boolean).map((spec) => {
  const list = parseMatmulTilings(spec);
  return typeof list === 'string' ? fail(`TILINGS: ${list}`) : { spec, list };
});
/** The stored orientation each causal product is taken in (as attention runs it): the operand or output that is causal. */
const CAUSAL_ORIENTATION: Record<CausalProduct, string> = { scores: 'nt', queries: 'nn', keys: 'tn' };
const parseProduct = (model: string) => (spec: string) => {
  const match = /^(?:(\d+)x)?(\d+)x(\d+)x(\d+):([nt][nt])(?::(scores|queries|keys)@(\d+))?$/.exec(spec);
  if (!match) return fail(`PRODUCTS: "${spec}" is not [Bx]MxKxN:tt[:CAUSAL@SEQ] (tt one of nn, nt, tn, tt; CAUSAL one of scores, queries, keys)`);
  const [batch, m, k, n] = [match[1] ?? '1', match[2], match[3], match[4]].map(Number);
  const causal = match[6] as CausalProduct | undefined;
  const hint: CausalHint | undefined = causal && { causal, seq: Number(match[7]) };
  if (causal && match[5] !== CAUSAL_ORIENTATION[causal]) fail(`PRODUCTS: "${spec}": a ${causal} product is timed as attention takes it, :${CAUSAL_ORIENTATION[causal]}`);
  return { model, spec, batch, m, k, n, transposeA: match[5][0] === 't', transposeB: match[5][1] === 't', hint };
};
/** 1 where a [rows, cols] matrix of queries (rows, SEQ to a head) by keys (cols) is causal: key <= query's position. */
const causalMask = (rows: number, cols: number, seq: number): tf.Tensor2D =>
  tf.tidy(() => tf.cast(tf.lessEqual(tf.range(0, cols, 1, 'int32').reshape([1, cols]), tf.mod(tf.range(0, rows, 1, 'int32'), seq).reshape([rows, 1])), 'float32') as tf.Tensor2D);
const models = (process.env.MODELS ?? Object.keys(DEFAULT_PRODUCTS).join(' ')).split(/\s+/).filter(Boolean);
for (const model of models) if (!(model in DEFAULT_PRODUCTS)) fail(`MODELS: "${model}" is not one of ${Object.keys(DEFAULT_PRODUCTS).join(', ')}`);
const products = process.env.PRODUCTS
  ? process.env.PRODUCTS.split(/\s+/).filter(Boolean).map(parseProduct('custom'))
  : models.flatMap((model) => DEFAULT_PRODUCTS[model].map(parseProduct(model)));
const [iterations, batches] = positiveEnv('matmul-bench', { ITER: 10, BATCHES: 3 });

let adapter: string;
try {
  adapter = (await selectBackend('webgpu')).detail;
} catch (err) {
  print({ unavailable: `no webgpu backend: ${(err as Error).message.split('\n')[0]}` });
  process.exit(0);
}
print({ adapter, workgroup_bytes: workgroupStorageBytes() });
// Workgroups of each tiling run at once (split K fills waves of them; ARL_MATMUL_WAVES=0 takes the fixed rule).
for (const { spec, list } of tilings) {
  process.env.ARL_MATMUL_TILING = spec;
  const measured = await measureMatmulResidency();
  print({ tiling: spec, residency: Object.fromEntries(list.map(formatMatmulTiling).map((one) => [one, measured.get(one)])) });
}
delete process.env.ARL_MATMUL_TILING;

/** Summed median ms per "model tiling" (tfjs's where the tiling does not take a product, as the kernel would). */
const totals = new Map<string, number>();
for (const p of products) {
  const lead = p.batch > 1 ? [p.batch] : [];
  const a0 = tf.randomUniform([...lead, ...(p.transposeA ? [p.k, p.m] : [p.m, p.k])], -1, 1, 'float32', 1);
  const b = tf.randomUniform([...lead, ...(p.transposeB ? [p.n, p.k] : [p.k, p.n])], -1, 1, 'float32', 2);
  // Queries: p [queries, keys] (nn); keys: p stored [queries, keys], taken transposed (tn). Zero what causality makes zero.
  const hint = p.hint;
  const a = hint && hint.causal !== 'scores' ? tf.tidy(() => tf.mul(a0, causalMask(a0.shape[lead.length], a0.shape[lead.length + 1], hint.seq))) : a0;
  if (a !== a0) a0.dispose();
  const product = (): tf.Tensor => (hint ? batchedProduct(a, b, p.transposeA, p.transposeB, hint) : tf.matMul(a, b, p.transposeA, p.transposeB));
  const flops = 2 * p.batch * p.m * p.n * p.k * (hint ? (hint.seq + 1) / (2 * hint.seq) : 1);
  process.env.ARL_STOCK_MATMUL = '1';
  const full = product();
  // Scores: a hinted product leaves the output above the diagonal undefined (tiles wholly above it zero), so only the
  // causal part is compared.
  const scoresMask = hint?.causal === 'scores' ? causalMask(p.m, p.n, hint.seq) : null;
  const causalPart = (x: tf.Tensor): tf.Tensor => (scoresMask ? tf.mul(x, scoresMask) : x);
  const want = causalPart(full);
  if (want !== full) full.dispose();
  const stock = await time(product, iterations, batches);
  print({ model: p.model, product: p.spec, tiling: 'tfjs', ...timing(stock, flops) });
  delete process.env.ARL_STOCK_MATMUL;
  for (const { spec, list } of tilings) {
    const key = `${p.model} ${spec}`;
    if (!matmulTilingFor(list, p.m, p.n)) {
      print({ model: p.model, product: p.spec, tiling: spec, fits: false });
      totals.set(key, (totals.get(key) ?? 0) + stock.ms);
      continue;
    }
    process.env.ARL_MATMUL_TILING = spec;
    const got = product();
    const compared = causalPart(got);
    const error = await relativeError(compared, want);
    tf.dispose([got, compared]);
    const measured = await time(product, iterations, batches);
    print({ model: p.model, product: p.spec, tiling: spec, ...timing(measured, flops), max_rel_error: +error.toExponential(2) });
    totals.set(key, (totals.get(key) ?? 0) + measured.ms);
  }
  delete process.env.ARL_MATMUL_TILING;
  tf.dispose([a, b, want, ...(scoresMask ? [scoresMask] : [])]);
}
for (const [key, ms] of totals) {
  const [model, tiling] = key.split(' ');
  print({ model, tiling, total_ms: +ms.toFixed(3) });
}
process.exit(0);
