/**
 * What Dawn is asked for: the instance toggles that lift Dawn's blocklist of `shader-f16` on NVIDIA's Vulkan driver (and
 * allow the experimental subgroup-matrix feature) and the device features tfjs's backend would not request itself, both
 * only when mixed precision is opted in; and the fast-shader toggles every hardware instance gets.
 */

import type { SubgroupMatrixConfig } from './matmul-f16.ts';

/** Device features the f16 tensor-core matmul needs. */
export const F16_FEATURES = ['shader-f16', 'subgroups', 'chromium-experimental-subgroup-matrix'] as const;

/** Dawn toggles for F16_FEATURES on NVIDIA (Dawn blocks shader-f16 there by default). */
const F16_DAWN_TOGGLES = ['allow_unsafe_apis', 'vulkan_enable_f16_on_nvidia'];

/**
 * Dawn toggles for a hardware adapter: shaders without Dawn's index clamping (every kernel of ours bounds its own
 * accesses) and workgroup memory not zeroed first (each kernel writes what it reads). On an H100 the 1.1B shape trained
 * 10% faster with them in mixed precision, at the same losses (docs/benchmarks.md). Lavapipe compiles such shaders about
 * 30x slower, so software adapters go without.
 */
export const FAST_SHADER_TOGGLES = ['disable_robustness', 'disable_workgroup_init'];

/** Whether the adapter of the running instance runs on the CPU (lavapipe): shaders are kept quick to compile there. */
export const dawnAdapter = { software: false };

/** Whether the running instance was created with the f16 toggles, and what its adapter offered. */
export const f16Instance = { requested: false, adapterFeatures: [] as string[], adapterConfigs: [] as readonly SubgroupMatrixConfig[] };

/** `flags` with `features` added to its enable-dawn-features (one such option, merged; none added for none). */
export function withDawnFeatures(flags: string[], features: readonly string[]): string[] {
  if (features.length === 0) return flags;
  const prefix = 'enable-dawn-features=';
  const existing = flags.filter((f) => f.startsWith(prefix)).flatMap((f) => f.slice(prefix.length).split(','));
  const merged = [...new Set([...existing, ...features])].filter(Boolean);
  return [...flags.filter((f) => !f.startsWith(prefix)), prefix + merged.join(',')];
}

/** `flags` with the f16 toggles (and `extra`) added to its enable-dawn-features. */
export function withF16Toggles(flags: string[], extra: readonly string[] = []): string[] {
  return withDawnFeatures(flags, [...F16_DAWN_TOGGLES, ...extra]);
}

interface AdapterLike {
  features: { has(name: string): boolean };
  info?: { subgroupMatrixConfigs?: readonly SubgroupMatrixConfig[] };
  requestDevice(descriptor?: { requiredFeatures?: Iterable<string> }): Promise<unknown>;
}
interface GpuLike {
  requestAdapter(options?: unknown): Promise<AdapterLike | null>;
}

/**
 * Makes every device requested from `gpu` (tfjs's included) also require those of F16_FEATURES
 * its adapter has; a missing one is left out, so the device still comes up and the feature check
 * names what is missing.
 */
export function requestF16Features(gpu: GpuLike): void {
  const requestAdapter = gpu.requestAdapter.bind(gpu);
  f16Instance.requested = true;
  gpu.requestAdapter = async (options?: unknown) => {
    const adapter = await requestAdapter(options);
    if (!adapter) return adapter;
    const available = F16_FEATURES.filter((f) => adapter.features.has(f));
    f16Instance.adapterFeatures = available;
    f16Instance.adapterConfigs = [...(adapter.info?.subgroupMatrixConfigs ?? [])];
    const requestDevice = adapter.requestDevice.bind(adapter);
    adapter.requestDevice = (descriptor = {}) => requestDevice({ ...descriptor, requiredFeatures: [...(descriptor.requiredFeatures ?? []), ...available] });
    return adapter;
  };
}
