/**
 * Matrix products on the tensor cores through WebGPU subgroup matrices: f16 operands, f32
 * accumulation and result. Each subgroup computes tm x tn tiles of 16x16 with
 * subgroupMatrixMultiplyAccumulate; a workgroup holds wm x wn subgroups. With kTile 0 every
 * subgroup loads its operands straight from storage; otherwise the workgroup stages kTile-deep
 * slices of both operands in workgroup memory (loaded into registers one slice ahead), so each
 * element is read from storage once per workgroup instead of once per subgroup.
 *
 * A batch of products (attention's, one per batch row and KV head) runs in one dispatch, one product per
 * workgroup layer (z): operands and result stacked [batch, rows, cols].
 *
 * Limits: M, N and K multiples of 16 (blocks past the edges of M and N are computed on clamped
 * rows and not stored; K slices past K are zero); one f16 x f16 -> f32 16x16x16 configuration;
 * the subgroup size must be fixed (min = max) where the adapter reports it. Shapes are compiled into the shader (one pipeline
 * per shape and tiling). f16 operands live in int32 tensors of two f16 per word.
 */
import * as tf from '@tensorflow/tfjs';
import { f16TilingSpec } from '../../switches.ts';
import { type CausalHint, causalSkips } from '../matmul.ts';
import { causalKRange } from './causal-range.ts';
import { F16_FEATURES, f16Instance } from './f16-device.ts';
import { builtins, dispatchRaw, flatIndex, grid, guardedRead, release, shaderText, tryComputePipeline, type Uniform, type WebgpuBackend } from './runtime.ts';

/** `batch` f16 matrices, each row-major [rows, cols], stacked; two f16 per 32-bit word (element 2i in the low half). */
export interface F16Matrix {
  words: tf.TensorInfo;
  batch: number;
  rows: number;
  cols: number;
}

/**
 * How a product is split: subgroup tiles (tm x tn of 16x16), subgroups per workgroup (wm x wn), staged K slice
 * (0: none), and how a staged slice is copied: by every invocation, 8 f16 at a time (false), or by the subgroups,
 * 16x16 blocks loaded and stored as subgroup matrices (true: workgroup memory takes one f16 per store otherwise).
 */
export interface F16Tiling {
  tm: number;
  tn: number;
  wm: number;
  wn: number;
  kTile: number;
  matrixCopy: boolean;
}

export interface F16MatmulOptions {
  transposeA?: boolean;
  transposeB?: boolean;
  tiling?: F16Tiling;
  /** Causal attention's product this is, if one (its zeros are then skipped where the tiling allows). */
  causal?: CausalHint;
}

/**
 * 2x2 tiles per subgroup, 2x2 subgroups (64 x 64 a workgroup), 32-deep slices staged in workgroup memory: on an H100
 * 94-115 TFLOP/s at the 1.1B projection shapes, and the fastest measured at attention's batched products (head size 64)
 * and at [4096 x 2048] x [2048 x 2048] (docs/gpu-runs/2026-12-06-h100-robustness-tiles/).
 */
export const DEFAULT_F16_TILING: F16Tiling = { tm: 2, tn: 2, wm: 2, wn: 2, kTile: 32, matrixCopy: false };

/**
 * 4x4 tiles per subgroup, 2x2 subgroups (128 x 128 a workgroup): on an H100 faster than the default from
 * [4096 x 2048] x [2048 x 5632] or [4096 x 5632] x [5632 x 2048] up (124-166 against 103-125 TFLOP/s), slower below
 * (fewer workgroups than keep the GPU busy; same run).
 */
export const LARGE_F16_TILING: F16Tiling = { tm: 4, tn: 4, wm: 2, wn: 2, kTile: 32, matrixCopy: false };

/** Multiply-adds from which a single product takes LARGE_F16_TILING: the least of the two shapes it was faster at. */
const LARGE_PRODUCT = 4096 * 2048 * 5632;

let parsedSpec: { spec: string; tiling: F16Tiling } | null = null;

/** ARL_F16_TILING where set (throws when it does not parse; parsed once per value), else null. */
function forcedF16Tiling(): F16Tiling | null {
  const spec = f16TilingSpec();
  if (!spec) return null;
  if (parsedSpec?.spec !== spec) parsedSpec = { spec, tiling: parseTiling(spec) };
  return parsedSpec.tiling;
}

