/**
 * BatchMatMul on webgpu for float32 operands with at least one full tile each way, registered over tfjs's own (which it
 * falls back to otherwise). tfjs's kernel tiles 32x32 with 64 threads; this one tiles TM x TN, each thread computing
 * R x C outputs (by default TM/16 x TN/16, so 256 threads) held in registers as vec4 rows, in 4 x 4 blocks strided
 * across the tile. Operands are staged k-major in workgroup memory as vec4s, so one k step reads a few vec4s of each
 * operand per thread (not scalars): workgroup-memory reads, not arithmetic, bounded the scalar version. The next K tile
 * is loaded from global memory into registers while the current one is multiplied. Transposed operands are read in
 * their stored order, so global loads stay coalesced. Where the output tiles would leave the GPU's last wave of
 * workgroups mostly empty, K is split and the partial products added (matmulSplits); in an unbatched product only the
 * tile rows after those that fill whole waves, if that costs less (matmulSplitPlan). Causal attention's products
 * (CausalHint in the attributes) skip the output tiles and K ranges that causality makes zero.
 *
 * A tiling (`MatmulTiling`, written as in ARL_MATMUL_TILING) also says whether the K tile's loop is written out in the
 * shader (`u`: Tint and the driver's compiler then see every workgroup-memory read and FMA of the tile at once; `u4`:
 * four k steps written out in a loop), whether global memory is read and written as vec4s where every size is a
 * multiple of 4 (`v`), whether the K tile is staged twice over (`d`: the next tile is stored while the current one is
 * multiplied, one barrier a tile instead of two), whether, with the loop written out, each k step's workgroup-memory
 * reads come before the previous step's FMAs (`p`), whether output tiles are taken in groups of rows so that
 * workgroups running at once share operand tiles in L2 (`g`), and whether each 32 threads cover 8 x 4 of the thread
 * grid (`w`: a k step then reads 8 distinct vec4s of B and 4 of A from workgroup memory, not 16 and 2; on an H100 1.1B
 * training ran at the default's speed with it, docs/benchmarks.md), and whether K tiles wholly inside both operands are
 * read without bounds checks, from per-thread vec4 addresses set once (`i`: each checked vec4 read costs compares and
 * selects beside the tile's FMAs, and the loop is bounded by instruction issue), and whether, with `i`, each operand's
 * later shares of the tile are addressed from its first share's address (`a`: fewer registers a thread, so more
 * workgroups may run at once), and whether operands stored with k contiguous are staged with each k step's vec4 columns
 * XOR-permuted (`s`: a subgroup's staging stores then reach 32 banks of workgroup memory, not 8 four times over).
 */
import * as tf from '@tensorflow/tfjs';
import { UserError } from '../../io/errors.ts';
import { type CausalHint, type CausalProduct, causalSkips } from '../matmul.ts';
import { causalKRange } from './causal-range.ts';
import { matmulSplitTail, matmulTilingSpec, matmulWaves, stockMatmul, stockWebgpu } from '../../switches.ts';
import { dawnAdapter } from './f16-device.ts';
import { allocate, builtins, dispatchRaw, flatIndex, grid, guardedRead, release, shaderText, type Uniform } from './runtime.ts';

export interface MatmulTiling {
  /** Output tile rows and columns of a workgroup: multiples of 32 up to 256. */
  tm: number;
  tn: number;
  /** Output rows and columns of one thread: multiples of 4 dividing tm and tn (so tm/rows x tn/cols threads). */
  rows: number;
  cols: number;
  /** K tile edge: 8, 16, 32 or 64, each operand's K tile whole vec4s per thread. */
  k: number;
  /** k steps of the K tile written out in the shader, in a loop over the tile (k: the whole tile; 1: the plain loop). */
  unrolled: number;
  /** Global reads and writes as vec4s where m, n and k are multiples of 4. */
  vec4: boolean;
  /** Two K tiles staged, one barrier a tile. */
  doubleBuffered: boolean;
  /** With the loop written out, each k step's workgroup-memory reads issued before the previous step's FMAs. */
  prefetched: boolean;
  /** Output tiles taken in groups of GROUP_ROWS rows, column by column, so that workgroups running together share operand tiles in L2. */
  grouped: boolean;
  /** Each 32 threads (a subgroup on NVIDIA and AMD) laid over 8 x 4 of the thread grid, not 16 x 2. */
  warpTiled: boolean;
  /** K tiles wholly inside both operands read without bounds checks (only edge tiles check each read). */
  interiorUnchecked: boolean;
  /** With interiorUnchecked, each operand's later shares addressed from its first share's address, not their own registers. */
  oneAddress: boolean;
  /**
   * Operands stored with k contiguous staged with each k step's vec4 columns permuted (an XOR by the step), so that the
   * 32 lanes of a subgroup write them to 32 banks of workgroup memory, not 8 (K 16) four times over.
   */
  swizzled: boolean;
}

/** Rows of output tiles in a group of a grouped tiling. */
const GROUP_ROWS = 8;
/** WGSL for a grouped tiling's tile coordinates (tileM, tileN) from the workgroup's place in the x-fastest launch order. */
const GROUPED_TILE = `
  let order = wid.y * nwg.x + wid.x;
  let perGroup = ${GROUP_ROWS}u * nwg.x;
  let firstRow = (order / perGroup) * ${GROUP_ROWS}u;
  let rows = min(nwg.y - firstRow, ${GROUP_ROWS}u);
  let tileM = firstRow + (order % perGroup) % rows;
  let tileN = (order % perGroup) / rows;`;

