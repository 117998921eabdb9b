/**
 * The one place where the tfjs backend is chosen. `auto` takes the fastest backend that loads:
 * tensorflow (libtensorflow through tfjs-node-gpu / tfjs-node) > webgpu on a hardware adapter >
 * wasm (XNNPACK) > cpu (pure JS), and says which one it took and why.
 */
import * as tf from '@tensorflow/tfjs';
import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { UserError } from './io/errors.ts';
import { dawnFlags, dawnNodePath, dawnRobustness, gpuPoolBytes, tfjsFlags, webgpuF16 } from './switches.ts';
import { registerWasmKernels } from './ops/wasm/index.ts';
import { measureMatmulResidency } from './ops/webgpu/matmul.ts';
import { dawnAdapter, FAST_SHADER_TOGGLES, requestF16Features, withDawnFeatures, withF16Toggles } from './ops/webgpu/f16-device.ts';
import { registerWebgpuKernels } from './ops/webgpu/index.ts';
import { installThreadedWasm, restoreStockWasm, wasmThreadCount, wasmThreadsInUse } from './ops/wasm/threads.ts';

export const BACKENDS = ['auto', 'tensorflow', 'webgpu', 'wasm', 'cpu'] as const;
export type BackendName = (typeof BACKENDS)[number];

export interface BackendChoice {
  name: Exclude<BackendName, 'auto'>;
  /** A few words on what runs: the wasm thread count, the GPU adapter, the tfjs-node package. */
  detail: string;
  /** Why this backend was taken (for auto: why the faster ones were skipped). */
  reason: string;
}

const require = createRequire(import.meta.url);

async function tryTensorflow(): Promise<string | null> {
  for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    try {
      await import(pkg);
      if (await tf.setBackend('tensorflow')) return pkg;
    } catch {
      // not installed, or its native library did not load
    }
  }
  return null;
}

/**
 * Loads Dawn's Node binding (npm `webgpu`) and installs navigator.gpu, with the f16 toggles and
 * features when `f16` (the first install decides). Returns the adapter's name and full
 * description, or throws.
 */
async function installDawn(f16: boolean): Promise<{ name: string; description: string; software: boolean }> {
  const g = globalThis as Record<string, unknown>;
  if (!g.navigator || !(g.navigator as { gpu?: unknown }).gpu) {
    type Dawn = { create: (flags: string[]) => unknown; globals: Record<string, unknown> };
    const dawnNode = dawnNodePath();
    const dawn = (dawnNode ? require(dawnNode) : await import('webgpu')) as Dawn;
    Object.assign(globalThis, dawn.globals);
    type Gpu = Parameters<typeof requestF16Features>[0];
    const instanceFlags = (extra: readonly string[]): string[] => (f16 ? withF16Toggles(dawnFlags(), extra) : withDawnFeatures(dawnFlags(), extra));
    const fast = dawnRobustness() ? [] : FAST_SHADER_TOGGLES;
    let gpu = dawn.create(instanceFlags(fast)) as Gpu;
    // The fast-shader toggles only where the adapter is hardware: the instance is made again without them otherwise.
    if (fast.length > 0 && isSoftware(describeAdapter(await gpu.requestAdapter()))) gpu = dawn.create(instanceFlags([])) as Gpu;
    if (f16) requestF16Features(gpu);
    Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
  }
  const gpu = (g.navigator as { gpu: { requestAdapter: () => Promise<unknown> } }).gpu;
  const adapter = await gpu.requestAdapter();
  if (!adapter) throw new Error('no WebGPU adapter found');
  const described = describeAdapter(adapter);
  dawnAdapter.software = isSoftware(described);
  return { ...described, software: dawnAdapter.software };
}

type AdapterInfo = { vendor?: string; architecture?: string; device?: string; description?: string };

/** An adapter's name and its info in one line (empty for none). */
function describeAdapter(adapter: unknown): { name: string; description: string } {
  const info = (adapter as { info?: AdapterInfo } | null)?.info ?? {};
  const description = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ') || (adapter ? 'unknown adapter' : '');
  return { name: info.description || description, description };
}

/** Whether a described adapter runs on the CPU (or there was none). */
function isSoftware(adapter: { description: string }): boolean {
  return adapter.description === '' || /llvmpipe|lavapipe|swiftshader|cpu/i.test(adapter.description);
}

/** On Linux Dawn needs the Vulkan loader; looking first keeps Dawn's native warning off the terminal. */
function vulkanLoaderPresent(): boolean {
  if (process.platform !== 'linux' || dawnNodePath()) return true;
  const dirs = ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/lib', '/lib/x86_64-linux-gnu', '/usr/local/lib'];
  return dirs.some((d) => existsSync(join(d, 'libvulkan.so.1'))) || (process.env.LD_LIBRARY_PATH ?? '').split(':').some((d) => d && existsSync(join(d, 'libvulkan.so.1')));
}

/**
 * On Linux a hardware adapter needs a GPU device node (DRM render node, or NVIDIA's). Looking
 * first keeps `auto` from loading Dawn where only lavapipe (CPU Vulkan, as in CI) could answer:
 * Dawn then prints limit warnings of its own on stderr.
 */