/** The tiling `batch` products m x k x n take: ARL_F16_TILING where set, else LARGE_F16_TILING for a large single product, else the default. */
export function f16TilingFor(m: number, n: number, k: number, batch = 1): F16Tiling {
  return forcedF16Tiling() ?? (batch === 1 && m * n * k >= LARGE_PRODUCT ? LARGE_F16_TILING : DEFAULT_F16_TILING);
}

/** Every tiling a product may take in this process (the start-up self-check checks each). */
export function f16TilingsInUse(): F16Tiling[] {
  const forced = forcedF16Tiling();
  return forced ? [forced] : [DEFAULT_F16_TILING, LARGE_F16_TILING];
}

/** Padding of staged rows, in f16: rows stay 16-byte aligned and fall on different banks. */
const PAD = 8;

export interface SubgroupMatrixConfig {
  componentType: string;
  resultComponentType: string;
  M: number;
  N: number;
  K: number;
}
interface F16Device {
  features: { has(name: string): boolean };
  limits: { maxComputeWorkgroupStorageSize: number; maxComputeInvocationsPerWorkgroup: number };
  adapterInfo?: { subgroupMinSize?: number; subgroupMaxSize?: number; subgroupMatrixConfigs?: readonly SubgroupMatrixConfig[] };
}

const device = (): F16Device => (tf.backend() as unknown as { device: F16Device }).device;

/**
 * Null when `configs` has the f16 x f16 -> f32 16x16x16 configuration, or lists nothing at all:
 * some dawn.node builds expose the subgroup-matrix feature with an empty list (the H200's ran the
 * probe's f16 product correctly with it), so an empty list is unknown, and the numeric self-check
 * decides. Else one line naming what the adapter offers.
 */
export function subgroupMatrixConfigProblem(configs: readonly SubgroupMatrixConfig[]): string | null {
  if (configs.length === 0) return null;
  const is = (value: string, want: string): boolean => String(value).toLowerCase() === want;
  if (configs.some((c) => is(c.componentType, 'f16') && is(c.resultComponentType, 'f32') && c.M === 16 && c.N === 16 && c.K === 16)) return null;
  const offered = configs.map((c) => `${c.componentType}->${c.resultComponentType} ${c.M}x${c.N}x${c.K}`).join(', ');
  return `the adapter has no f16 x f16 -> f32 16x16x16 subgroup-matrix configuration (it has: ${offered})`;
}

/** The subgroup-matrix configurations listed: the device's copy of the adapter info may lack the list the adapter's own has. */
function listedConfigs(): readonly SubgroupMatrixConfig[] {
  const own = device().adapterInfo?.subgroupMatrixConfigs ?? [];
  return own.length > 0 ? own : f16Instance.adapterConfigs;
}

/** Whether the adapter lists any subgroup-matrix configuration (else only the self-check vouches for the kernel). */
export function f16ConfigsListed(): boolean {
  return listedConfigs().length > 0;
}

/**
 * Null when this device can run the f16 matmul, else one line naming what is missing: the
 * backend, a feature (and whether it was asked for), the 16x16x16 f16 -> f32 configuration where
 * the adapter lists its configurations, or a fixed subgroup size where it reports one.
 */
export function f16MatmulUnsupported(): string | null {
  if (tf.getBackend() !== 'webgpu') return `the f16 matmul needs the webgpu backend (this run uses ${tf.getBackend()})`;
  const dev = device();
  const missing = F16_FEATURES.filter((f) => !dev.features.has(f));
  if (missing.length > 0) {
    if (!f16Instance.requested) return `the WebGPU device lacks ${missing.join(', ')}: the f16 features were not requested (start the webgpu backend with ARL_WEBGPU_F16=1)`;
    return `the WebGPU adapter lacks ${missing.join(', ')} (it offers ${f16Instance.adapterFeatures.join(', ') || 'none of them'})`;
  }
  const info = dev.adapterInfo ?? {};
  const configProblem = subgroupMatrixConfigProblem(listedConfigs());
  if (configProblem) return configProblem;
  if (info.subgroupMinSize && info.subgroupMinSize !== info.subgroupMaxSize) {
    return `the subgroup size is not fixed (${info.subgroupMinSize} to ${info.subgroupMaxSize ?? '?'}); the f16 matmul assumes one size`;
  }
  return null;
}

