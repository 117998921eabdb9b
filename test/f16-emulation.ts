/** The f16 tensor-core matmul's shader made runnable without subgroup matrices (lavapipe), for tests. */

/**
 * The matmul shader with the subgroup-matrix builtins replaced by plain WGSL of the semantics
 * Dawn documents (every invocation holds a whole 16x16 matrix; entry [r, c] of a load or store
 * is at offset + r * stride + c, or offset + c * stride + r column-major). Runs wherever
 * shader-f16 and subgroups do, so the offsets, staging, transposes and edges are checked
 * without tensor cores.
 */
export function emulateSubgroupMatrices(code: string): string {
  // Each (matrix, majorness) pair the shader loads from or stores to gets a function of its own. Matrices go to loads and
  // products by pointer: lavapipe inlines every call, and a copy of a 256-element array at each made compiling slow.
  const used = (pattern: RegExp): string[][] => [...new Set([...code.matchAll(pattern)].map((m) => `${m[2]} ${m[1]}`))].map((key) => key.split(' '));
  const loads = used(/subgroupMatrixLoad<[LR], (row|col)_major>\(&(\w+),/g);
  // The result goes to C (f32); a staged slice copied as matrices goes to the tiles (f16).
  const stores = used(/subgroupMatrixStore<(row|col)_major>\(&(\w+),/g);
  const at = (major: string): string => (major === 'col' ? 'offset + c * stride + r' : 'offset + r * stride + c');
  // The edge (16) comes from a uniform so the compiler does not unroll the loops (lavapipe then takes minutes).
  const helpers = [
    'struct Emu { dim: u32 };',
    '@group(0) @binding(3) var<uniform> emu: Emu;',
    ...loads.map(
      ([name, major]) => `fn load_${name}_${major}(out: ptr<function, array<f32, 256>>, offset: u32, stride: u32) {
  for (var r = 0u; r < emu.dim; r++) { for (var c = 0u; c < emu.dim; c++) { (*out)[r * 16u + c] = f32(${name}[${at(major)}]); } }
}`,
    ),
    `fn mma(acc: ptr<function, array<f32, 256>>, left: ptr<function, array<f32, 256>>, right: ptr<function, array<f32, 256>>) {
  for (var r = 0u; r < emu.dim; r++) { for (var c = 0u; c < emu.dim; c++) { for (var k = 0u; k < emu.dim; k++) { (*acc)[r * 16u + c] += (*left)[r * 16u + k] * (*right)[k * 16u + c]; } } }
}`,
    ...stores.map(
      ([name, major]) => `fn store_${name}_${major}(offset: u32, value: array<f32, 256>, stride: u32) {
  for (var r = 0u; r < emu.dim; r++) { for (var c = 0u; c < emu.dim; c++) { ${name}[${at(major)}] = ${name === 'C' ? 'value[r * 16u + c]' : 'f16(value[r * 16u + c])'}; } }
}`,
    ),
  ];
  const emulated = code
    .replace('enable chromium_experimental_subgroup_matrix;\n', '')
    .replace(/alias (L|R|Acc) = subgroup_matrix_\w+<f(16|32), 16, 16>;/g, 'alias $1 = array<f32, 256>;')
    .replace(/let (\w+) = subgroupMatrixLoad<([LR]), (row|col)_major>\(&(\w+), /g, 'var $1: $2; load_$4_$3(&$1, ')
    .replace(/([\w[\]]+) = subgroupMatrixLoad<[LR], (row|col)_major>\(&(\w+), /g, 'load_$3_$2(&$1, ')
    .replace(/(acc\d+_\d+) = subgroupMatrixMultiplyAccumulate\((\w+), (\w+), \1\);/g, 'mma(&$1, &$2, &$3);')
    .replace(/subgroupMatrixStore<(row|col)_major>\(&(\w+), /g, 'store_$2_$1(');
  return `${emulated}\n${helpers.join('\n')}`;
}