/** The product shader's uniforms, in their order in its struct U (all u32). */
const MATMUL_UNIFORMS = ['m', 'n', 'k', 'batchA', 'batchB', 'splits', 'kChunk', 'seq', 'headTiles', 'tailRow0'] as const;
/** A product's uniforms from their values by name: those not given (a causal product's seq, a tail split's) are 0. */
const matmulUniforms = (values: Partial<Record<(typeof MATMUL_UNIFORMS)[number], number>>): Uniform[] => MATMUL_UNIFORMS.map((f) => ({ type: 'uint32', data: [values[f] ?? 0] }));

/**
 * WGSL for a tail-split product's work item (unbatched, launched in one row of workgroups in order): the first
 * `headTiles` workgroups each take a whole output tile, row-major; the rest take pieces of the tiles of rows `tailRow0`
 * on, each a K range of `kChunk` (every tile's first range, then every tile's second, ...), whose partial sums go to
 * `partials` [splits, tail rows, n].
 */
const TAIL_TILE = (tm: number, tn: number): string => `
  let item = wid.x + wid.y * nwg.x;
  let tilesN = (u.n + ${tn - 1}u) / ${tn}u;
  let tailTiles = ((u.m + ${tm - 1}u) / ${tm}u - u.tailRow0) * tilesN;
  if (item >= u.headTiles + tailTiles * u.splits) { return; }
  let toPartials = item >= u.headTiles;
  // Pieces run split by split, so those running together read the same K range (shared in L2), as whole tiles do.
  let piece = item - min(item, u.headTiles);
  let tile = select(item, piece % tailTiles, toPartials);
  let tileM = select(0u, u.tailRow0, toPartials) + tile / tilesN;
  let tileN = tile % tilesN;
  let split = select(0u, piece / tailTiles, toPartials);
  let kBegin = split * u.kChunk;
  let batch = 0u;
  let rowBase = select(0u, u.tailRow0 * ${tm}u, toPartials);`;

/**
 * The tilings products get, tried in turn, unless ARL_MATMUL_TILING names others: 128 x 128 with the K loop written out
 * and vec4 global access (on an H100 17% more tokens/s than the loop at 29M and 1.1B), whole K tiles read unchecked
 * (another 9-12% at 1.1B), each operand's later shares addressed from its first (two workgroups an SM again: another
 * 1.4-1.9%), operands with k contiguous staged swizzled (another 2.8% at 1.1B), 128 x 64 for attention's 64-wide
 * products (docs/benchmarks.md). Software adapters keep the checked loop: lavapipe compiles the written-out shaders
 * ~10x slower, and the unchecked reads are unmeasured there.
 */
export const DEFAULT_MATMUL_TILINGS = { hardware: '128x128/16uvias,128x64/16uvias', software: '128x128/16v,128x64/16v' };

/** Threads of a tiling's workgroup. */
export const matmulThreads = (t: MatmulTiling): number => (t.tm / t.rows) * (t.tn / t.cols);

/**
 * "TMxTN/K", then any of u (or uN), v, d, p, g, w, i, a, s (see MatmulTiling), then "@RxC" where a thread's outputs are not the
 * default TM/16 x TN/16; e.g. 128x128/16uv or 128x128/16u4v@8x16.
 */
export function formatMatmulTiling(t: MatmulTiling): string {
  const unrolled = t.unrolled === t.k ? 'u' : t.unrolled > 1 ? `u${t.unrolled}` : '';
  const threadTile = t.rows === t.tm / 16 && t.cols === t.tn / 16 ? '' : `@${t.rows}x${t.cols}`;
  return `${t.tm}x${t.tn}/${t.k}${unrolled}${t.vec4 ? 'v' : ''}${t.doubleBuffered ? 'd' : ''}${t.prefetched ? 'p' : ''}${t.grouped ? 'g' : ''}${t.warpTiled ? 'w' : ''}${t.interiorUnchecked ? 'i' : ''}${t.oneAddress ? 'a' : ''}${t.swizzled ? 's' : ''}${threadTile}`;
}

