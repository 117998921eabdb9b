/**
 * The layout pass of materialised attention, one dispatch each way. Forward (ArlAttentionHeads): the fused projection
 * qkv [B*T, (H + 2 KV) hd] becomes the batched products' operands, queries rotated and scaled [B, KV, G*T, hd]
 * (the G query heads of a KV head folded into rows), keys rotated [B, KV, T, hd] and values [B, KV, T, hd]; f32, or
 * (attr half, mixed precision) f16 two per int32 word. Backward (ArlAttentionHeadsGrad): their gradients back to
 * [B*T, (H + 2 KV) hd], rotary transposed and the scale applied. With tfjs ops each way is a transpose, slices or
 * concatenations, rotary, a scale and (mixed) three casts: five to eight passes over the activations (on an H100 at
 * 1.1B a step's transposes, slices, concatenations, rotary and scales, these among them, took 27 ms of 371).
 *
 * Rotary ("rotate half"): y_j = x_j cos_j - x_{j+hd/2} sin_j for j < hd/2, x_j cos_j + x_{j-hd/2} sin_j above;
 * its transpose dx_j = dy_j cos_j + dy_{j+hd/2} sin_{j+hd/2} below, dy_j cos_j - dy_{j-hd/2} sin_{j-hd/2} above.
 * Each invocation computes two neighbouring elements of a head (one f16 word).
 */
import * as tf from '@tensorflow/tfjs';
import { allocateF16Words, HALF } from './matmul-f16.ts';
import { allocate, builtins, dispatchRaw, flatIndex, grid, shaderText } from './runtime.ts';

/** Sizes of one attention call, compiled into its shaders. */
export interface HeadsShape {
  batch: number;
  seq: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  scale: number;
}

/** A JS number as a WGSL f32 literal. */
const f32Literal = (x: number): string => (Number.isInteger(x) ? x.toFixed(1) : String(x));

/** WGSL locating pair `idx` of qkv: its row (b, t), head, element d (even) in the head, and the index `at` of the element in its operand. */
function locate(s: HeadsShape): string {
  const { seq, heads, kvHeads, headDim } = s;
  const groups = heads / kvHeads;
  const width = (heads + 2 * kvHeads) * headDim;
  return `
  let col = (idx * 2u) % ${width}u;
  let bt = (idx * 2u) / ${width}u;
  let b = bt / ${seq}u;
  let t = bt % ${seq}u;
  let head = col / ${headDim}u;
  let d = col % ${headDim}u;
  let isQuery = head < ${heads}u;
  let isKey = !isQuery && head < ${heads + kvHeads}u;
  // A query head h is row block h % G of KV head h / G; keys and values are heads H.. and H + KV.. of qkv.
  let kv = select(select(head - ${heads + kvHeads}u, head - ${heads}u, isKey), head / ${groups}u, isQuery);
  let rowsPerKv = select(${seq}u, ${groups * seq}u, isQuery);
  let row = select(t, (head % ${groups}u) * ${seq}u + t, isQuery);
  let at = ((b * ${kvHeads}u + kv) * rowsPerKv + row) * ${headDim}u + d;
  let rotates = isQuery || isKey;
  let gain = select(1.0, ${f32Literal(s.scale)}, isQuery);
  let tab = t * ${headDim}u;`;
}

/**
 * WGSL function `name`(at, d, tab): rotary at element d of the head starting at `at` - d of `source`, forward or
 * transposed. Branches rather than select(), which would read both partners, one of them outside the buffer.
 */
function rotaryFn(name: string, source: string, half: number, transposed: boolean): string {
  const [below, above] = transposed
    ? [`+ ${source}[at + ${half}u] * sinT[tab + d + ${half}u]`, `- ${source}[at - ${half}u] * sinT[tab + d - ${half}u]`]
    : [`- ${source}[at + ${half}u] * sinT[tab + d]`, `+ ${source}[at - ${half}u] * sinT[tab + d]`];
  return `fn ${name}(at: u32, d: u32, tab: u32) -> f32 {
  if (d < ${half}u) { return ${source}[at] * cosT[tab + d] ${below}; }
  return ${source}[at] * cosT[tab + d] ${above};
}`;
}

const pairsOf = (s: HeadsShape): number => (s.batch * s.seq * (s.heads + 2 * s.kvHeads) * s.headDim) / 2;