/** Subgroup size of a product's workgroups: the adapter's, or NVIDIA's 32 where it reports none (the self-check then decides). */
const subgroupSize = (): number => device().adapterInfo?.subgroupMaxSize || 32;

/** Rows and columns of a product a [.., ..] x b [.., ..] under the transposes, or throws. */
function productShape(a: F16Matrix, b: F16Matrix, transposeA: boolean, transposeB: boolean): { m: number; n: number; k: number } {
  const [m, k] = transposeA ? [a.cols, a.rows] : [a.rows, a.cols];
  const [kb, n] = transposeB ? [b.cols, b.rows] : [b.rows, b.cols];
  if (k !== kb) throw new Error(`f16 matmul: inner sizes differ (${k} and ${kb})`);
  if ([m, n, k].some((d) => d < 16 || d % 16 !== 0)) throw new Error(`f16 matmul: M, N and K must be multiples of 16 (got ${m}, ${n}, ${k})`);
  return { m, n, k };
}

/** Null when `t` fits this device, else why not. */
export function f16TilingProblem(t: F16Tiling): string | null {
  const dims = [t.tm, t.tn, t.wm, t.wn];
  if (!dims.every((d) => Number.isInteger(d) && d >= 1)) return 'tile and subgroup counts must be positive integers';
  if (![0, 16, 32, 64].includes(t.kTile)) return 'kTile must be 0, 16, 32 or 64';
  if (t.matrixCopy && t.kTile === 0) return 'a matrix copy needs a staged slice (kTile above 0)';
  const { limits } = device();
  const invocations = subgroupSize() * t.wm * t.wn;
  if (invocations > limits.maxComputeInvocationsPerWorkgroup) return `${invocations} invocations per workgroup (limit ${limits.maxComputeInvocationsPerWorkgroup})`;
  const bytes = stagedBytes(t);
  if (bytes > limits.maxComputeWorkgroupStorageSize) return `${bytes} bytes of workgroup memory (limit ${limits.maxComputeWorkgroupStorageSize})`;
  return null;
}

/** Workgroup memory of a staged tiling: the larger of the two layouts (operand transposed or not). */
function stagedBytes(t: F16Tiling): number {
  if (t.kTile === 0) return 0;
  const tile = (edge: number): number => Math.max(edge * (t.kTile + PAD), t.kTile * (edge + PAD));
  return 2 * (tile(16 * t.tm * t.wm) + tile(16 * t.tn * t.wn));
}

/** A stored operand tile: `rows` x `cols` of its stored layout, from (r0, c0) of a matrix `gr` x `gc` at element `base`. */
interface StoredTile {
  name: 'a' | 'b';
  base: string;
  rows: number;
  cols: number;
  r0: string;
  c0: string;
  gr: number;
  gc: number;
}

/** A staged tile's copy: module-scope declarations, function-scope registers, the load into them and the store out. */
interface TileCopy {
  decl: string;
  regs: string;
  load: string;
  store: string;
}

/** One unit of a tile's copy: `at` binds r and c (its first row and column in the tile), `inside` tests it is in bounds. */
interface CopyShare {
  /** Register slot. */
  s: number;
  /** The unit's index in the tile. */
  e: string;
  at: string;
  inside: string;
}

/** A tile cut into units of `rows` x `cols`, dealt in turn to `workers` (numbered by `worker`): every worker's shares. */
function copyShares(tile: StoredTile, rows: number, cols: number, worker: string, workers: number): { shares: CopyShare[]; total: number } {
  const perRow = tile.cols / cols;
  const total = (tile.rows / rows) * perRow;
  const shares = Array.from({ length: Math.ceil(total / workers) }, (_, s) => {
    const e = `(${worker} + ${s * workers}u)`;
    const row = rows === 1 ? `${e} / ${perRow}u` : `(${e} / ${perRow}u) * ${rows}u`;
    const at = `let r = ${row}; let c = (${e} % ${perRow}u) * ${cols}u;`;
    return { s, e, at, inside: `${e} < ${total}u && ${tile.r0} + r < ${tile.gr}u && ${tile.c0} + c < ${tile.gc}u` };
  });
  return { shares, total };
}