/** The tiling `spec` names (formatMatmulTiling's form), or a line saying what is wrong with it. */
export function parseMatmulTiling(spec: string): MatmulTiling | string {
  const match = /^(\d+)x(\d+)\/(\d+)((?:u\d*|[vdpgwias])*)(?:@(\d+)x(\d+))?$/.exec(spec.trim());
  if (!match) return `matmul tiling "${spec}" is not TMxTN/K followed by any of u (or uN), v, d, p, g, w, i, a, s and an optional @RxC (e.g. 128x128/16uv)`;
  const [tm, tn, k] = [1, 2, 3].map((i) => Number(match[i]));
  const flags = match[4];
  const steps = /u(\d*)/.exec(flags);
  const unrolled = !steps ? 1 : steps[1] === '' ? k : Number(steps[1]);
  const [rows, cols] = match[5] === undefined ? [tm / 16, tn / 16] : [Number(match[5]), Number(match[6])];
  const tiling = { tm, tn, rows, cols, k, unrolled, vec4: flags.includes('v'), doubleBuffered: flags.includes('d'), prefetched: flags.includes('p'), grouped: flags.includes('g'), warpTiled: flags.includes('w'), interiorUnchecked: flags.includes('i'), oneAddress: flags.includes('a'), swizzled: flags.includes('s') };
  if (![tm, tn].every((t) => t >= 32 && t <= 256 && t % 32 === 0)) return `matmul tiling "${spec}": TM and TN must be multiples of 32 up to 256`;
  if (![rows, cols].every((r) => Number.isInteger(r) && r >= 4 && r % 4 === 0) || tm % rows !== 0 || tn % cols !== 0) {
    return `matmul tiling "${spec}": a thread's outputs R x C must be multiples of 4 dividing TM and TN (the default TM/16 x TN/16 needs TM and TN multiples of 64)`;
  }
  const threads = matmulThreads(tiling);
  if (threads < 32 || threads > 256 || threads % 32 !== 0) return `matmul tiling "${spec}": (TM/R) x (TN/C) = ${threads} threads, not a multiple of 32 from 32 to 256`;
  if (![8, 16, 32, 64].includes(k) || ((tm * k) / 4) % threads !== 0 || ((tn * k) / 4) % threads !== 0) return `matmul tiling "${spec}": K must be 8, 16, 32 or 64, with TM * K / 4 and TN * K / 4 multiples of the ${threads} threads`;
  if (k % unrolled !== 0) return `matmul tiling "${spec}": u${unrolled} must divide K (${k})`;
  if (tiling.warpTiled && ((tn / cols) % 8 !== 0 || (tm / rows) % 4 !== 0)) return `matmul tiling "${spec}": w (8 x 4 threads a subgroup) needs TN/C a multiple of 8 and TM/R of 4`;
  if (tiling.oneAddress && !(tiling.interiorUnchecked && tiling.vec4)) return `matmul tiling "${spec}": a (one address per operand) needs i and v (the unchecked vec4 reads it addresses)`;
  if (tiling.prefetched && unrolled !== k) return `matmul tiling "${spec}": p (reads before the previous step's FMAs) needs u (the whole loop written out)`;
  return tiling;
}

/** Bytes of workgroup memory a tiling stages. */
export function matmulTilingBytes(t: MatmulTiling): number {
  return (t.tm + t.tn) * t.k * 4 * (t.doubleBuffered ? 2 : 1);
}

/**
 * WGSL that stages one operand's K tile: `load(checked)` reads this thread's share into registers
 * (`name`0, `name`1, ...: vec4s of 4 consecutive elements in stored order; unchecked, with no bounds checks and, for
 * vec4 reads, from the addresses `pointers` declares), `store` writes them k-major into the workgroup array `name`Tile
 * (tile/4 vec4s per k) from vec4 `offset` on. `kMajor`: stored [k, x] (x contiguous), else [x, k] (k contiguous). `x`:
 * the operand's outer size (m or n). `oneAddress`: later shares' unchecked reads index from the first share's address.
 * `swizzled` (where not kMajor): k step s's vec4 columns stored XOR stagingSwizzle(s), which fragment reads undo.
 */
