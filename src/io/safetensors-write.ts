/**
 * Safetensors writing, streamed: the header is built from shapes alone, then each tensor's data
 * is fetched and written in turn, so only one tensor is ever held in memory and no Buffer spans
 * the file. Tensors beyond a shard size are split the way Hugging Face does:
 * <stem>-00001-of-0000N.safetensors ... plus <stem>.safetensors.index.json
 * ({metadata: {total_size}, weight_map: {name: shard}}).
 */
import { join } from 'node:path';
import { writeFileAtomic, writeFileAtomicStream } from './atomic.ts';
import type { NamedArray, TensorData } from './safetensors.ts';

export interface TensorToWrite {
  name: string;
  shape: number[];
  dtype: 'F32' | 'I32';
  /** Called once, when the tensor's turn to be written comes. */
  read: () => TensorData | Promise<TensorData>;
}

/** Hugging Face's default is 5 GB; 2 GiB keeps every shard readable by tools that read whole files. */
export const DEFAULT_SHARD_BYTES = 2 * 2 ** 30;

function byteSize(t: TensorToWrite): number {
  return t.shape.reduce((a, b) => a * b, 1) * 4;
}

function headerBytes(tensors: TensorToWrite[], metadata: Record<string, string>): Buffer {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const t of tensors) {
    const size = byteSize(t);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + size] };
    offset += size;
  }
  let text = JSON.stringify(header);
  text += ' '.repeat((8 - (Buffer.byteLength(text) % 8)) % 8); // keep the data 8-byte aligned
  const body = Buffer.from(text, 'utf8');
  const out = Buffer.alloc(8 + body.length);
  out.writeBigUInt64LE(BigInt(body.length), 0);
  body.copy(out, 8);
  return out;
}

async function* fileChunks(file: string, tensors: TensorToWrite[], metadata: Record<string, string>): AsyncGenerator<Uint8Array> {
  yield headerBytes(tensors, metadata);
  for (const t of tensors) {
    const data = await t.read();
    if (data.byteLength !== byteSize(t) || (t.dtype === 'F32') !== data instanceof Float32Array) {
      throw new Error(`${file}: tensor ${t.name} got ${data.length} ${data.constructor.name} values for ${t.dtype} [${t.shape}]`);
    }
    yield new Uint8Array(data.buffer, data.byteOffset, data.byteLength); // typed arrays are little-endian on every Node platform
  }
}

/** Writes one safetensors file atomically, tensor by tensor, in the given order. */
async function writeSafetensorsFile(file: string, tensors: TensorToWrite[], metadata: Record<string, string> = {}): Promise<void> {
  await writeFileAtomicStream(file, fileChunks(file, tensors, metadata));
}

/** Writes in-memory tensors (F32 for floats, I32 for ints) as one file. */
export async function writeSafetensors(file: string, tensors: Map<string, NamedArray>, metadata: Record<string, string> = {}): Promise<void> {
  const list = [...tensors].map(([name, { shape, data }]): TensorToWrite => ({ name, shape, dtype: data instanceof Float32Array ? 'F32' : 'I32', read: () => data }));
  await writeSafetensorsFile(file, list, metadata);
}

/** Consecutive groups whose data stays within `maxBytes` (a larger tensor gets a shard of its own). */
function planShards(tensors: TensorToWrite[], maxBytes: number): TensorToWrite[][] {
  const shards: TensorToWrite[][] = [];
  let size = 0;
  for (const t of tensors) {
    const bytes = byteSize(t);
    if (shards.length === 0 || size + bytes > maxBytes) {
      shards.push([]);
      size = 0;
    }
    shards[shards.length - 1].push(t);
    size += bytes;
  }
  return shards;
}

/**
 * Writes `<stem>.safetensors` into `dir`, or, when the tensors exceed `shardBytes`, numbered
 * shards and the index (last, so an index always names complete shards). Returns the file names.
 */
export async function writeSafetensorsDir(
  dir: string,
  stem: string,
  tensors: TensorToWrite[],
  options: { shardBytes?: number; metadata?: Record<string, string> } = {},
): Promise<string[]> {
  const metadata = options.metadata ?? {};
  const shards = planShards(tensors, options.shardBytes ?? DEFAULT_SHARD_BYTES);
  if (shards.length <= 1) {
    await writeSafetensorsFile(join(dir, `${stem}.safetensors`), tensors, metadata);
    return [`${stem}.safetensors`];
  }
  const pad = (n: number) => String(n).padStart(5, '0');
  const names = shards.map((_, i) => `${stem}-${pad(i + 1)}-of-${pad(shards.length)}.safetensors`);
  const weightMap: Record<string, string> = {};
  for (const [i, shard] of shards.entries()) {
    await writeSafetensorsFile(join(dir, names[i]), shard, metadata);
    for (const t of shard) weightMap[t.name] = names[i];
  }
  const totalSize = tensors.reduce((sum, t) => sum + byteSize(t), 0);
  const index = `${stem}.safetensors.index.json`;
  writeFileAtomic(join(dir, index), JSON.stringify({ metadata: { total_size: totalSize }, weight_map: weightMap }, null, 2));
  return [...names, index];
}
