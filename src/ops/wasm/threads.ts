/**
 * The multi-threaded SIMD build of the tfjs wasm backend under Node.
 *
 * tfjs-backend-wasm ships tfjs-backend-wasm-threaded-simd.wasm but never loads it under Node
 * (its WASM_HAS_MULTITHREAD_SUPPORT flag is hard-wired to false there, tensorflow/tfjs#3830), and
 * its loader hands Emscripten Blob URLs for the pthread worker script, which Node's worker_threads
 * cannot start. This module registers a replacement factory for the `wasm` backend that loads the
 * threaded build with plain file paths: the worker script (shipped as a string in the package) is
 * written once to the temp directory, the main script is the package's own file.
 *
 * Two more fixes: the C++ side sizes its thread pool as navigator.hardwareConcurrency / 2 (it
 * assumes hyper-threading), i.e. one thread on a 2-core machine, so os.cpus() is doubled while the
 * module initialises; and pthreads that run keep the Node event loop alive, so running workers are
 * unref'd (a CLI command then exits when its work is done, as with the single-threaded build).
 *
 * XNNPACK's operators (fully connected, i.e. our matmuls; convolutions; element-wise ops) then run
 * on the thread pool. Every pooled operator ends in a barrier where the caller waits for all
 * threads; when another process holds a core that wait lasts a scheduler time slice, so ~2,000
 * small pooled ops per training step made a busy 2-core machine twice as slow as one thread.
 * So the pool is switched off by default (the C++ side's global pool pointer, found in the
 * module's get_threads_count, is set to null: XNNPACK then runs inline) and switched on only
 * around large matmuls, and for those only while it measures faster (usePool in matmul.ts).
 */
import * as tf from '@tensorflow/tfjs';
import * as wasmBackend from '@tensorflow/tfjs-backend-wasm';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { wasmThreads } from '../../switches.ts';

const require = createRequire(import.meta.url);

interface EmscriptenModule {
  cwrap: (name: string, ret: string | null, args: string[]) => (...args: unknown[]) => unknown;
  HEAP32: Int32Array;
  PThread?: { runningWorkers: { unref(): void }[]; unusedWorkers: { unref(): void }[] };
  tfjs?: Record<string, unknown>;
}

type ModuleFactory = (config: Record<string, unknown>) => Promise<EmscriptenModule>;

/** Threads to use: ARL_WASM_THREADS if set, else the available cores (XNNPACK's pool holds at most 8). */
export function wasmThreadCount(): number {
  const asked = wasmThreads();
  if (asked !== null) return Math.min(asked, 8);
  const cores = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
  return Math.max(1, Math.min(cores, 8));
}

/** Writes the pthread worker script to the temp dir (content-addressed, atomic) and returns its path. */
function workerScriptPath(contents: string): string {
  const hash = createHash('sha256').update(contents).digest('hex').slice(0, 16);
  const path = join(os.tmpdir(), `arl-tfjs-wasm-threaded-worker-${hash}.cjs`);
  if (!existsSync(path)) {
    const tmp = `${path}.${process.pid}.tmp`;
    writeFileSync(tmp, contents);
    renameSync(tmp, path);
  }
  return path;
}

/**
 * The heap address of the C++ global `tfjs::backend::threadpool`, read from the code of the
 * exported get_threads_count, which begins `i32.const ADDR; i32.load` (null where the code does
 * not have that shape: the pool then simply stays on).
 */
export function threadpoolPointerAddress(wasm: Uint8Array): number | null {
  let pos = 8;
  const leb = (): number => {
    let result = 0;
    let shift = 0;
    let byte: number;
    do {
      byte = wasm[pos++];
      result += (byte & 0x7f) * 2 ** shift;
      shift += 7;
    } while (byte & 0x80);
    return result;
  };
  let importedFunctions = 0;
  let exported: number | null = null;
  const bodies: number[] = [];
  try {
    while (pos < wasm.length) {
      const id = wasm[pos++];
      const size = leb();
      const end = pos + size;
      if (id === 2) {
        const count = leb();
        for (let i = 0; i < count; i++) {
          const moduleName = leb();
          pos += moduleName;
          const fieldName = leb();
          pos += fieldName;
          const kind = wasm[pos++];
          if (kind === 0) {
            leb();
            importedFunctions++;
          } else if (kind === 1) {
            pos++;
            if (leb() & 1) leb();
            leb();
          } else if (kind === 2) {
            const flags = leb();
            leb();
            if (flags & 1) leb();
          } else if (kind === 3) pos += 2;
          else return null;
        }
      } else if (id === 7) {
        const count = leb();
        for (let i = 0; i < count; i++) {
          const length = leb();
          const name = new TextDecoder().decode(wasm.subarray(pos, pos + length));
          pos += length;
          const kind = wasm[pos++];
          const index = leb();
          if (kind === 0 && name === 'get_threads_count') exported = index;
        }
      } else if (id === 10) {
        const count = leb();
        for (let i = 0; i < count; i++) {
          const length = leb();
          bodies.push(pos);
          pos += length;
        }
      }
      pos = end;
    }
    if (exported === null) return null;
    pos = bodies[exported - importedFunctions];
    const localGroups = leb();
    for (let i = 0; i < localGroups; i++) {
      leb();
      pos++;
    }
    if (wasm[pos++] !== 0x41) return null; // i32.const
    const address = leb();
    if (wasm[pos++] !== 0x28) return null; // i32.load
    return address;
  } catch {
    return null;
  }
}