function matmulStaging(name: 'a' | 'b', tile: number, kTile: number, threads: number, kMajor: boolean, x: string, vec4: boolean, oneAddress = false, swizzled = false): { load: (checked: boolean) => string; store: (offset: string) => string; pointers: string } {
  const shares = (tile * kTile) / 4 / threads; // vec4s of this operand's tile per thread
  const vecsPerK = tile / 4;
  const loads: ((checked: boolean) => string)[] = [];
  const read = (checked: boolean, index: string, inside: string, zero?: string): string => (checked ? guardedRead(name, index, inside, zero) : `${name}[${index}]`);
  const stores: ((offset: string) => string)[] = [];
  // Unchecked vec4 reads index from each share's vec4 at k0 = 0 (`name`At0, ...), declared once, plus k0's offset.
  const pointers: string[] = [];
  const k0Offset = kMajor ? `k0 * (${x} / 4u)` : 'k0 / 4u';
  // Share l lies l * threads vec4s after share 0 in the tile: whole rows of the operand later where threads fill rows.
  const vecsPerRow = kMajor ? vecsPerK : kTile / 4;
  const rowStride = kMajor ? `(${x} / 4u)` : '(u.k / 4u)';
  const fromFirst = (l: number): string | undefined => (oneAddress && l > 0 && threads % vecsPerRow === 0 ? `${name}At0 + ${k0Offset} + ${(l * threads) / vecsPerRow}u * ${rowStride}` : undefined);
  const comps = ['x', 'y', 'z', 'w'];
  for (let l = 0; l < shares; l++) {
    const e = `(lidx + ${l * threads}u)`;
    const r = `${name}${l}`;
    const plus = (c: number): string => (c ? ` + ${c}u` : '');
    // Where this share's vec4 lies: statements placing it at k0, its first element's index, whether its element c is
    // inside the operand, and its vec4 index at k0 = 0.
    const place = kMajor
      ? // vec4 along x at (k, x4 * 4)
        {
          at: `let k = ${e} / ${vecsPerK}u; let gx = ${name}0x + (${e} % ${vecsPerK}u) * 4u; let gk = k0 + k;`,
          index: `${name}Base + gk * ${x} + gx`,
          inside: (c: number) => `gx${plus(c)} < ${x} && gk < kEnd`,
          first: `(${name}Base + ${e} / ${vecsPerK}u * ${x} + ${name}0x + (${e} % ${vecsPerK}u) * 4u) / 4u`,
        }
      : // vec4 along k at (x, k4 * 4); stored k-major one element per k row
        {
          at: `let xi = ${e} / ${kTile / 4}u; let gx = ${name}0x + xi; let gk = k0 + (${e} % ${kTile / 4}u) * 4u;`,
          index: `${name}Base + gx * u.k + gk`,
          inside: (c: number) => `gx < ${x} && gk${plus(c)} < kEnd`,
          first: `(${name}Base + (${name}0x + ${e} / ${kTile / 4}u) * u.k + (${e} % ${kTile / 4}u) * 4u) / 4u`,
        };
    const derived = fromFirst(l);
    if (!derived) pointers.push(`let ${name}At${l} = ${place.first};`);
    const value = (checked: boolean): string =>
      vec4
        ? checked
          ? read(true, `(${place.index}) / 4u`, place.inside(0), 'vec4<f32>(0.0)')
          : `${name}[${derived ?? `${name}At${l} + ${k0Offset}`}]`
        : `vec4<f32>(${[0, 1, 2, 3].map((c) => read(checked, `${place.index}${plus(c)}`, place.inside(c))).join(', ')})`;
    loads.push((checked) => (vec4 && !checked ? `${r} = ${value(false)};` : `{ ${place.at} ${r} = ${value(checked)}; }`));
    stores.push(
      kMajor
        ? (offset) => `${name}Tile[${offset} + ${e}] = ${r};`
        : (offset) =>
            `{ let xi = ${e} / ${kTile / 4}u; let k = (${e} % ${kTile / 4}u) * 4u; let col = ${swizzled ? `(xi / 4u) ^ ${stagingSwizzle('k', kTile)}` : 'xi / 4u'}; ${comps
              .map((c, i) => `${name}Tile[${offset} + (k + ${i}u) * ${vecsPerK}u + col][xi % 4u] = ${r}.${c};`)
              .join(' ')} }`,
    );
  }
  return { load: (checked) => loads.map((l) => l(checked)).join('\n    '), store: (offset) => stores.map((s) => s(offset)).join('\n    '), pointers: vec4 ? pointers.join('\n  ') : '' };
}

/**
 * The XOR on the vec4 columns of k step `step` (WGSL u32, or a number) of a K tile of `kTile`, staged swizzled: the
 * step's group of 4 times 32 / kTile, so that the kTile / 4 groups a subgroup writes at once fill 8 vec4s (32 banks;
 * at K 64, pairs of groups share one, 2 ways). Below 8, it keeps a column in its aligned run of 8 vec4s, whose reads
 * stay in distinct banks.
 */
function stagingSwizzle(step: string | number, kTile: number): string {
  if (typeof step === 'number') return `${Math.floor(((step >> 2) * 32) / kTile)}u`;
  return kTile === 64 ? `((${step}) / 8u)` : `((${step}) / 4u * ${32 / kTile}u)`;
}

/**
 * The product's WGSL. `counting`: each workgroup also counts itself in `residency` while it runs ([0] running now, [1]
 * the most seen at once), at its start and end, where few registers are live, so the count is that of the plain shader.
 */
