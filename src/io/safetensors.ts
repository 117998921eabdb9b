/**
 * Safetensors reading and writing (https://huggingface.co/docs/safetensors): an 8-byte little-endian
 * header length, a JSON header {name: {dtype, shape, data_offsets}}, then raw little-endian data.
 * Our own small implementation: it reads F32/F16/BF16/F64 into Float32Array, and I32/I64 into
 * Int32Array, across single files and sharded checkpoints (model.safetensors.index.json).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from './atomic.ts';
import { UserError } from './errors.ts';

export interface NamedArray {
  shape: number[];
  data: Float32Array | Int32Array;
}

interface HeaderEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

const BYTES: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4 };

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * 2 ** -14 * (frac / 1024);
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * 2 ** (exp - 15) * (1 + frac / 1024);
}

function decode(entry: HeaderEntry, bytes: Buffer, file: string, name: string): NamedArray {
  const count = entry.shape.reduce((a, b) => a * b, 1);
  const width = BYTES[entry.dtype];
  if (width === undefined) throw new UserError(`${file}: tensor ${name} has unsupported dtype ${entry.dtype} (supported: ${Object.keys(BYTES).join(', ')})`);
  if (bytes.length !== count * width) throw new UserError(`${file}: tensor ${name} holds ${bytes.length} bytes, expected ${count * width}; the file is corrupt or truncated`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (entry.dtype) {
    case 'F32': {
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getFloat32(i * 4, true);
      return { shape: entry.shape, data: out };
    }
    case 'F64': {
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getFloat64(i * 8, true);
      return { shape: entry.shape, data: out };
    }
    case 'F16': {
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = halfToFloat(view.getUint16(i * 2, true));
      return { shape: entry.shape, data: out };
    }
    case 'BF16': {
      const out = new Float32Array(count);
      const word = new DataView(new ArrayBuffer(4));
      for (let i = 0; i < count; i++) {
        word.setUint32(0, view.getUint16(i * 2, true) << 16);
        out[i] = word.getFloat32(0);
      }
      return { shape: entry.shape, data: out };
    }
    case 'I32': {
      const out = new Int32Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getInt32(i * 4, true);
      return { shape: entry.shape, data: out };
    }
    default: {
      const out = new Int32Array(count);
      for (let i = 0; i < count; i++) out[i] = Number(view.getBigInt64(i * 8, true));
      return { shape: entry.shape, data: out };
    }
  }
}

/** Reads every tensor of one .safetensors file. */
export function readSafetensors(file: string): Map<string, NamedArray> {
  let buf: Buffer;
  try {
    buf = readFileSync(file);
  } catch (err) {
    throw new UserError(`${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  if (buf.length < 8) throw new UserError(`${file}: too short to be a safetensors file (truncated?)`);
  const headerLen = Number(buf.readBigUInt64LE(0));
  if (headerLen <= 0 || 8 + headerLen > buf.length) throw new UserError(`${file}: header length ${headerLen} does not fit the file; the file is corrupt or truncated`);
  let header: Record<string, HeaderEntry | Record<string, string>>;
  try {
    header = JSON.parse(buf.subarray(8, 8 + headerLen).toString('utf8'));
  } catch {
    throw new UserError(`${file}: header is not valid JSON; the file is corrupt`);
  }
  const dataStart = 8 + headerLen;
  const out = new Map<string, NamedArray>();
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const entry = raw as HeaderEntry;
    const [begin, end] = entry.data_offsets;
    if (dataStart + end > buf.length) throw new UserError(`${file}: tensor ${name} runs past the end of the file; the file is truncated`);
    out.set(name, decode(entry, buf.subarray(dataStart + begin, dataStart + end), file, name));
  }
  return out;
}

/** Reads a checkpoint directory: model.safetensors, or the shards named by model.safetensors.index.json. */
export function readSafetensorsDir(dir: string): Map<string, NamedArray> {
  const index = join(dir, 'model.safetensors.index.json');
  if (existsSync(index)) {
    let weightMap: Record<string, string>;
    try {
      weightMap = JSON.parse(readFileSync(index, 'utf8')).weight_map;
    } catch (err) {
      throw new UserError(`${index}: not valid JSON (${(err as Error).message})`);
    }
    if (!weightMap || typeof weightMap !== 'object') throw new UserError(`${index}: missing "weight_map"`);
    const out = new Map<string, NamedArray>();
    for (const shard of [...new Set(Object.values(weightMap))].sort()) {
      for (const [name, arr] of readSafetensors(join(dir, shard))) out.set(name, arr);
    }
    return out;
  }
  const single = join(dir, 'model.safetensors');
  if (!existsSync(single)) throw new UserError(`${dir}: no model.safetensors or model.safetensors.index.json found`);
  return readSafetensors(single);
}

/** Encodes tensors as one safetensors file (F32 for floats, I32 for ints), tensors in the given order. */
export function encodeSafetensors(tensors: Map<string, NamedArray>, metadata: Record<string, string> = {}): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const [name, { shape, data }] of tensors) {
    const size = data.length * 4;
    header[name] = { dtype: data instanceof Float32Array ? 'F32' : 'I32', shape, data_offsets: [offset, offset + size] };
    offset += size;
  }
  let headerText = JSON.stringify(header);
  headerText += ' '.repeat((8 - (headerText.length % 8)) % 8); // keep the data 8-byte aligned
  const headerBytes = Buffer.from(headerText, 'utf8');
  const out = Buffer.alloc(8 + headerBytes.length + offset);
  out.writeBigUInt64LE(BigInt(headerBytes.length), 0);
  headerBytes.copy(out, 8);
  let pos = 8 + headerBytes.length;
  for (const { data } of tensors.values()) {
    Buffer.from(data.buffer, data.byteOffset, data.byteLength).copy(out, pos); // typed arrays are little-endian on every Node platform
    pos += data.byteLength;
  }
  return out;
}

export function writeSafetensors(file: string, tensors: Map<string, NamedArray>, metadata: Record<string, string> = {}): void {
  writeFileAtomic(file, encodeSafetensors(tensors, metadata));
}
