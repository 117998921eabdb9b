/**
 * BatchMatMul on webgpu for float32 operands with at least one full tile each way, registered over
 * tfjs's own (which it falls back to otherwise). tfjs's kernel tiles 32x32 with 64 threads; this
 * one tiles TILE x TILE with 256 threads, each computing (TILE/16)^2 outputs held in registers as
 * vec4 rows. Operands are staged k-major in workgroup memory as vec4s, so one k step reads TILE/32
 * vec4s of each operand per thread (not TILE/16 scalars each): workgroup-memory reads, not
 * arithmetic, bounded the scalar version. The next K tile is loaded from global memory into
 * registers while the current one is multiplied. Transposed operands are read in their stored
 * order, so global loads stay coalesced.
 */
import * as tf from '@tensorflow/tfjs';
import { matmulKTile, matmulTile, stockMatmul, stockWebgpu } from '../../switches.ts';
import { allocate, builtins, dispatchRaw, flatIndex, grid, guardedRead, release, shaderText, type Uniform } from './runtime.ts';

/** K tile edge (8, 16 or 32; ARL_MATMUL_K_TILE picks, for measurements; tile * K tile >= 1,024). */
function kTileFor(tile: number): number {
  const chosen = matmulKTile();
  return [8, 16, 32].includes(chosen) && tile * chosen >= 1024 ? chosen : 16;
}

/**
 * WGSL that stages one operand's K tile: `load` reads this thread's share into registers
 * (`name`0, `name`1, ...: vec4s of 4 consecutive elements in stored order), `store` writes them
 * k-major into the workgroup array `name`Tile (TILE/4 vec4s per k). `kMajor`: stored [k, x]
 * (x contiguous), else [x, k] (k contiguous). `x`: the operand's outer size (m or n).
 */
function matmulStaging(name: 'a' | 'b', tile: number, kTile: number, kMajor: boolean, x: string): { load: string; store: string } {
  const shares = (tile * kTile) / 1024; // vec4s of this operand's tile per thread
  const vecsPerK = tile / 4;
  const load: string[] = [];
  const store: string[] = [];
  for (let l = 0; l < shares; l++) {
    const e = `(lidx + ${l * 256}u)`;
    const r = `${name}${l}`;
    if (kMajor) {
      // vec4 along x at (k, x4 * 4)
      const at = `let k = ${e} / ${vecsPerK}u; let gx = ${name}0x + (${e} % ${vecsPerK}u) * 4u; let gk = k0 + k;`;
      const elems = [0, 1, 2, 3].map((c) => guardedRead(name, `${name}Base + gk * ${x} + gx + ${c}u`, `gx + ${c}u < ${x} && gk < kEnd`));
      load.push(`{ ${at} ${r} = vec4<f32>(${elems.join(', ')}); }`);
      store.push(`${name}Tile[${e}] = ${r};`);
    } else {
      // vec4 along k at (x, k4 * 4); stored k-major one element per k row
      const at = `let xi = ${e} / ${kTile / 4}u; let gx = ${name}0x + xi; let gk = k0 + (${e} % ${kTile / 4}u) * 4u;`;
      const elems = [0, 1, 2, 3].map((c) => guardedRead(name, `${name}Base + gx * u.k + gk + ${c}u`, `gx < ${x} && gk + ${c}u < kEnd`));
      load.push(`{ ${at} ${r} = vec4<f32>(${elems.join(', ')}); }`);
      const comps = ['x', 'y', 'z', 'w'];
      store.push(`{ let xi = ${e} / ${kTile / 4}u; let k = (${e} % ${kTile / 4}u) * 4u; ${comps
        .map((c, i) => `${name}Tile[(k + ${i}u) * ${vecsPerK}u + xi / 4u][xi % 4u] = ${r}.${c};`)
        .join(' ')} }`);
    }
  }
  return { load: load.join('\n    '), store: store.join('\n    ') };
}