function matmulShader(t: MatmulTiling, transposeA: boolean, transposeB: boolean, vec4: boolean, counting = false, causal?: CausalProduct, tail = false): string {
  const [quadsM, quadsN] = [t.rows / 4, t.cols / 4]; // 4 x 4 blocks of a thread, down and across
  const [threadsY, threadsX] = [t.tm / t.rows, t.tn / t.cols]; // the stride between a thread's blocks, in vec4s
  const threads = threadsX * threadsY;
  const [vecsA, vecsB] = [t.tm / 4, t.tn / 4]; // vec4s of each operand's tile per k
  const [sizeA, sizeB] = [vecsA * t.k, vecsB * t.k]; // vec4s of one staged K tile
  const comps = ['x', 'y', 'z', 'w'];
  const acc = (r: number, q: number): string => `c${r}_${q}`;
  const decl: string[] = [];
  const fmas: string[] = [];
  const stores: string[] = [];
  for (let r = 0; r < 4 * quadsM; r++) {
    const row = `(${Math.floor(r / 4) * threadsY}u + ty) * 4u + ${r % 4}u`;
    for (let q = 0; q < quadsN; q++) {
      decl.push(`var ${acc(r, q)} = vec4<f32>(0.0);`);
      fmas.push(`${acc(r, q)} = fma(vec4<f32>(ra${Math.floor(r / 4)}_@.${comps[r % 4]}), rb${q}_@, ${acc(r, q)});`);
      const col = `n0 + (${q * threadsX}u + tx) * 4u`;
      // A split tail's pieces write their partial sums, rows counted from the tail's first.
      const put = (index: string, value: string): string => (tail ? `if (toPartials) { partials[${index}] = ${value}; } else { out[${index}] = ${value}; }` : `out[${index}] = ${value};`);
      const at = tail ? '(row - rowBase)' : 'row';
      stores.push(
        vec4
          ? `{ let row = m0 + ${row}; let col = ${col}; if (row < u.m && col < u.n) { ${put(`(outBase + ${at} * u.n + col) / 4u`, acc(r, q))} } }`
          : `{ let row = m0 + ${row}; let col = ${col}; if (row < u.m) { ${comps
              .map((c, i) => `if (col + ${i}u < u.n) { ${put(`outBase + ${at} * u.n + col + ${i}u`, `${acc(r, q)}.${c}`)} }`)
              .join(' ')} } }`,
      );
    }
  }
  const buffers = t.doubleBuffered ? 2 : 1;
  // This thread's rows of A and columns of B at k step `kk` of the staged tile (named with suffix `at`), and their outer product.
  // A swizzled operand's column is the plain one XOR the step's swizzle; that touches only the low 3 bits, so where the
  // block is a multiple of 8 the XOR applies to the thread's part alone.
  const column = (swizzled: boolean, step: string | number, block: number, thread: string): string => {
    if (!swizzled) return `${block}u + ${thread}`;
    const xor = stagingSwizzle(step, t.k);
    return block % 8 === 0 ? `${block}u + (${thread} ^ ${xor})` : `((${block}u + ${thread}) ^ ${xor})`;
  };
  const [swizzleA, swizzleB] = [t.swizzled && !transposeA, t.swizzled && transposeB];
  const fragments = (kk: string, step: string | number, at: string): string[] => [
    ...Array.from({ length: quadsM }, (_, i) => `let ra${i}_${at} = aTile[aOff + ${kk} * ${vecsA}u + ${column(swizzleA, step, threadsY * i, 'ty')}];`),
    ...Array.from({ length: quadsN }, (_, j) => `let rb${j}_${at} = bTile[bOff + ${kk} * ${vecsB}u + ${column(swizzleB, step, threadsX * j, 'tx')}];`),
  ];
  const product = (at: string): string[] => fmas.map((f) => f.replaceAll('@', at));
  const steps = Array.from({ length: t.k }, (_, kk) => kk);
  // Written out whole, step kk is known when the shader is made (its swizzle a constant); in a loop, it is `first(kk)`.
  const writtenOut = (first: (kk: number) => string): string =>
    steps.slice(0, t.unrolled).map((kk) => [...fragments(first(kk), t.unrolled === t.k ? kk : first(kk), `${kk}`), ...product(`${kk}`)].join('\n      ')).join('\n      ');
  const multiply =
    t.unrolled === t.k
      ? t.prefetched
        ? // The next step's fragments are read before this step's products.
          [...fragments('0u', 0, '0'), ...steps.flatMap((kk) => [...(kk + 1 < t.k ? fragments(`${kk + 1}u`, kk + 1, `${kk + 1}`) : []), ...product(`${kk}`)])].join('\n    ')
        : writtenOut((kk) => `${kk}u`)
      : `for (var kk = 0u; kk < ${t.k}u; kk += ${t.unrolled}u) {\n      ${writtenOut((kk) => (kk === 0 ? 'kk' : `(kk + ${kk}u)`))}\n    }`;
  const stageA = matmulStaging('a', t.tm, t.k, threads, transposeA, 'u.m', vec4, t.oneAddress, swizzleA);
  const stageB = matmulStaging('b', t.tn, t.k, threads, !transposeB, 'u.n', vec4, t.oneAddress, swizzleB);
  // The next K tile into registers; with interiorUnchecked, a tile wholly inside both operands skips the bounds checks.
  const checkedLoads = `${stageA.load(true)}\n    ${stageB.load(true)}`;
  const loadTile = t.interiorUnchecked
    ? `if (inside && k0 + ${t.k}u <= kEnd) {\n    ${stageA.load(false)}\n    ${stageB.load(false)}\n  } else {\n    ${checkedLoads}\n  }`
    : checkedLoads;
  const regs = [...Array.from({ length: sizeA / threads }, (_, l) => `var a${l} = vec4<f32>(0.0);`), ...Array.from({ length: sizeB / threads }, (_, l) => `var b${l} = vec4<f32>(0.0);`)].join(' ');
  const element = vec4 ? 'vec4<f32>' : 'f32';
  const { kEnd, advance, decl: causalDecl } = causalKRange(causal, 'u.seq', t.tm, tail ? 'select(u.k, min(u.k, kBegin + u.kChunk), toPartials)' : 'min(u.k, kBegin + u.kChunk)');
  const loop = t.doubleBuffered
    ? `
  ${stageA.store('0u')}
  ${stageB.store('0u')}
  workgroupBarrier();
  var buffer = 0u;
  for (; k0 < kEnd; ) {
    k0 = ${advance(`k0 + ${t.k}u`)};
    let more = k0 < kEnd;
    if (more) {
      ${loadTile}
    }
    let aOff = buffer * ${sizeA}u;
    let bOff = buffer * ${sizeB}u;
    ${multiply}
    if (more) {
      ${stageA.store(`(1u - buffer) * ${sizeA}u`)}
      ${stageB.store(`(1u - buffer) * ${sizeB}u`)}
    }
    workgroupBarrier();
    buffer = 1u - buffer;
  }`
    : `
  let aOff = 0u;
  let bOff = 0u;
  for (; k0 < kEnd; ) {
    ${stageA.store('0u')}
    ${stageB.store('0u')}
    workgroupBarrier();
    k0 = ${advance(`k0 + ${t.k}u`)};
    if (k0 < kEnd) {
      ${loadTile}
    }
    ${multiply}
    workgroupBarrier();
  }`;
  return `
@group(0) @binding(0) var<storage, read_write> out: array<${element}>;
@group(0) @binding(1) var<storage, read> a: array<${element}>;
@group(0) @binding(2) var<storage, read> b: array<${element}>;
struct U { ${MATMUL_UNIFORMS.map((f) => `${f}: u32`).join(', ')} };
${counting ? '@group(0) @binding(3) var<storage, read_write> residency: array<atomic<u32>, 2>;' : ''}
${tail ? `@group(0) @binding(3) var<storage, read_write> partials: array<${element}>;` : ''}
@group(0) @binding(${counting || tail ? 4 : 3}) var<uniform> u: U;
var<workgroup> aTile: array<vec4<f32>, ${sizeA * buffers}>;
var<workgroup> bTile: array<vec4<f32>, ${sizeB * buffers}>;
${causalDecl}
@compute @workgroup_size(${threadsX}, ${threadsY}, 1) fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lidx: u32) {
${
  t.warpTiled
    ? `  // Thread lidx's place: subgroup lidx / 32 takes a block of 8 x 4 threads, lane lidx % 32 one of them.
  let tx = (lidx / 32u) % ${threadsX / 8}u * 8u + lidx % 8u;
  let ty = (lidx / 32u) / ${threadsX / 8}u * 4u + (lidx % 32u) / 8u;`
    : `  let tx = lid.x;
  let ty = lid.y;`
}
${counting ? '  if (lidx == 0u) { atomicMax(&residency[1], atomicAdd(&residency[0], 1u) + 1u); }' : ''}
${tail ? TAIL_TILE(t.tm, t.tn) : `  // z = batch * splits + split: split-K products write partial sums [splits, batch, m, n].
  let batch = wid.z / u.splits;
  let split = wid.z % u.splits;
  let kBegin = split * u.kChunk;
${t.grouped ? GROUPED_TILE : '  let tileM = wid.y;\n  let tileN = wid.x;'}`}
  let m0 = tileM * ${t.tm}u;
  let n0 = tileN * ${t.tn}u;
  let kEnd = ${kEnd};
${t.interiorUnchecked ? `  let inside = m0 + ${t.tm}u <= u.m && n0 + ${t.tn}u <= u.n;` : ''}
  let a0x = m0;
  let b0x = n0;
  let aBase = select(batch, 0u, u.batchA == 1u) * u.m * u.k;
  let bBase = select(batch, 0u, u.batchB == 1u) * u.k * u.n;
  ${tail ? 'let outBase = select(0u, split * (u.m - rowBase) * u.n, toPartials);' : 'let outBase = (split * (u.batchA + u.batchB - min(u.batchA, u.batchB)) + batch) * u.m * u.n;'}
  ${decl.join('\n  ')}
  ${regs}
${t.interiorUnchecked ? `  ${stageA.pointers}\n  ${stageB.pointers}` : ''}
  var k0 = ${advance('kBegin')};
  ${loadTile}${loop}
  ${stores.join('\n  ')}
${counting ? '  if (lidx == 0u) { atomicSub(&residency[0], 1u); }' : ''}
}`;
}