/** WGSL that reads this invocation's share of a tile into registers, 8 f16 at a time, and writes it to workgroup memory. */
function tileCopy(tile: StoredTile, invocations: number): TileCopy {
  const { shares, total } = copyShares(tile, 1, 8, 'lid', invocations);
  const src = tile.name.toUpperCase();
  const reg = `${tile.name}Reg`;
  const wg = `${tile.name}Tile`;
  const load = shares.map(({ s, at, inside }) => `{ ${at} let ok = ${inside}; ${reg}[${s}] = ${guardedRead(src, `(${tile.base} + (${tile.r0} + r) * ${tile.gc}u + ${tile.c0} + c) / 8u`, 'ok', 'vec4<u32>(0u)')}; }`);
  const store = shares.map(({ s, e, at }) => {
    const halves = [0, 1, 2, 3].map((w) => `let h${w} = bitcast<vec2<f16>>(${reg}[${s}][${w}]); ${wg}[o + ${2 * w}u] = h${w}.x; ${wg}[o + ${2 * w + 1}u] = h${w}.y;`);
    return `if (${e} < ${total}u) { ${at} let o = r * ${tile.cols + PAD}u + c; ${halves.join(' ')} }`;
  });
  const decl = `var<workgroup> ${wg}: array<f16, ${tile.rows * (tile.cols + PAD)}>;`;
  return { decl: `${decl}\nvar<private> ${reg}: array<vec4<u32>, ${shares.length}>;`, regs: '', load: load.join('\n    '), store: store.join('\n    ') };
}

/**
 * WGSL that copies a tile through subgroup matrices: each subgroup loads its share of the tile's 16x16 blocks
 * from storage into matrices (zero past the matrix's edges), and stores them to workgroup memory.
 */
function tileMatrixCopy(tile: StoredTile, type: 'L' | 'R', subgroups: number): TileCopy {
  const { shares, total } = copyShares(tile, 16, 16, 'sg', subgroups);
  const src = tile.name.toUpperCase();
  const reg = `${tile.name}Blocks`;
  const wg = `${tile.name}Tile`;
  const load = shares.map(
    ({ s, at, inside }) =>
      `{ ${at} if (${inside}) { ${reg}[${s}] = subgroupMatrixLoad<${type}, row_major>(&${src}, ${tile.base} + (${tile.r0} + r) * ${tile.gc}u + ${tile.c0} + c, ${tile.gc}u); } else { ${reg}[${s}] = ${type}(); } }`,
  );
  const store = shares.map(({ s, e, at }) => `if (${e} < ${total}u) { ${at} subgroupMatrixStore<row_major>(&${wg}, r * ${tile.cols + PAD}u + c, ${reg}[${s}], ${tile.cols + PAD}u); }`);
  return { decl: `var<workgroup> ${wg}: array<f16, ${tile.rows * (tile.cols + PAD)}>;`, regs: `var ${reg}: array<${type}, ${shares.length}>;`, load: load.join('\n    '), store: store.join('\n    ') };
}

/**
 * subgroupMatrixLoad of a left (m, k) or right (k, n) operand at matrix coordinates (row, col)
 * from `ptr`, stored row-major with `stride`, or transposed (then read column-major).
 */
function matrixLoad(type: string, ptr: string, transposed: boolean, row: string, col: string, stride: number, base?: string): string {
  const [x, y] = transposed ? [col, row] : [row, col];
  return `subgroupMatrixLoad<${type}, ${transposed ? 'col_major' : 'row_major'}>(&${ptr}, ${base ? `${base} + ` : ''}(${x}) * ${stride}u + ${y}, ${stride}u)`;
}

