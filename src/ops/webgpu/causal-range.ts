/** The K range of a causal attention product's output tile, as WGSL, for the f32 and f16 product kernels alike. */
import type { CausalProduct } from '../matmul.ts';

/**
 * WGSL for the K range of a causal attention product's output tile (CausalProduct; none: `bound` as it is), in a shader
 * where m0 and n0 are the tile's first row and column: `kEnd` the end of its K range, within `bound`; `advance(k)` the
 * next K from k; `decl` the module-scope function they use. `seq`: the WGSL of the query head's length; `rows`: the
 * tile's rows.
 */
export function causalKRange(causal: CausalProduct | undefined, seq: string, rows: number, bound: string): { kEnd: string; advance: (k: string) => string; decl: string } {
  // Tiles wholly above the diagonal take no K; the others' rows see the keys up to their last token.
  const kEnd = causal === 'scores' ? `select(${bound}, 0u, n0 >= m0 % ${seq} + ${rows}u)` : causal === 'queries' ? `min(${bound}, m0 % ${seq} + ${rows}u)` : bound;
  if (causal !== 'keys') return { kEnd, advance: (k) => k, decl: '' };
  return {
    kEnd,
    advance: (k) => `laterQueries(${k}, m0)`,
    decl: `/** k, or where the K tiles of its query head resume at token \`first\` (the queries before it see none of the keys). */
fn laterQueries(k: u32, first: u32) -> u32 { let t = k % ${seq}; return select(k, k - t + first, t < first); }`,
  };
}