/** out[offset + i] = sum over s of partials[s * size + i] (the split-K reduction). */
const SUM_SPLITS = `
@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read> partials: array<f32>;
struct U { size: u32, splits: u32, offset: u32 };
@group(0) @binding(2) var<uniform> u: U;
@compute @workgroup_size(256) fn main(${builtins}) {
  let i = ${flatIndex(256)};
  if (i >= u.size) { return; }
  var acc = 0.0;
  for (var s = 0u; s < u.splits; s++) { acc += partials[s * u.size + i]; }
  out[u.offset + i] = acc;
}`;

/** Output tiles below which a product is split along K where the tiling's residency is unknown (about two waves on a large GPU). */
const SPLIT_K_BELOW_TILES = 256;
/** Smallest K range one split handles. */
const SPLIT_K_MIN_CHUNK = 512;
/** Arithmetic per byte of memory traffic at which the products run (fp32 FLOP/s over DRAM bytes/s, about 16 on an H100), for the cost of a split. */
const FLOPS_PER_BYTE = 16;

/** The most ways a K can be split: each split at least SPLIT_K_MIN_CHUNK long. */
const mostSplits = (k: number): number => Math.max(1, Math.floor(k / SPLIT_K_MIN_CHUNK));

/** Workgroups of each tiling (by its spec) the GPU runs at once, as measured by measureMatmulResidency. */
const residency = new Map<string, number>();

/**
 * How many ways to split a product's K: where the tiling's residency (`slots`) is known, the count that best fills the
 * last wave of workgroups, against the split's extra traffic (its partial sums written and read, (2s + 1) m n floats
 * against the product's 2 m n k FLOP); else enough splits for SPLIT_K_BELOW_TILES tiles. `tiles`: output tiles, or
 * where they differ in work, the full tiles' worth of it.
 */