/** Switches the XNNPACK thread pool on and off between operators (no-op without a pool). */
export const threadPool = {
  address: 0,
  pointer: 0,
  heap: null as Int32Array | null,
  module: null as EmscriptenModule | null,
  on: true,
  /** True when the pool exists and can be switched. */
  available(): boolean {
    return this.pointer !== 0;
  },
  set(on: boolean): void {
    if (this.pointer === 0 || on === this.on || !this.module) return;
    if (this.heap === null || this.heap.buffer !== this.module.HEAP32.buffer) this.heap = this.module.HEAP32;
    this.heap[this.address >> 2] = on ? this.pointer : 0;
    this.on = on;
  },
};

let installed = false;

/**
 * Replaces the `wasm` backend's factory with one that loads the threaded SIMD build with `threads`
 * threads. Call before the first tf.setBackend('wasm'). Returns false (leaving the stock factory in
 * place) where the threaded build cannot work: one thread requested, or no shared wasm memory.
 */
export function installThreadedWasm(threads: number): boolean {
  if (installed) return true;
  if (threads <= 1 || typeof SharedArrayBuffer === 'undefined') return false;
  try {
    new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
  } catch {
    return false;
  }
  let pkgDir: string;
  try {
    pkgDir = dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json'));
  } catch {
    return false; // a bundled CLI without node_modules: the single-threaded build bundled with tfjs
  }
  const outDir = join(pkgDir, 'wasm-out');
  const mainScript = join(outDir, 'tfjs-backend-wasm-threaded-simd.js');
  const factory = require(mainScript) as ModuleFactory;
  // The package exports the worker source inside a template literal, so its "\n" escapes arrive as
  // real newlines; put them back (tfjs does the same before making its Blob).
  const { wasmWorkerContents } = require(join(outDir, 'tfjs-backend-wasm-threaded-simd.worker.js')) as { wasmWorkerContents: string };
  const workerPath = workerScriptPath(wasmWorkerContents.replace(/\n/g, '\\n'));

  tf.removeBackend('wasm');
  tf.registerBackend(
    'wasm',
    async () => {
      const realCpus = os.cpus;
      const cores = realCpus().length;
      // The C++ init reads emscripten_num_logical_cores() (= os.cpus().length under Node) once,
      // during module initialisation, and halves it.
      os.cpus = () => {
        const list = realCpus();
        return Array.from({ length: 2 * Math.max(cores, threads) }, (_, i) => list[i % list.length]);
      };
      let module: EmscriptenModule;
      try {
        module = await factory({
          locateFile: (path: string) => (path.endsWith('.worker.js') ? workerPath : join(outDir, path)),
          mainScriptUrlOrBlob: mainScript,
        });
      } finally {
        os.cpus = realCpus;
      }
      module.tfjs = {
        init: module.cwrap('init', null, []),
        initWithThreadsCount: module.cwrap('init_with_threads_count', null, ['number']),
        getThreadsCount: module.cwrap('get_threads_count', 'number', []),
        registerTensor: module.cwrap('register_tensor', null, ['number', 'number', 'number']),
        disposeData: module.cwrap('dispose_data', null, ['number']),
        dispose: module.cwrap('dispose', null, []),
      };
      wasmBackend.setThreadsCount(threads);
      const backend = new wasmBackend.BackendWasm(module as unknown as ConstructorParameters<typeof wasmBackend.BackendWasm>[0]);
      // Thread-pool workers are parked pthreads: let the process exit while they wait.
      for (const w of [...(module.PThread?.runningWorkers ?? []), ...(module.PThread?.unusedWorkers ?? [])]) w.unref();
      const address = threadpoolPointerAddress(readFileSync(join(outDir, 'tfjs-backend-wasm-threaded-simd.wasm')));
      const pointer = address === null ? 0 : module.HEAP32[address >> 2];
      if (address !== null && pointer !== 0 && wasmBackend.getThreadsCount() === threads) {
        Object.assign(threadPool, { address, pointer, module, heap: module.HEAP32, on: true });
        threadPool.set(false);
      }
      return backend;
    },
    2,
  );
  installed = true;
  return true;
}

/** Threads the wasm backend's XNNPACK pool actually uses (1 for the single-threaded build). */
export function wasmThreadsInUse(): number {
  try {
    return wasmBackend.getThreadsCount();
  } catch {
    return 1;
  }
}

/** Puts the stock (single-threaded) factory back after the threaded build failed to start. */
export function restoreStockWasm(factory: NonNullable<ReturnType<typeof tf.findBackendFactory>>): void {
  tf.removeBackend('wasm');
  tf.registerBackend('wasm', factory, 2);
  installed = false;
}