function gpuDevicePresent(): boolean {
  if (process.platform !== 'linux' || dawnNodePath()) return true;
  const dri = existsSync('/dev/dri') ? readdirSync('/dev/dri').some((f) => f.startsWith('renderD')) : false;
  return dri || existsSync('/dev/nvidia0') || existsSync('/dev/nvidiactl');
}

async function tryWebgpu(allowSoftware: boolean, f16: boolean): Promise<{ name: string; description: string } | null> {
  if (!allowSoftware && !vulkanLoaderPresent()) throw new Error('no Vulkan loader (libvulkan.so.1) installed');
  if (!allowSoftware && !gpuDevicePresent()) throw new Error('no GPU device (/dev/dri/renderD*, /dev/nvidia*)');
  const { name, description, software } = await installDawn(f16);
  if (software && !allowSoftware) return null;
  await import('@tensorflow/tfjs-backend-webgpu');
  applyTfjsFlags(tfjsFlags()); // the webgpu flags exist once the backend module is loaded
  if (!(await tf.setBackend('webgpu'))) throw new Error('tfjs webgpu backend failed to initialise');
  setUpWebgpuDevice();
  // How many product workgroups run at once, so that split K fills whole waves (GPUs only: on a CPU adapter it would
  // take seconds and tell little).
  if (!software) await measureMatmulResidency();
  return { name, description };
}

/** What the webgpu backend spent creating compute pipelines (shader compilation), for start-up figures. */
export const pipelineStats = { count: 0, ms: 0 };

interface GpuDeviceLike {
  onuncapturederror: ((event: { error: { message: string } }) => void) | null;
  createComputePipeline: (descriptor: unknown) => unknown;
}

/**
 * The error that ends the process for one of Dawn's uncaptured errors: a UserError where settings asked for a tensor
 * larger than the adapter can bind (smaller ones fit), else an internal error.
 */
export function webgpuError(message: string): Error {
  const tooLarge = /Binding size \((\d+)\)[^]*maximum storage buffer binding size \((\d+)\)/.exec(message);
  if (!tooLarge) return new Error(`WebGPU error (fatal): ${message}`);
  const [size, limit] = [Number(tooLarge[1]), Number(tooLarge[2])].map((bytes) => Math.ceil(bytes / 2 ** 20));
  return new UserError(`a tensor of ${size} MiB is larger than this GPU adapter can bind (${limit} MiB): lower --batch or --seq, or use a smaller model or vocabulary`);
}

/**
 * Makes Dawn's uncaptured errors fatal: a WebGPU validation or out-of-memory error otherwise only
 * logs, and the kernels that follow compute garbage. Also counts pipeline creations and their time.
 */
function setUpWebgpuDevice(): void {
  const device = (tf.backend() as unknown as { device: GpuDeviceLike }).device;
  device.onuncapturederror = (event) => {
    // Thrown outside the callback so it reaches Node's uncaught-exception handler and ends the process.
    setImmediate(() => {
      throw webgpuError(event.error.message);
    });
  };
  const create = device.createComputePipeline.bind(device);
  device.createComputePipeline = (descriptor) => {
    const start = performance.now();
    const pipeline = create(descriptor);
    pipelineStats.count += 1;
    pipelineStats.ms += performance.now() - start;
    return pipeline;
  };
  registerWebgpuKernels();
}

interface GpuBufferPool {
  freeBuffers: Map<string, { destroy: () => void; size: number }[]>;
  numFreeBuffers: number;
  numBytesAllocated: number;
  numBytesUsed: number;
}

/** Waits until `t` is computed by reading back one element (the whole tensor would time the copy, not the work). */
export async function settle(t: tf.Tensor): Promise<void> {
  const first = tf.tidy(() => tf.slice(tf.reshape(t, [-1]), [0], [1]));
  await first.data();
  first.dispose();
}

/**
 * tfjs-webgpu keeps every freed buffer in a pool keyed by its exact size and never frees one, so
 * work whose shapes change from call to call (scoring documents and candidates of different
 * lengths, prompts of different lengths) grows the pool until the device runs out of memory (found
 * on the H200 in ARL segment scoring). Call between such calls: once the pool holds more than
 * `maxPooledBytes` it is destroyed. Returns the bytes released (0 off webgpu).
 */
export function releaseUnusedGpuMemory(maxPooledBytes = gpuPoolBytes()): number {
  if (tf.getBackend() !== 'webgpu') return 0;
  const pool = (tf.backend() as unknown as { bufferManager: GpuBufferPool }).bufferManager;
  const pooled = pool.numBytesAllocated - pool.numBytesUsed;
  if (pooled <= maxPooledBytes) return 0;
  let released = 0;
  // Empty each size's list in place: the manager skips releases while its map has no keys.
  for (const buffers of pool.freeBuffers.values()) {
    for (const buffer of buffers.splice(0)) {
      released += buffer.size;
      buffer.destroy();
    }
  }
  pool.numFreeBuffers = 0;
  pool.numBytesAllocated -= released;
  return released;
}