export function matmulSplits(tiles: number, k: number, slots: number | undefined): number {
  const most = mostSplits(k);
  if (!slots) return tiles >= SPLIT_K_BELOW_TILES ? 1 : Math.min(Math.ceil(SPLIT_K_BELOW_TILES / tiles), most);
  const cost = (s: number): number => splitCost(tiles / slots, s, 1, k);
  let best = 1;
  for (let s = 2; s <= most; s++) if (cost(s) < cost(best)) best = s;
  return best;
}

/**
 * A split's time against the product's at full waves: `waves` of whole tiles' work run as pieces of 1/s of a tile,
 * whole waves of pieces, plus the partial sums of the `share` of tiles split ((2s + 1) m n floats against 2 m n k FLOP).
 */
function splitCost(waves: number, s: number, share: number, k: number): number {
  return Math.ceil(waves * s) / (waves * s) + (s > 1 ? (share * (2 * s + 1) * 2 * FLOPS_PER_BYTE) / k : 0);
}

/** How a product's K is split: `splits` ways over every output tile, or (`tailRow0` set) only over the tile rows from it on. */
export interface MatmulSplitPlan {
  splits: number;
  tailRow0: number | null;
}

/**
 * The split of an unbatched product of tilesM x tilesN output tiles. Besides splitting every tile (matmulSplits), the
 * tile rows that fill whole waves of the `slots` workgroups can take their whole K while only the rows after them are
 * split, their pieces launched last to fill the last wave: the waves then hold the product's work to within a piece,
 * and only the split rows' partial sums are written and read. Whichever costs less by the same measure is taken.
 */
export function matmulSplitPlan(tilesM: number, tilesN: number, k: number, slots: number | undefined): MatmulSplitPlan {
  const tiles = tilesM * tilesN;
  const whole = { splits: matmulSplits(tiles, k, slots), tailRow0: null };
  const tailRow0 = slots ? Math.floor((Math.floor(tiles / slots) * slots) / tilesN) : 0;
  if (!slots || tailRow0 === 0 || tailRow0 >= tilesM) return whole;
  const most = mostSplits(k);
  const waves = tiles / slots;
  const wholeCost = splitCost(waves, whole.splits, 1, k);
  const tailCost = (s: number): number => splitCost(waves, s, ((tilesM - tailRow0) * tilesN) / tiles, k);
  let best = 0;
  for (let s = 2; s <= most; s++) if (tailCost(s) < (best ? tailCost(best) : wholeCost)) best = s;
  return best ? { splits: best, tailRow0 } : whole;
}

/**
 * Measures, for each tiling of the current list not yet measured, how many of its workgroups the GPU runs at once (the
 * product's shader counting itself over 1,024 output tiles with a K of 1,024), so that split K can fill whole waves.
 * Needs an async context: run when the backend is set up (and by benches after changing ARL_MATMUL_TILING). Tilings
 * whose staging the device cannot hold are skipped: matmulTilingFor never takes them.
 */
export async function measureMatmulResidency(): Promise<Map<string, number>> {
  const limit = workgroupStorageBytes();
  for (const t of tilings()) {
    const key = formatMatmulTiling(t);
    if (residency.has(key) || matmulTilingBytes(t) > limit) continue;
    const [m, n, k] = [32 * t.tm, 32 * t.tn, 1024];
    const a = tf.zeros([m, k]);
    const b = tf.zeros([k, n]);
    const counts = tf.zeros([2], 'int32');
    const out = allocate([m, n]);
    const uniforms = matmulUniforms({ m, n, k, batchA: 1, batchB: 1, splits: 1, kChunk: k });
    const vec4 = t.vec4;
    dispatchRaw('ArlMatMulResidency', shaderText(`matmul residency ${key}`, () => matmulShader(t, false, false, vec4, true)), [out, a, b, counts], uniforms, [n / t.tn, m / t.tm, 1]);
    const [, most] = await counts.data();
    release(out);
    tf.dispose([a, b, counts]);
    residency.set(key, most);
  }
  return residency;
}

/** The tilings of a comma-separated list of specs (ARL_MATMUL_TILING's form), or a line saying what is wrong with the first bad one. */
export function parseMatmulTilings(spec: string): MatmulTiling[] | string {
  const list = spec.split(',').map(parseMatmulTiling);
  return list.find((t): t is string => typeof t === 'string') ?? (list as MatmulTiling[]);
}

/** Bytes of workgroup memory the webgpu device allows a shader. */
export const workgroupStorageBytes = (): number =>
  (tf.backend() as unknown as { device: { limits: { maxComputeWorkgroupStorageSize: number } } }).device.limits.maxComputeWorkgroupStorageSize;

/** The tiling of `tilings` an m x n product takes: the first whose tile fits the output and whose staging fits the device, if any. */
export function matmulTilingFor(tilings: readonly MatmulTiling[], m: number, n: number): MatmulTiling | undefined {
  const limit = workgroupStorageBytes();
  return tilings.find((t) => m >= t.tm && n >= t.tn && matmulTilingBytes(t) <= limit);
}

