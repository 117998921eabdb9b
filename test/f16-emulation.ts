/** The f16 tensor-core matmul's shader made runnable without subgroup matrices (lavapipe), for tests. */

/**
 * The matmul shader with the subgroup-matrix builtins replaced by plain WGSL of the semantics
 * Dawn documents (every invocation holds a whole 16x16 matrix; entry [r, c] of a load or store
 * is at offset + r * stride + c, or offset + c * stride + r column-major). Runs wherever
 * shader-f16 and subgroups do, so the offsets, staging, transposes and edges are checked
 * without tensor cores.
 */
export function emulateSubgroupMatrices(code: string): string {
  const loads = ['A', 'B', 'aTile', 'bTile'].filter((name) => code.includes(`Load<L>(&${name},`) || code.includes(`Load<R>(&${name},`));
  // The result goes to C (f32); a staged slice copied as matrices goes to the tiles (f16).
  const stores = ['C', 'aTile', 'bTile'].filter((name) => code.includes(`subgroupMatrixStore(&${name},`));
  // The edge (16) comes from a uniform so the compiler does not unroll the loops (lavapipe then takes minutes).
  const helpers = [
    'struct Emu { dim: u32 };',
    '@group(0) @binding(3) var<uniform> emu: Emu;',
    ...loads.map(
      (name) => `fn load_${name}(offset: u32, colMajor: bool, stride: u32) -> array<f32, 256> {
  var out: array<f32, 256>;
  for (var r = 0u; r < emu.dim; r++) { for (var c = 0u; c < emu.dim; c++) { out[r * 16u + c] = f32(${name}[select(offset + r * stride + c, offset + c * stride + r, colMajor)]); } }
  return out;
}`,
    ),
    `fn mma(left: array<f32, 256>, right: array<f32, 256>, acc: array<f32, 256>) -> array<f32, 256> {
  var out = acc;
  for (var r = 0u; r < emu.dim; r++) { for (var c = 0u; c < emu.dim; c++) { for (var k = 0u; k < emu.dim; k++) { out[r * 16u + c] += left[r * 16u + k] * right[k * 16u + c]; } } }
  return out;
}`,
    ...stores.map(
      (name) => `fn store_${name}(offset: u32, value: array<f32, 256>, colMajor: bool, stride: u32) {
  for (var r = 0u; r < emu.dim; r++) { for (var c = 0u; c < emu.dim; c++) { ${name}[select(offset + r * stride + c, offset + c * stride + r, colMajor)] = ${name === 'C' ? 'value[r * 16u + c]' : 'f16(value[r * 16u + c])'}; } }
}`,
    ),
  ];
  const emulated = code
    .replace('enable chromium_experimental_subgroup_matrix;\n', '')
    .replace(/alias (L|R|Acc) = subgroup_matrix_\w+<f(16|32), 16, 16>;/g, 'alias $1 = array<f32, 256>;')
    .replace(/subgroupMatrixLoad<[LR]>\(&(\w+), /g, 'load_$1(')
    .replace(/subgroupMatrixMultiplyAccumulate\(/g, 'mma(')
    .replace(/subgroupMatrixStore\(&(\w+), /g, 'store_$1(');
  return `${emulated}\n${helpers.join('\n')}`;
}