async function tryWasm(): Promise<boolean> {
  await import('@tensorflow/tfjs-backend-wasm');
  // The multi-threaded SIMD build (XNNPACK on a thread pool); the stock single-threaded one if it fails.
  const stock = tf.findBackendFactory('wasm');
  let threaded = false;
  try {
    threaded = tf.engine().registry.wasm === undefined && installThreadedWasm(wasmThreadCount());
  } catch {
    threaded = false; // e.g. no writable temp dir for the worker script: the stock build it is
  }
  let ok = false;
  try {
    ok = await tf.setBackend('wasm');
  } catch {
    ok = false;
  }
  if (!ok && threaded && stock) {
    restoreStockWasm(stock);
    ok = await tf.setBackend('wasm');
  }
  if (!ok) return false;
  registerWasmKernels();
  return true;
}

/**
 * ARL_TFJS_FLAGS="NAME=value,..." sets tfjs environment flags (numbers and booleans parsed), for
 * ablations on the GPU, e.g. WEBGPU_MATMUL_PROGRAM_TYPE=3 or WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE=64.
 */
function applyTfjsFlags(spec: string | undefined): void {
  for (const item of (spec ?? '').split(',').filter(Boolean)) {
    const [name, raw] = item.split('=');
    if (raw === undefined) throw new UserError(`ARL_TFJS_FLAGS: "${item}" is not NAME=value`);
    tf.env().set(name.trim(), raw === 'true' ? true : raw === 'false' ? false : Number.isNaN(Number(raw)) ? raw : Number(raw));
  }
}

export interface BackendOptions {
  /** WebGPU with the f16 toggles and features (mixed precision); default ARL_WEBGPU_F16=1. */
  f16?: boolean;
}

/** Selects and initialises a backend. Throws UserError when an explicitly requested backend cannot load. */
export async function selectBackend(requested: BackendName = 'auto', options: BackendOptions = {}): Promise<BackendChoice> {
  const f16 = options.f16 ?? webgpuF16();
  // Production mode silences tfjs's console banners ("install the node backend"), which would
  // otherwise interleave with our progress output; we say which backend we took ourselves.
  tf.env().set('PROD', true);
  const failures: string[] = [];
  const attempt = async <T>(label: string, fn: () => Promise<T>): Promise<T | null> => {
    try {
      return await fn();
    } catch (err) {
      failures.push(`${label}: ${(err as Error).message.split('\n')[0]}`);
      return null;
    }
  };
  const threads = (): string => `${wasmThreadsInUse()} thread${wasmThreadsInUse() === 1 ? '' : 's'}`;
  switch (requested) {
    case 'tensorflow': {
      const pkg = await tryTensorflow();
      if (!pkg) throw new UserError('--backend tensorflow: neither @tensorflow/tfjs-node-gpu nor @tensorflow/tfjs-node loads here; install one, or use --backend webgpu|wasm|cpu');
      return { name: 'tensorflow', detail: pkg, reason: `requested; using ${pkg}` };
    }
    case 'webgpu': {
      const adapter = await attempt('webgpu', () => tryWebgpu(true, f16));
      if (!adapter) throw new UserError(`--backend webgpu: ${failures.join('; ')}; check the GPU driver (Vulkan on Linux, Metal on macOS, D3D12 on Windows), or use --backend wasm`);
      return { name: 'webgpu', detail: adapter.name, reason: `requested; adapter ${adapter.description}` };
    }
    case 'wasm':
      if (!(await attempt('wasm', tryWasm))) throw new UserError(`--backend wasm: ${failures.join('; ')}`);
      return { name: 'wasm', detail: threads(), reason: `requested; ${wasmThreadsInUse()} thread(s)` };
    case 'cpu':
      await tf.setBackend('cpu');
      return { name: 'cpu', detail: 'pure JS', reason: 'requested' };
    case 'auto': {
      const pkg = await tryTensorflow();
      if (pkg) return { name: 'tensorflow', detail: pkg, reason: `auto: ${pkg} loaded (native TensorFlow)` };
      failures.push('tensorflow: tfjs-node(-gpu) not installed or its native library did not load');
      const adapter = await attempt('webgpu', () => tryWebgpu(false, f16));
      if (adapter) return { name: 'webgpu', detail: adapter.name, reason: `auto: hardware WebGPU adapter ${adapter.description}` };
      if (failures.length === 1) failures.push('webgpu: only a software (CPU) adapter, slower than wasm');
      if (await attempt('wasm', tryWasm)) return { name: 'wasm', detail: threads(), reason: `auto: wasm (XNNPACK, ${wasmThreadsInUse()} thread(s)) is the fastest that loaded; skipped ${failures.join('; ')}` };
      await tf.setBackend('cpu');
      return { name: 'cpu', detail: 'pure JS', reason: `auto: fell back to the pure-JS cpu backend; skipped ${failures.join('; ')}` };
    }
  }
}
