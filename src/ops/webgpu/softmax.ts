/**
 * Attention softmax over materialised scores, 64 invocations per row: the mask add and the softmax
 * forward in one dispatch (tfjs: 2), and the backward p * (dp - sum(dp * p)) in one (tfjs: 4). Each
 * invocation keeps its elements of the row in registers, so the inputs are read once (reading them in
 * each of the forward's three passes made it 3x slower than memory allows at 1.1B on an H100).
 *
 * Under mixed precision (attr `half`, even widths) they also write what attention's products take next as f16, two per
 * int32 word (ArlToF16's layout) in the same pass: the forward the probabilities beside the f32 ones (which the
 * backward needs), the backward only the f16 score gradient (its one use is the products).
 */
import * as tf from '@tensorflow/tfjs';
import { allocateF16Words, HALF } from './matmul-f16.ts';
import { allocate, builtins, dispatchRaw, grid, shaderText } from './runtime.ts';

/** 4 rows per workgroup, 64 invocations per row (one workgroup per 512-wide row was slower than tfjs's). */
const SOFTMAX_ROWS_PER_WG = 4;
const ROW_REDUCE = `
var<workgroup> red: array<f32, 256>;
fn rowReduce(value: f32, lid: u32, isMax: bool) -> f32 {
  let lane = lid % 64u;
  red[lid] = value;
  workgroupBarrier();
  for (var stride = 32u; stride > 0u; stride = stride >> 1u) {
    if (lane < stride) { red[lid] = select(red[lid] + red[lid + stride], max(red[lid], red[lid + stride]), isMax); }
    workgroupBarrier();
  }
  let total = red[lid - lane];
  workgroupBarrier();
  return total;
}
fn rowOf(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 { return (wid.x + wid.y * nwg.x) * ${SOFTMAX_ROWS_PER_WG}u + lid / 64u; }`;

/**
 * WGSL lines for each of a row's elements this invocation holds, kept in registers (one read of the inputs instead of
 * one per pass): pairs of neighbours, elements 2 lane + 128 j and the one after, j < cols / 128 rounded up (a pair
 * fills one f16 word), `ok{i}` saying whether element i is in the row.
 */
function perElement(cols: number, line: (i: number, at: string) => string): string {
  return Array.from({ length: 2 * Math.ceil(cols / 128) }, (_, i) => line(i, `2u * lane + ${128 * (i >> 1) + (i & 1)}u`)).join('\n  ');
}

/** WGSL lines writing each held pair (elements 2j and 2j + 1, values `value(i)`) as one f16 word of `out`. */
function halfPairs(cols: number, out: string, value: (i: number) => string): string {
  return perElement(cols, (i, at) => (i % 2 ? '' : `if (ok${i}) { ${out}[(base + ${at}) / 2u] = halfPair(${value(i)}, ${value(i + 1)}); }`));
}

/** WGSL bindings: the outputs (read_write), then the inputs, as dispatchRaw binds them, then the uniforms. */
function bindings(outputs: [string, string][], inputs: [string, string][], uniforms: string): string {
  const buffers = [...outputs.map(([name, type]) => `read_write> ${name}: ${type}`), ...inputs.map(([name, type]) => `read> ${name}: ${type}`)];
  const lines = buffers.map((b, i) => `@group(0) @binding(${i}) var<storage, ${b};`);
  return [...lines, `struct U { ${uniforms} };`, `@group(0) @binding(${buffers.length}) var<uniform> u: U;`].join('\n');
}

/**
 * With `causal` (rows [..., G*T, T] of causal attention: row r is token r % T, which sees keys j <= r % T), the
 * condition that element `at` is one the row sees; the others are not read, their probability and gradient being 0.
 */
const seen = (causal: boolean, at: string, cols: number): string => (causal ? ` && ${at} <= row % ${cols}u` : '');

/** The masked softmax of rows `cols` wide (compiled per width: the elements an invocation holds are written out). */
function softmaxMaskedShader(cols: number, half: boolean, causal: boolean): string {
  const outputs: [string, string][] = half ? [['p', 'array<f32>'], ['out16', 'array<u32>']] : [['p', 'array<f32>']];
  return `
${bindings(outputs, [['scores', 'array<f32>'], ['mask', 'array<f32>']], 'rows: u32, maskRows: u32')}
${ROW_REDUCE}
${half ? HALF : ''}
@compute @workgroup_size(256) fn main(${builtins}) {
  let row = rowOf(wid, nwg, lid);
  let lane = lid % 64u;
  // No early return: the reductions' barriers need every invocation of the workgroup.
  let live = row < u.rows;
  let base = row * ${cols}u;
  let maskBase = (row % u.maskRows) * ${cols}u;
  var m = -3.402823e38;
  ${perElement(cols, (i, at) => `let ok${i} = live && ${at} < ${cols}u;
  var x${i} = -3.402823e38;
  if (ok${i}${seen(causal, at, cols)}) { x${i} = scores[base + ${at}] + mask[maskBase + ${at}]; m = max(m, x${i}); }`)}
  let rowMax = rowReduce(m, lid, true);
  var total = 0.0;
  ${perElement(cols, (i) => `x${i} = exp(x${i} - rowMax); if (ok${i}) { total += x${i}; }`)}
  let inv = 1.0 / rowReduce(total, lid, false);
  ${perElement(cols, (i, at) => `x${i} = x${i} * inv; if (ok${i}) { p[base + ${at}] = x${i}; }`)}
  ${half ? halfPairs(cols, 'out16', (i) => `x${i}`) : ''}
}`;
}