let parsed: { spec: string; tilings: MatmulTiling[] } | undefined;

/** The tilings tried in turn (ARL_MATMUL_TILING, else the default for this adapter), parsed once per spec. */
function tilings(): MatmulTiling[] {
  const spec = matmulTilingSpec() ?? (dawnAdapter.software ? DEFAULT_MATMUL_TILINGS.software : DEFAULT_MATMUL_TILINGS.hardware);
  if (parsed?.spec !== spec) {
    const list = parseMatmulTilings(spec);
    if (typeof list === 'string') throw new UserError(`ARL_MATMUL_TILING: ${list}`);
    parsed = { spec, tilings: list };
  }
  return parsed.tilings;
}

/** Our BatchMatMul, taking `stock` (tfjs's own) for the products it leaves to tfjs. */
export const batchMatMulKernel = (stock: tf.KernelConfig) => (args: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap }): tf.TensorInfo => {
  const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
  const { transposeA, transposeB, causal, seq } = args.attrs as { transposeA: boolean; transposeB: boolean } & Partial<CausalHint>;
  const ra = a.shape.length;
  const rb = b.shape.length;
  const m = transposeA ? a.shape[ra - 1] : a.shape[ra - 2];
  const k = transposeA ? a.shape[ra - 2] : a.shape[ra - 1];
  const n = transposeB ? b.shape[rb - 2] : b.shape[rb - 1];
  const batchA = tf.util.sizeFromShape(a.shape.slice(0, -2));
  const batchB = tf.util.sizeFromShape(b.shape.slice(0, -2));
  const sameBatch = batchA === batchB || batchA === 1 || batchB === 1;
  // Small or oddly batched products stay with tfjs (its split-K and small-output programs suit them).
  const t = stockWebgpu() || stockMatmul() ? undefined : matmulTilingFor(tilings(), m, n);
  if (!t || a.dtype !== 'float32' || b.dtype !== 'float32' || !sameBatch || ra !== rb) {
    return stock.kernelFunc(args as never) as tf.TensorInfo;
  }
  const batch = Math.max(batchA, batchB);
  const outShape = [...(batchA >= batchB ? a.shape : b.shape).slice(0, -2), m, n];
  const out = allocate(outShape);
  // Few output tiles or a last wave of workgroups mostly empty, and K long enough (weight gradients: [d, d'] from 8,192
  // rows): split K so every multiprocessor gets work, then add the partial products.
  const name = formatMatmulTiling(t);
  const skips = causalSkips({ causal, seq }, t.tm, t.k, m, n, k) ? causal : undefined;
  const [tilesM, tilesN] = [Math.ceil(m / t.tm), Math.ceil(n / t.tn)];
  const tiles = tilesM * tilesN * batch;
  // A causal 'keys' product's row tile i of r does (r - i) / r of K, (r + 1) / 2r on average: more splits fill the waves.
  const rowTiles = m / t.tm;
  const work = skips === 'keys' ? (tiles * (rowTiles + 1)) / (2 * rowTiles) : tiles;
  const slots = matmulWaves() ? residency.get(name) : undefined;
  // An unbatched product of whole tiles may split only its last rows (weights' products whose tiles overfill a wave).
  const plan = batch === 1 && !skips && !t.grouped && matmulSplitTail() ? matmulSplitPlan(tilesM, tilesN, k, slots) : { splits: matmulSplits(work, k, slots), tailRow0: null };
  const { splits, tailRow0 } = plan;
  const kChunk = Math.ceil(k / splits / t.k) * t.k;
  const vec4 = t.vec4 && m % 4 === 0 && n % 4 === 0 && k % 4 === 0;
  const key = `matmul ${name} ${vec4} ${transposeA} ${transposeB} ${skips}${tailRow0 === null ? '' : ' tail'}`;
  const shader = shaderText(key, () => matmulShader(t, transposeA, transposeB, vec4, false, skips, tailRow0 !== null));
  const sumSplits = (partials: tf.TensorInfo, size: number, offset: number): void => {
    const uniforms: Uniform[] = [size, splits, offset].map((v) => ({ type: 'uint32', data: [v] }));
    dispatchRaw('ArlSumSplits', SUM_SPLITS, [out, partials], uniforms, grid(Math.ceil(size / 256)));
    release(partials);
  };
  if (tailRow0 !== null) {
    const headTiles = tailRow0 * tilesN;
    const tailRows = m - tailRow0 * t.tm;
    const partials = allocate([splits * tailRows * n]);
    const uniforms = matmulUniforms({ m, n, k, batchA: 1, batchB: 1, splits, kChunk, headTiles, tailRow0 });
    dispatchRaw('ArlMatMul', shader, [out, a, b, partials], uniforms, grid(headTiles + (tilesM - tailRow0) * tilesN * splits));
    sumSplits(partials, tailRows * n, tailRow0 * t.tm * n);
    return out;
  }
  const target = splits > 1 ? allocate([splits * batch * m * n]) : out;
  const uniforms = matmulUniforms({ m, n, k, batchA, batchB, splits, kChunk, seq });
  dispatchRaw('ArlMatMul', shader, [target, a, b], uniforms, [tilesN, tilesM, batch * splits]);
  if (splits > 1) sumSplits(target, batch * m * n, 0);
  return out;
};