/** Forward: f32 operands, or f16 words (half). */
function headsShader(s: HeadsShape, half: boolean): string {
  const out = half ? 'array<u32>' : 'array<f32>';
  const store = (name: string) => (half ? `${name}[at / 2u] = halfPair(y0, y1);` : `${name}[at] = y0; ${name}[at + 1u] = y1;`);
  return `
@group(0) @binding(0) var<storage, read_write> q: ${out};
@group(0) @binding(1) var<storage, read_write> k: ${out};
@group(0) @binding(2) var<storage, read_write> v: ${out};
@group(0) @binding(3) var<storage, read> qkv: array<f32>;
@group(0) @binding(4) var<storage, read> cosT: array<f32>;
@group(0) @binding(5) var<storage, read> sinT: array<f32>;
${half ? HALF : ''}
${rotaryFn('rotated', 'qkv', s.headDim / 2, false)}
@compute @workgroup_size(256) fn main(${builtins}) {
  let idx = ${flatIndex(256)};
  if (idx >= ${pairsOf(s)}u) { return; }
  ${locate(s)}
  let x = idx * 2u;
  var y0 = qkv[x];
  var y1 = qkv[x + 1u];
  if (rotates) {
    y0 = rotated(x, d, tab) * gain;
    y1 = rotated(x + 1u, d + 1u, tab) * gain;
  }
  if (isQuery) { ${store('q')} } else if (isKey) { ${store('k')} } else { ${store('v')} }
}`;
}

/** Backward: the f32 gradients of the operands back to qkv's layout. */
function headsGradShader(s: HeadsShape): string {
  return `
@group(0) @binding(0) var<storage, read_write> dqkv: array<f32>;
@group(0) @binding(1) var<storage, read> dq: array<f32>;
@group(0) @binding(2) var<storage, read> dk: array<f32>;
@group(0) @binding(3) var<storage, read> dv: array<f32>;
@group(0) @binding(4) var<storage, read> cosT: array<f32>;
@group(0) @binding(5) var<storage, read> sinT: array<f32>;
${rotaryFn('unrotatedQuery', 'dq', s.headDim / 2, true)}
${rotaryFn('unrotatedKey', 'dk', s.headDim / 2, true)}
@compute @workgroup_size(256) fn main(${builtins}) {
  let idx = ${flatIndex(256)};
  if (idx >= ${pairsOf(s)}u) { return; }
  ${locate(s)}
  var g0: f32;
  var g1: f32;
  if (isQuery) {
    g0 = unrotatedQuery(at, d, tab) * gain;
    g1 = unrotatedQuery(at + 1u, d + 1u, tab) * gain;
  } else if (isKey) {
    g0 = unrotatedKey(at, d, tab);
    g1 = unrotatedKey(at + 1u, d + 1u, tab);
  } else {
    g0 = dv[at];
    g1 = dv[at + 1u];
  }
  dqkv[idx * 2u] = g0;
  dqkv[idx * 2u + 1u] = g1;
}`;
}

const shapeKey = (s: HeadsShape): string => `${s.batch}x${s.seq} ${s.heads}/${s.kvHeads}x${s.headDim} ${s.scale}`;

function shapeOf(attrs: tf.NamedAttrMap | undefined): HeadsShape {
  const { batch, seq, heads, kvHeads, headDim, scale } = attrs as unknown as HeadsShape;
  if (headDim % 2 !== 0 || heads % kvHeads !== 0) throw new Error(`ArlAttentionHeads: want an even head size and KV heads dividing the heads, got ${heads}/${kvHeads}x${headDim}`);
  return { batch, seq, heads, kvHeads, headDim, scale };
}

/** ArlAttentionHeads: {qkv, cos, sin} -> [queries, keys, values] (see the file's comment); attrs the shape, scale and half. */
export function attentionHeadsKernel(args: { inputs: tf.NamedTensorInfoMap; attrs?: tf.NamedAttrMap }): tf.TensorInfo[] {
  const { qkv, cos, sin } = args.inputs as Record<string, tf.TensorInfo>;
  const s = shapeOf(args.attrs);
  const half = args.attrs?.half === true;
  const { batch, seq, heads, kvHeads, headDim } = s;
  const shapes = [
    [batch, kvHeads, (heads / kvHeads) * seq, headDim],
    [batch, kvHeads, seq, headDim],
    [batch, kvHeads, seq, headDim],
  ];
  const outputs = shapes.map((shape) => (half ? allocateF16Words(shape) : allocate(shape)));
  const code = shaderText(`attention heads ${shapeKey(s)} ${half}`, () => headsShader(s, half));
  dispatchRaw('ArlAttentionHeads', code, [...outputs, qkv, cos, sin], null, grid(Math.ceil(tf.util.sizeFromShape(qkv.shape) / 2 / 256)));
  return outputs;
}

/** ArlAttentionHeadsGrad: {dq, dk, dv, cos, sin} (f32, the forward's output shapes) -> dqkv [B*T, (H + 2 KV) hd]. */
export function attentionHeadsGradKernel(args: { inputs: tf.NamedTensorInfoMap; attrs?: tf.NamedAttrMap }): tf.TensorInfo {
  const { dq, dk, dv, cos, sin } = args.inputs as Record<string, tf.TensorInfo>;
  const s = shapeOf(args.attrs);
  const dqkv = allocate([s.batch * s.seq, (s.heads + 2 * s.kvHeads) * s.headDim]);
  const code = shaderText(`attention heads grad ${shapeKey(s)}`, () => headsGradShader(s));
  dispatchRaw('ArlAttentionHeadsGrad', code, [dqkv, dq, dk, dv, cos, sin], null, grid(Math.ceil(tf.util.sizeFromShape(dqkv.shape) / 2 / 256)));
  return dqkv;
}
