/**
 * The runtime of our WGSL kernels for the tfjs webgpu backend: dispatch, allocation, the shader
 * cache, and the WGSL prelude the kernels share. The kernels (one file per family beside this one,
 * registered by index.ts) back the Arl* ops of src/ops.
 *
 * Why: on the GPU a training step of the stock ops was bound by dispatch overhead, not arithmetic
 * (H200, 29.4M model: 2,733 dispatches, 148 ms of GPU time in a 333 ms step; docs/benchmarks.md).
 * Each kernel replaces a chain of small element-wise ops with one dispatch: RMSNorm forward
 * (1 instead of 6) and backward (3 instead of ~10), SwiGLU (1 and 1 instead of 3 and 7), the AdamW
 * update of one variable in place (1 instead of ~12, and no new buffers), and the gradient's sum of
 * squares for clipping (1 per variable instead of 2).
 *
 * tfjs's own program system gives a shader one output; these dispatch through `dispatchRaw`,
 * which records into the backend's command encoder (so ordering with tfjs's kernels holds) and may
 * write several outputs, or update buffers in place. Each kernel is checked against the plain
 * tfjs ops, values and gradients, in test/webgpu-kernels.test.ts.
 */
import * as tf from '@tensorflow/tfjs';

/** The parts of tfjs-backend-webgpu's WebGPUBackend that dispatchRaw uses. */
export interface WebgpuBackend {
  device: {
    createShaderModule(d: { code: string; label?: string }): unknown;
    createComputePipeline(d: unknown): { getBindGroupLayout(i: number): unknown };
    createBindGroup(d: unknown): unknown;
    createQuerySet(d: unknown): unknown;
    pushErrorScope(filter: 'validation' | 'out-of-memory' | 'internal'): void;
    popErrorScope(): Promise<{ message: string } | null>;
  };
  commandEncoder: { beginComputePass(d: unknown): ComputePass } | null;
  computePassEncoder: ComputePass | null;
  commandQueueOwnedIds: WeakSet<object>;
  tensorMap: { get(id: tf.DataId): { values: unknown; resource: unknown } | undefined };
  dispatchCountInPass: number;
  activeTimers: { name: string; query: Promise<number> }[] | null;
  supportTimestampQuery: boolean;
  querySet: unknown;
  querySetCount: number;
  makeTensorInfo(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  uploadToGPU(dataId: tf.DataId): void;
  tensorToBinding(t: tf.TensorInfo): unknown;
  makeUniforms(u: Uniform[]): unknown;
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
  getQueryTime(): Promise<number>;
  refCount(dataId: tf.DataId): number;
}
export interface ComputePass {
  setPipeline(p: unknown): void;
  setBindGroup(i: number, g: unknown): void;
  dispatchWorkgroups(x: number, y: number, z: number): void;
}
export type Uniform = { type: 'float32' | 'int32' | 'uint32'; data: number[] };

const MAX_GROUPS_PER_DIM = 65535;
type Pipeline = ReturnType<WebgpuBackend['device']['createComputePipeline']>;
/** Per shader text: its pipeline, and the bindings it declares read_write (buffers it writes). */
const shaders = new Map<string, { pipeline: Pipeline; written: number[] }>();

/** [x, y, 1] workgroups covering `count` workgroups (2-D past the 65,535-per-dimension limit). */
export function grid(count: number): [number, number, number] {
  return count <= MAX_GROUPS_PER_DIM ? [Math.max(count, 1), 1, 1] : [MAX_GROUPS_PER_DIM, Math.ceil(count / MAX_GROUPS_PER_DIM), 1];
}

/** The bindings `code` declares read_write. */
function writtenBindings(code: string): number[] {
  return [...code.matchAll(/@binding\((\d+)\)\s*var<storage,\s*read_write>/g)].map((m) => Number(m[1]));
}

/** The pipeline and the written bindings of `code`, made once per shader text. */
function shader(name: string, code: string): { pipeline: Pipeline; written: number[] } {
  let entry = shaders.get(code);
  if (!entry) {
    const device = (tf.backend() as unknown as WebgpuBackend).device;
    const pipeline = device.createComputePipeline({ layout: 'auto', label: name, compute: { module: device.createShaderModule({ code, label: name }), entryPoint: 'main' } });
    entry = { pipeline, written: writtenBindings(code) };
    shaders.set(code, entry);
  }
  return entry;
}

/**
 * Compiles `code` under an error scope, for kernels that may not compile on every device: null
 * when it did (the pipeline is cached for dispatchRaw), else the error on one line.
 */
export async function tryComputePipeline(name: string, code: string): Promise<string | null> {
  if (shaders.has(code)) return null;
  const device = (tf.backend() as unknown as WebgpuBackend).device;
  device.pushErrorScope('validation');
  const pipeline = device.createComputePipeline({ layout: 'auto', label: name, compute: { module: device.createShaderModule({ code, label: name }), entryPoint: 'main' } });
  const error = await device.popErrorScope();
  if (error) return error.message.replace(/\s+/g, ' ').trim().slice(0, 400) || 'pipeline creation failed';
  shaders.set(code, { pipeline, written: writtenBindings(code) });
  return null;
}

/** The compute pipeline of `code` (entry point main, layout from the shader), created once per shader text. */
export function computePipeline(name: string, code: string): Pipeline {
  return shader(name, code).pipeline;
}

/** Frees a buffer a kernel allocated for its own scratch (a TensorInfo no tensor wraps). */
export function release(info: tf.TensorInfo): void {
  (tf.backend() as unknown as { disposeData(id: tf.DataId): void }).disposeData(info.dataId);
}

/**
 * Records one compute dispatch of `code` into tfjs's command stream. `buffers` bind in order at
 * @binding(0..n-1) (declared read or read_write by the shader), the uniforms, if any, at @binding(n).
 * Outputs must be allocated by the caller (backend.makeTensorInfo); inputs are uploaded if needed.
 * Under tf.profile the dispatch is timed on the GPU like tfjs's own programs.
 */
export function dispatchRaw(name: string, code: string, buffers: tf.TensorInfo[], uniforms: Uniform[] | null, groups: [number, number, number]): void {
  const backend = tf.backend() as unknown as WebgpuBackend;
  const { pipeline, written } = shader(name, code);
  for (const b of buffers) backend.uploadToGPU(b.dataId);
  // tfjs keeps the values of a tensor once read (and answers later reads from them); a buffer
  // written here (in place: AdamW's weights and moments, the KV cache) must be read anew.
  for (const i of written) {
    const data = backend.tensorMap.get(buffers[i].dataId);
    if (data) data.values = null;
  }
  const entries = buffers.map((b, i) => ({ binding: i, resource: backend.tensorToBinding(b) }));
  if (uniforms) entries.push({ binding: buffers.length, resource: backend.makeUniforms(uniforms) });
  for (const b of buffers) backend.commandQueueOwnedIds.add(b.dataId);
  const bindGroup = backend.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
  backend.ensureCommandEncoderReady();
  const timed = backend.activeTimers != null && backend.supportTimestampQuery;
  if (timed) {
    backend.endComputePassEncoder();
    backend.querySet ??= backend.device.createQuerySet({ type: 'timestamp', count: backend.querySetCount });
    backend.computePassEncoder = backend.commandEncoder!.beginComputePass({ timestampWrites: { querySet: backend.querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } });
  } else if (!backend.computePassEncoder) {
    backend.computePassEncoder = backend.commandEncoder!.beginComputePass({});
  }
  const pass = backend.computePassEncoder!;
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bindGroup);
  pass.dispatchWorkgroups(groups[0], groups[1], groups[2]);
  backend.dispatchCountInPass++;
  if (timed) {
    backend.endComputePassEncoder();
    backend.activeTimers!.push({ name, query: backend.getQueryTime() });
  } else if (backend.dispatchCountInPass >= (tf.env().get('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE') as number)) {
    backend.endComputePassEncoder();
    backend.submitQueue();
  }
}

export function allocate(shape: number[]): tf.TensorInfo {
  return (tf.backend() as unknown as WebgpuBackend).makeTensorInfo(shape, 'float32');
}

/** The flat index of this invocation in a grid() dispatch of 1-D workgroups of size WG. */
export const flatIndex = (wg: number): string => `gid.x + gid.y * nwg.x * ${wg}u`;
/** The entry point's parameters: every kernel declares the same builtins. */
export const builtins = '@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>';

/** Sum over a 256-wide workgroup of `value` (every invocation gets it). */
export const WG_SUM = `
var<workgroup> partial: array<f32, 256>;
fn workgroupSum(value: f32, lid: u32) -> f32 {
  partial[lid] = value;
  workgroupBarrier();
  for (var stride = 128u; stride > 0u; stride = stride >> 1u) {
    if (lid < stride) { partial[lid] = partial[lid] + partial[lid + stride]; }
    workgroupBarrier();
  }
  let total = partial[0];
  workgroupBarrier();
  return total;
}`;