/** The softmax backward p * (dp - sum(dp * p)) of rows `cols` wide, as f32 or (half) as f16 words only. */
function softmaxGradShader(cols: number, half: boolean, causal: boolean): string {
  const output: [string, string] = half ? ['out16', 'array<u32>'] : ['ds', 'array<f32>'];
  return `
${bindings([output], [['p', 'array<f32>'], ['dp', 'array<f32>']], 'rows: u32')}
${ROW_REDUCE}
${half ? HALF : ''}
@compute @workgroup_size(256) fn main(${builtins}) {
  let row = rowOf(wid, nwg, lid);
  let lane = lid % 64u;
  let live = row < u.rows;
  let base = row * ${cols}u;
  var dot = 0.0;
  ${perElement(cols, (i, at) => `let ok${i} = live && ${at} < ${cols}u;
  var p${i} = 0.0;
  var dp${i} = 0.0;
  if (ok${i}${seen(causal, at, cols)}) { p${i} = p[base + ${at}]; dp${i} = dp[base + ${at}]; dot += p${i} * dp${i}; }`)}
  let c = rowReduce(dot, lid, false);
  ${half ? halfPairs(cols, 'out16', (i) => `p${i} * (dp${i} - c)`) : perElement(cols, (i, at) => `if (ok${i}) { ds[base + ${at}] = p${i} * (dp${i} - c); }`)}
}`;
}

/** Rows and width of [..., rows, cols], refusing `half` of an odd width (a pair would straddle two rows). */
function rowsOf(x: tf.TensorInfo, half: boolean, name: string): { rows: number; cols: number } {
  const cols = x.shape[x.shape.length - 1];
  if (half && cols % 2 !== 0) throw new Error(`${name}: f16 output wants an even width, got [${x.shape}]`);
  return { rows: tf.util.sizeFromShape(x.shape) / cols, cols };
}

/** Whether attr `causal` holds for x [..., G*T, T] (whole query heads of T rows). */
const causalRows = (x: tf.TensorInfo, attrs: tf.NamedAttrMap | undefined): boolean =>
  attrs?.causal === true && x.shape.length >= 2 && x.shape[x.shape.length - 2] % x.shape[x.shape.length - 1] === 0;

/** ArlSoftmaxMasked: {scores, mask} -> p, and with attr half [p, p as f16 words]; attr causal: see `seen`. */
export function softmaxMaskedKernel(args: { inputs: tf.NamedTensorInfoMap; attrs?: tf.NamedAttrMap }): tf.TensorInfo | tf.TensorInfo[] {
  const { scores, mask } = args.inputs as Record<string, tf.TensorInfo>;
  const half = args.attrs?.half === true;
  const causal = causalRows(scores, args.attrs);
  const { rows, cols } = rowsOf(scores, half, 'ArlSoftmaxMasked');
  const outputs = half ? [allocate(scores.shape), allocateF16Words(scores.shape)] : [allocate(scores.shape)];
  const code = shaderText(`softmax ${cols} ${half} ${causal}`, () => softmaxMaskedShader(cols, half, causal));
  dispatchRaw('ArlSoftmaxMasked', code, [...outputs, scores, mask], [rows, mask.shape[0]].map((v) => ({ type: 'uint32', data: [v] })), grid(Math.ceil(rows / SOFTMAX_ROWS_PER_WG)));
  return half ? outputs : outputs[0];
}

/** ArlSoftmaxGrad: {p, dp} -> the score gradient, as f16 words with attr half; attr causal: see `seen`. */
export function softmaxGradKernel(args: { inputs: tf.NamedTensorInfoMap; attrs?: tf.NamedAttrMap }): tf.TensorInfo {
  const { p, dp } = args.inputs as Record<string, tf.TensorInfo>;
  const half = args.attrs?.half === true;
  const causal = causalRows(p, args.attrs);
  const { rows, cols } = rowsOf(p, half, 'ArlSoftmaxGrad');
  const ds = half ? allocateF16Words(p.shape) : allocate(p.shape);
  const code = shaderText(`softmax grad ${cols} ${half} ${causal}`, () => softmaxGradShader(cols, half, causal));
  dispatchRaw('ArlSoftmaxGrad', code, [ds, p, dp], [{ type: 'uint32', data: [rows] }], grid(Math.ceil(rows / SOFTMAX_ROWS_PER_WG)));
  return ds;
}