function matmulShader(tile: number, kTile: number, transposeA: boolean, transposeB: boolean): string {
  const quads = tile / 64; // vec4s of rows (and of columns) per thread
  const vecsPerK = tile / 4;
  const comps = ['x', 'y', 'z', 'w'];
  const acc = (r: number, q: number): string => `c${r}_${q}`;
  const decl: string[] = [];
  const fmas: string[] = [];
  const stores: string[] = [];
  for (let r = 0; r < 4 * quads; r++) {
    const row = `(${Math.floor(r / 4) * 16}u + ty) * 4u + ${r % 4}u`;
    for (let q = 0; q < quads; q++) {
      decl.push(`var ${acc(r, q)} = vec4<f32>(0.0);`);
      fmas.push(`${acc(r, q)} = fma(vec4<f32>(ra${Math.floor(r / 4)}.${comps[r % 4]}), rb${q}, ${acc(r, q)});`);
      const col = `n0 + (${q * 16}u + tx) * 4u`;
      stores.push(`{ let row = m0 + ${row}; let col = ${col}; if (row < u.m) { ${comps
        .map((c, i) => `if (col + ${i}u < u.n) { out[outBase + row * u.n + col + ${i}u] = ${acc(r, q)}.${c}; }`)
        .join(' ')} } }`);
    }
  }
  const aRegs = Array.from({ length: quads }, (_, i) => `let ra${i} = aTile[kk * ${vecsPerK}u + ${16 * i}u + ty];`).join('\n      ');
  const bRegs = Array.from({ length: quads }, (_, j) => `let rb${j} = bTile[kk * ${vecsPerK}u + ${16 * j}u + tx];`).join('\n      ');
  const stageA = matmulStaging('a', tile, kTile, transposeA, 'u.m');
  const stageB = matmulStaging('b', tile, kTile, !transposeB, 'u.n');
  const regs = Array.from({ length: (tile * kTile) / 1024 }, (_, l) => `var a${l} = vec4<f32>(0.0); var b${l} = vec4<f32>(0.0);`).join('\n  ');
  return `
@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
struct U { m: u32, n: u32, k: u32, batchA: u32, batchB: u32, splits: u32, kChunk: u32 };
@group(0) @binding(3) var<uniform> u: U;
var<workgroup> aTile: array<vec4<f32>, ${vecsPerK * kTile}>;
var<workgroup> bTile: array<vec4<f32>, ${vecsPerK * kTile}>;
@compute @workgroup_size(16, 16, 1) fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lidx: u32) {
  let tx = lid.x;
  let ty = lid.y;
  // z = batch * splits + split: split-K products write partial sums [splits, batch, m, n].
  let batch = wid.z / u.splits;
  let split = wid.z % u.splits;
  let kBegin = split * u.kChunk;
  let kEnd = min(u.k, kBegin + u.kChunk);
  let m0 = wid.y * ${tile}u;
  let n0 = wid.x * ${tile}u;
  let a0x = m0;
  let b0x = n0;
  let aBase = select(batch, 0u, u.batchA == 1u) * u.m * u.k;
  let bBase = select(batch, 0u, u.batchB == 1u) * u.k * u.n;
  let outBase = (split * (u.batchA + u.batchB - min(u.batchA, u.batchB)) + batch) * u.m * u.n;
  ${decl.join('\n  ')}
  ${regs}
  var k0 = kBegin;
  ${stageA.load}
  ${stageB.load}
  for (; k0 < kEnd; ) {
    ${stageA.store}
    ${stageB.store}
    workgroupBarrier();
    k0 += ${kTile}u;
    if (k0 < kEnd) {
      ${stageA.load}
      ${stageB.load}
    }
    for (var kk = 0u; kk < ${kTile}u; kk++) {
      ${aRegs}
      ${bRegs}
      ${fmas.join('\n      ')}
    }
    workgroupBarrier();
  }
  ${stores.join('\n  ')}
}`;
}

/** out[i] = sum over s of partials[s * size + i] (the split-K reduction). */
const SUM_SPLITS = `
@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read> partials: array<f32>;
struct U { size: u32, splits: u32 };
@group(0) @binding(2) var<uniform> u: U;
@compute @workgroup_size(256) fn main(${builtins}) {
  let i = ${flatIndex(256)};
  if (i >= u.size) { return; }
  var acc = 0.0;
  for (var s = 0u; s < u.splits; s++) { acc += partials[s * u.size + i]; }
  out[i] = acc;
}`;