/** The WGSL of one product shape under one tiling, for `batch` stacked products. */
export function matmulF16Shader(m: number, n: number, k: number, transposeA: boolean, transposeB: boolean, t: F16Tiling, sg: number, batch = 1, causal?: CausalHint): string {
  const bm = 16 * t.tm * t.wm;
  const bn = 16 * t.tn * t.wn;
  // Causal attention's products (CausalHint): the K range of a workgroup's tile, or where its K slices resume.
  const skips = causal && causalSkips(causal, bm, t.kTile || 16, m, n, k) ? causal : undefined;
  const { kEnd, advance, decl: causalDecl } = causalKRange(skips?.causal, `${skips?.seq}u`, bm, `${k}u`);
  const invocations = sg * t.wm * t.wn;
  const staged = t.kTile > 0;
  const multi = t.wm * t.wn > 1;
  // A single product keeps constant offsets, which the compiler folds away.
  const layerOffset = (size: number): string => (batch > 1 ? `wid.z * ${size}u` : '0u');
  // Stored layouts: A is [m, k] or (transposed) [k, m]; B is [k, n] or [n, k].
  const strideA = transposeA ? m : k;
  const strideB = transposeB ? k : n;
  const aTile: StoredTile = transposeA
    ? { name: 'a', base: 'aBase', rows: t.kTile, cols: bm, r0: 'k0', c0: 'm0', gr: k, gc: m }
    : { name: 'a', base: 'aBase', rows: bm, cols: t.kTile, r0: 'm0', c0: 'k0', gr: m, gc: k };
  const bTile: StoredTile = transposeB
    ? { name: 'b', base: 'bBase', rows: bn, cols: t.kTile, r0: 'n0', c0: 'k0', gr: n, gc: k }
    : { name: 'b', base: 'bBase', rows: t.kTile, cols: bn, r0: 'k0', c0: 'n0', gr: k, gc: n };
  const subgroups = t.wm * t.wn;
  const copy = (tile: StoredTile, type: 'L' | 'R'): TileCopy | null => (!staged ? null : t.matrixCopy ? tileMatrixCopy(tile, type, subgroups) : tileCopy(tile, invocations));
  const copyA = copy(aTile, 'L');
  const copyB = copy(bTile, 'R');
  // Every tile loop is written out, each matrix a variable of its own: arrays of subgroup matrices indexed in loops
  // may be kept in memory rather than registers by the driver.
  const each = (count: number, line: (i: number) => string, indent = '      '): string => Array.from({ length: count }, (_, i) => line(i)).join(`\n${indent}`);
  const pairs = (line: (i: number, j: number) => string, indent?: string): string => each(t.tm, (i) => each(t.tn, (j) => line(i, j), indent), indent);
  // Rows past M (columns past N) read clamped rows; their results are not stored.
  const leftLoad = (i: number, kk: string): string =>
    staged
      ? matrixLoad('L', 'aTile', transposeA, `sr * ${16 * t.tm}u + ${16 * i}u`, kk, aTile.cols + PAD)
      : matrixLoad('L', 'A', transposeA, `min(row0 + ${16 * i}u, ${m - 16}u)`, kk, strideA, 'aBase');
  const rightLoad = (j: number, kk: string): string =>
    staged
      ? matrixLoad('R', 'bTile', transposeB, kk, `sc * ${16 * t.tn}u + ${16 * j}u`, bTile.cols + PAD)
      : matrixLoad('R', 'B', transposeB, kk, `min(col0 + ${16 * j}u, ${n - 16}u)`, strideB, 'bBase');
  const multiply = (kk: string): string => `
      ${each(t.tm, (i) => `let left${i} = ${leftLoad(i, kk)};`)}
      ${each(t.tn, (j) => `let right${j} = ${rightLoad(j, kk)};`)}
      ${pairs((i, j) => `acc${i}_${j} = subgroupMatrixMultiplyAccumulate(left${i}, right${j}, acc${i}_${j});`)}`;
  const main = staged
    ? `
  ${copyA!.regs}
  ${copyB!.regs}
  var k0 = ${advance('0u')};
  ${copyA!.load}
  ${copyB!.load}
  for (; k0 < kEnd; ) {
    ${copyA!.store}
    ${copyB!.store}
    workgroupBarrier();
    k0 = ${advance(`k0 + ${t.kTile}u`)};
    if (k0 < kEnd) {
      ${copyA!.load}
      ${copyB!.load}
    }
    ${Array.from({ length: t.kTile / 16 }, (_, step) => `{${multiply(`${16 * step}u`)}
    }`).join('\n    ')}
    workgroupBarrier();
  }`
    : `
  for (var kk = ${advance('0u')}; kk < kEnd; kk = ${advance('kk + 16u')}) {${multiply('kk')}
  }`;
  // Storage operands are bound as f16 for matrix loads, as vec4<u32> (8 f16) for copies by invocations.
  const byInvocations = staged && !t.matrixCopy;
  const operand = byInvocations ? 'array<vec4<u32>>' : 'array<f16>';
  const ids = [
    '@builtin(workgroup_id) wid: vec3<u32>',
    ...(byInvocations ? ['@builtin(local_invocation_index) lid: u32'] : []),
    ...(multi ? ['@builtin(subgroup_id) sg: u32'] : []),
  ];
  return `enable f16;
enable subgroups;
enable chromium_experimental_subgroup_matrix;
// Each subgroup's offsets depend on its subgroup_id: uniform within the subgroup, which is what
// the matrix builtins need, though not within the workgroup as the analysis would demand.
diagnostic(off, chromium_experimental.subgroup_matrix_uniformity);
alias L = subgroup_matrix_left<f16, 16, 16>;
alias R = subgroup_matrix_right<f16, 16, 16>;
alias Acc = subgroup_matrix_result<f32, 16, 16>;
@group(0) @binding(0) var<storage, read_write> C: array<f32>;
@group(0) @binding(1) var<storage, read> A: ${operand};
@group(0) @binding(2) var<storage, read> B: ${operand};
${staged ? `${copyA!.decl}\n${copyB!.decl}` : ''}
${causalDecl}
@compute @workgroup_size(${invocations}) fn main(${ids.join(', ')}) {
  ${multi ? '' : 'let sg = 0u;'}
  let sr = ${multi ? `sg / ${t.wn}u` : '0u'};
  let sc = ${multi ? `sg % ${t.wn}u` : '0u'};
  let m0 = wid.y * ${bm}u;
  let n0 = wid.x * ${bn}u;
  let row0 = m0 + sr * ${16 * t.tm}u;
  let col0 = n0 + sc * ${16 * t.tn}u;
  // Element offsets of this workgroup's product in the stacked operands and result.
  let aBase = ${layerOffset(m * k)};
  let bBase = ${layerOffset(k * n)};
  let cBase = ${layerOffset(m * n)};
  let kEnd = ${kEnd};
  ${pairs((i, j) => `var acc${i}_${j}: Acc;`, '  ')}
  ${main}
  ${pairs(
    (i, j) =>
      `if (row0 + ${16 * i}u < ${m}u && col0 + ${16 * j}u < ${n}u) { subgroupMatrixStore<row_major>(&C, cBase + (row0 + ${16 * i}u) * ${n}u + col0 + ${16 * j}u, acc${i}_${j}, ${n}u); }`,
    '  ',
  )}
}`;
}

