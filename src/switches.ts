/**
 * The ARL_* environment switches, read here only. Each is read when asked (not once at start-up):
 * tests and `arl bench` set them around the calls they compare.
 */

// The model's ops are also bundled for the browser (the tfjs export's layers), where there is no process: no switch is set there.
const env = (name: string): string | undefined => (typeof process === 'undefined' ? undefined : process.env[name]);

/** ARL_STOCK_WEBGPU=1: our webgpu kernels stay registered but unused (tfjs's own ops run), for comparisons. */
export function stockWebgpu(): boolean {
  return env('ARL_STOCK_WEBGPU') === '1';
}

/** ARL_STOCK_MATMUL=1: every webgpu product takes tfjs's own BatchMatMul, for comparisons. */
export function stockMatmul(): boolean {
  return env('ARL_STOCK_MATMUL') === '1';
}

/**
 * ARL_MATMUL_TILING: the tilings of our webgpu f32 products, comma-separated, each tried in turn (TMxTN/K then option
 * letters; see src/ops/webgpu/matmul.ts), instead of the default, for measurements.
 */
export function matmulTilingSpec(): string | undefined {
  return env('ARL_MATMUL_TILING') || undefined;
}

/** ARL_MATMUL_WAVES=0: split K by the fixed rule, not to fill the measured waves of workgroups, for comparisons. */
export function matmulWaves(): boolean {
  return env('ARL_MATMUL_WAVES') !== '0';
}

/** ARL_MATMUL_SPLIT_TAIL=0: a product split along K to fill the waves splits every output tile, not only its last rows, for comparisons. */
export function matmulSplitTail(): boolean {
  return env('ARL_MATMUL_SPLIT_TAIL') !== '0';
}

/** ARL_F16_TILING: the tiling of the f16 tensor-core products (TMxTN/WMxWN/K[m], see src/ops/webgpu/matmul-f16.ts) instead of the default, for measurements. */
export function f16TilingSpec(): string | undefined {
  return env('ARL_F16_TILING') || undefined;
}

/** ARL_MIXED_ATTENTION=0: under mixed precision attention's batched products stay f32 (the projections still run f16), for comparisons. */
export function mixedAttention(): boolean {
  return env('ARL_MIXED_ATTENTION') !== '0';
}

/** ARL_FLASH_ATTENTION: '1' flash attention always, '0' never, unset: where no gradient is taken. */
export function flashAttentionSwitch(): 'always' | 'never' | 'inference' {
  const flag = env('ARL_FLASH_ATTENTION');
  return flag === '1' ? 'always' : flag === '0' ? 'never' : 'inference';
}

/**
 * ARL_GPU_POOL_MB: pooled free GPU memory (MiB, default 1,024) beyond which releaseUnusedGpuMemory destroys the pool;
 * a pool smaller than one batch's working set is destroyed and made again at every batch, for measurements.
 */
export function gpuPoolBytes(): number {
  const mib = Number(env('ARL_GPU_POOL_MB') ?? 1024);
  return (Number.isFinite(mib) && mib >= 0 ? mib : 1024) * 2 ** 20;
}

/** ARL_DECODE_GRAPH=0: decoding on webgpu goes through tfjs, not the decode graph, for comparisons. */
export function decodeGraphEnabled(): boolean {
  return env('ARL_DECODE_GRAPH') !== '0';
}

/** ARL_WASM_THREADS: the wasm thread count asked for (a positive integer), or null for the default. */
export function wasmThreads(): number | null {
  const value = env('ARL_WASM_THREADS');
  if (value === undefined || value === '') return null;
  const n = Number(value);
  return Number.isInteger(n) && n >= 1 ? n : null;
}

/** ARL_OVERLAP_STEPS=0: the trainer waits for each step's numbers before recording the next. */
export function overlapSteps(): boolean {
  return env('ARL_OVERLAP_STEPS') !== '0';
}

/** ARL_DAWN_NODE: a dawn.node shipped beside a bundled build (GPU boxes without node_modules). */
export function dawnNodePath(): string | undefined {
  return env('ARL_DAWN_NODE') || undefined;
}

/** ARL_DAWN_FLAGS: Dawn's own options, space-separated (e.g. enable-dawn-features=disable_robustness). */
export function dawnFlags(): string[] {
  return (env('ARL_DAWN_FLAGS') ?? '').split(' ').filter(Boolean);
}

/** ARL_DAWN_ROBUSTNESS=1: keeps Dawn's index clamping and workgroup zeroing on a hardware adapter too, for comparisons. */
export function dawnRobustness(): boolean {
  return env('ARL_DAWN_ROBUSTNESS') === '1';
}

/**
 * ARL_WEBGPU_F16=1: the Dawn instance is created with the toggles that expose shader-f16 and
 * subgroup matrices (on NVIDIA), and the device requests them where the adapter has them.
 */
export function webgpuF16(): boolean {
  return env('ARL_WEBGPU_F16') === '1';
}

/** ARL_TFJS_FLAGS: tfjs flags as NAME=value,NAME=value, applied once the webgpu backend is loaded. */
export function tfjsFlags(): string | undefined {
  return env('ARL_TFJS_FLAGS');
}