/** Output tiles below which a product is split along K (about two waves of workgroups on a large GPU). */
const SPLIT_K_BELOW_TILES = 256;
/** Smallest K range one split handles. */
const SPLIT_K_MIN_CHUNK = 512;

/**
 * Products where tfjs's own matmul measured faster than ours on an H200 (docs/gpu-runs/
 * 2026-11-22T0538-h200-matmul.jsonl, per-shape GPU times with ARL_STOCK_MATMUL=1 against ours),
 * as "transposeA transposeB m n k": the fused q/k/v weight gradient of the 512-wide model
 * (x^T [8192,512] by dQKV [8192,1536]: ours 0.75 ms, tfjs 0.47 ms per call). Every other measured
 * shape was as fast or faster with ours. A fixed table keeps the choice deterministic.
 */
const STOCK_FASTER = new Set(['true false 512 1536 8192']);

/** Our BatchMatMul, taking `stock` (tfjs's own) for the products it leaves to tfjs. */
export const batchMatMulKernel = (stock: tf.KernelConfig) => (args: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap }): tf.TensorInfo => {
  const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
  const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
  const ra = a.shape.length;
  const rb = b.shape.length;
  const m = transposeA ? a.shape[ra - 1] : a.shape[ra - 2];
  const k = transposeA ? a.shape[ra - 2] : a.shape[ra - 1];
  const n = transposeB ? b.shape[rb - 2] : b.shape[rb - 1];
  const batchA = tf.util.sizeFromShape(a.shape.slice(0, -2));
  const batchB = tf.util.sizeFromShape(b.shape.slice(0, -2));
  // Tile edge 64 or 128 (ARL_MATMUL_TILE picks, for measurements).
  const tile = matmulTile();
  const sameBatch = batchA === batchB || batchA === 1 || batchB === 1;
  // Small or oddly batched products stay with tfjs (its split-K and small-output programs suit them).
  const stockFaster = batchA === 1 && batchB === 1 && STOCK_FASTER.has(`${transposeA} ${transposeB} ${m} ${n} ${k}`);
  if (stockWebgpu() || stockMatmul() || stockFaster || a.dtype !== 'float32' || b.dtype !== 'float32' || m < tile || n < tile || !sameBatch || ra !== rb) {
    return stock.kernelFunc(args as never) as tf.TensorInfo;
  }
  const batch = Math.max(batchA, batchB);
  const outShape = [...(batchA >= batchB ? a.shape : b.shape).slice(0, -2), m, n];
  const out = allocate(outShape);
  // Few output tiles and a long K (weight gradients: [d, d'] from 8,192 rows): split K so every
  // multiprocessor gets work, then add the partial products.
  const tiles = Math.ceil(n / tile) * Math.ceil(m / tile) * batch;
  const splits = tiles >= SPLIT_K_BELOW_TILES ? 1 : Math.max(1, Math.min(Math.ceil(SPLIT_K_BELOW_TILES / tiles), Math.floor(k / SPLIT_K_MIN_CHUNK)));
  const kTile = kTileFor(tile);
  const kChunk = Math.ceil(k / splits / kTile) * kTile;
  const target = splits > 1 ? allocate([splits * batch * m * n]) : out;
  const uniforms: Uniform[] = [m, n, k, batchA, batchB, splits, kChunk].map((v) => ({ type: 'uint32', data: [v] }));
  dispatchRaw('ArlMatMul', shaderText(`matmul ${tile} ${kTile} ${transposeA} ${transposeB}`, () => matmulShader(tile, kTile, transposeA, transposeB)), [target, a, b], uniforms, [Math.ceil(n / tile), Math.ceil(m / tile), batch * splits]);
  if (splits > 1) {
    const size = batch * m * n;
    dispatchRaw('ArlSumSplits', SUM_SPLITS, [out, target], [{ type: 'uint32', data: [size] }, { type: 'uint32', data: [splits] }], grid(Math.ceil(size / 256)));
    release(target);
  }
  return out;
};