/** Compiles the kernel of a product ahead of use: null when ready, else why it cannot run (unsupported, bad tiling, compile error). */
export async function prepareMatmulF16(m: number, n: number, k: number, options: F16MatmulOptions = {}): Promise<string | null> {
  const unsupported = f16MatmulUnsupported();
  if (unsupported) return unsupported;
  const tiling = options.tiling ?? f16TilingFor(m, n, k);
  const problem = f16TilingProblem(tiling);
  if (problem) return `tiling ${formatTiling(tiling)}: ${problem}`;
  const code = matmulF16Shader(m, n, k, options.transposeA ?? false, options.transposeB ?? false, tiling, subgroupSize());
  const error = await tryComputePipeline('ArlMatMulF16', code);
  return error ? `the f16 matmul kernel did not compile: ${error}` : null;
}

/** "TMxTN/WMxWN/K", "m" appended for a matrix copy: e.g. 2x2/2x2/32 (K 0: unstaged), 2x2/2x2/32m. */
export function formatTiling(t: F16Tiling): string {
  return `${t.tm}x${t.tn}/${t.wm}x${t.wn}/${t.kTile}${t.matrixCopy ? 'm' : ''}`;
}

/** The inverse of formatTiling, or throws. */
export function parseTiling(spec: string): F16Tiling {
  const match = /^(\d+)x(\d+)\/(\d+)x(\d+)\/(\d+)(m?)$/.exec(spec.trim());
  if (!match) throw new Error(`tiling "${spec}" is not TMxTN/WMxWN/K[m] (e.g. 2x2/2x2/32, or 2x2/2x2/32m to copy slices as subgroup matrices)`);
  const [tm, tn, wm, wn, kTile] = match.slice(1, 6).map(Number);
  return { tm, tn, wm, wn, kTile, matrixCopy: match[6] === 'm' };
}

/** The workgroups of `batch` products [m, n] under `tiling`: one per output block, x along n, z along the batch. */
export function f16Workgroups(m: number, n: number, tiling: F16Tiling, batch = 1): [number, number, number] {
  return [Math.ceil(n / (16 * tiling.tn * tiling.wn)), Math.ceil(m / (16 * tiling.tm * tiling.wm)), batch];
}

/**
 * Tests only: rewrites each product's shader and adds the uniforms the rewrite binds (the
 * subgroup-matrix builtins emulated in plain WGSL, where the adapter lacks them).
 */
export const f16ShaderOverride: { rewrite: ((code: string) => { code: string; uniforms: Uniform[] }) | null } = { rewrite: null };

/** matmulF16 as a TensorInfo (for kernels): a new f32 buffer [m, n], or [batch, m, n] for a batch of products. */
export function matmulF16Info(a: F16Matrix, b: F16Matrix, options: F16MatmulOptions = {}): tf.TensorInfo {
  const transposeA = options.transposeA ?? false;
  const transposeB = options.transposeB ?? false;
  const { m, n, k } = productShape(a, b, transposeA, transposeB);
  const { batch } = a;
  const tiling = options.tiling ?? f16TilingFor(m, n, k, batch);
  if (b.batch !== batch) throw new Error(`f16 matmul: batches differ (${batch} and ${b.batch})`);
  // Offsets are u32 in the shader.
  if (batch * Math.max(m * k, k * n, m * n) >= 2 ** 32) throw new Error(`f16 matmul: ${batch} products of ${m} x ${k} x ${n} overflow 32-bit offsets`);
  const backend = tf.backend() as unknown as WebgpuBackend;
  const out = backend.makeTensorInfo(batch > 1 ? [batch, m, n] : [m, n], 'float32');
  const sg = subgroupSize();
  const { causal } = options;
  const key = `f16 ${batch}x${m}x${k}x${n} ${transposeA} ${transposeB} ${formatTiling(tiling)} ${sg} ${causal?.causal} ${causal?.seq}`;
  const code = shaderText(key, () => matmulF16Shader(m, n, k, transposeA, transposeB, tiling, sg, batch, causal));
  const shader = f16ShaderOverride.rewrite?.(code) ?? { code, uniforms: null };
  dispatchRaw('ArlMatMulF16', shader.code, [out, a.words, b.words], shader.uniforms, f16Workgroups(m, n, tiling, batch));
  return out;
}

/**
 * out [m, n] (f32) = op(a) op(b), op transposing where asked, on the tensor cores ([batch, m, n] for a batch). Call
 * prepareMatmulF16 first for the shape: a shader that does not compile here is a fatal device error.
 */
export function matmulF16<T extends tf.Tensor2D | tf.Tensor3D = tf.Tensor2D>(a: F16Matrix, b: F16Matrix, options: F16MatmulOptions = {}): T {
  return tf.engine().makeTensorFromTensorInfo(matmulF16Info(a, b, options)) as T;
}

/** f32 -> f16 bits (round to nearest), and two of them as one word (the first in the low half). WGSL leaves pack2x16float of a value beyond f16's range indeterminate, so overflow is written as infinity (and NaN as NaN) by the bits: dynamic loss scaling detects an overflowed step by them. */
export const HALF = `
fn half(v: f32) -> u32 {
  let bits = bitcast<u32>(v);
  let magnitude = bits & 0x7fffffffu;
  let sign = (bits >> 16u) & 0x8000u;
  let rounded = pack2x16float(vec2<f32>(clamp(v, -65504.0, 65504.0), 0.0)) & 0xffffu;
  // 0x477ff000 is 65520, the least f32 that rounds to f16 infinity.
  return select(select(rounded, sign | 0x7c00u, magnitude >= 0x477ff000u), 0x7e00u, magnitude > 0x7f800000u);
}
fn halfPair(low: f32, high: f32) -> u32 { return half(low) | (half(high) << 16u); }`;

/** f32 -> f16, two per word, any element count (an odd last element is paired with zero); core WGSL, no shader-f16 needed. */
const TO_F16 = `
@group(0) @binding(0) var<storage, read_write> out: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
struct U { n: u32 };
@group(0) @binding(2) var<uniform> u: U;
${HALF}
@compute @workgroup_size(256) fn main(${builtins}) {
  let i = ${flatIndex(256)};
  if (2u * i >= u.n) { return; }
  // A branch, not select(), which would read the element past the end for an odd count.
  var high = 0.0;
  if (2u * i + 1u < u.n) { high = x[2u * i + 1u]; }
  out[i] = halfPair(x[2u * i], high);
}`;

/** TO_F16 for a multiple of four elements, four per invocation (one 16-byte read, one 8-byte write): the form every product operand takes. */
const TO_F16_BY_FOUR = `
@group(0) @binding(0) var<storage, read_write> out: array<vec2<u32>>;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
struct U { n: u32 };
@group(0) @binding(2) var<uniform> u: U;
${HALF}
@compute @workgroup_size(256) fn main(${builtins}) {
  let i = ${flatIndex(256)};
  if (i >= u.n) { return; }
  let v = x[i];
  out[i] = vec2<u32>(halfPair(v.x, v.y), halfPair(v.z, v.w));
}`;

/** f16 words -> f32. */
const FROM_F16 = `
@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read> words: array<u32>;
struct U { n: u32 };
@group(0) @binding(2) var<uniform> u: U;
@compute @workgroup_size(256) fn main(${builtins}) {
  let i = ${flatIndex(256)};
  if (i >= u.n) { return; }
  out[i] = unpack2x16float(words[i / 2u])[i % 2u];
}`;

/**
 * An f32 tensor [..., rows, cols] cast to f16 on the device, the leading axes a batch of matrices. Its words are shaped
 * [..., rows, cols / 2] where cols is even (so packedF16 reads the matrices back from them), else flat.
 */
export function toF16(x: tf.TensorInfo): F16Matrix {
  const [rows, cols] = x.shape.slice(-2);
  const batch = x.shape.slice(0, -2).reduce((p, d) => p * d, 1);
  const size = batch * rows * cols;
  const words = Math.ceil(size / 2);
  const out = cols % 2 === 0 ? allocateF16Words(x.shape) : (tf.backend() as unknown as WebgpuBackend).makeTensorInfo([words], 'int32');
  if (size % 4 === 0) dispatchRaw('ArlToF16', TO_F16_BY_FOUR, [out, x], [{ type: 'uint32', data: [size / 4] }], grid(Math.ceil(size / 4 / 256)));
  else dispatchRaw('ArlToF16', TO_F16, [out, x], [{ type: 'uint32', data: [size] }], grid(Math.ceil(words / 256)));
  return { words: out, batch, rows, cols };
}

/** A new buffer for the f16 values of an f32 tensor [..., cols] (cols even), two per word: int32 [..., cols / 2]. */
export function allocateF16Words(shape: readonly number[]): tf.TensorInfo {
  return (tf.backend() as unknown as WebgpuBackend).makeTensorInfo([...shape.slice(0, -1), shape[shape.length - 1] / 2], 'int32');
}

/** The f16 matrix (or batch of them) that toF16 wrote into words shaped [..., rows, cols / 2]. */
export function packedF16(words: tf.TensorInfo): F16Matrix {
  const shape = words.shape;
  if (words.dtype !== 'int32' || shape.length < 2 || shape.length > 3) throw new Error(`f16 operand: want int32 words [rows, cols / 2] or [batch, rows, cols / 2], got ${words.dtype} [${shape}]`);
  return { words, batch: shape.length === 3 ? shape[0] : 1, rows: shape.at(-2)!, cols: 2 * shape.at(-1)! };
}

/** f16 matrices widened to an f32 tensor: [rows, cols], or [batch, rows, cols] for a batch. */
export function fromF16<T extends tf.Tensor2D | tf.Tensor3D = tf.Tensor2D>(x: F16Matrix): T {
  const size = x.batch * x.rows * x.cols;
  const out = (tf.backend() as unknown as WebgpuBackend).makeTensorInfo(x.batch > 1 ? [x.batch, x.rows, x.cols] : [x.rows, x.cols], 'float32');
  dispatchRaw('ArlFromF16', FROM_F16, [out, x.words], [{ type: 'uint32', data: [size] }], grid(Math.ceil(size / 256)));
  return tf.engine().makeTensorFromTensorInfo(out) as T;
}

/** Frees an f16 matrix's buffer. */
export function disposeF16(x: F16Matrix): void {
  release(x.words);
}
