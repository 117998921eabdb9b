/**
 * Safetensors reading (https://huggingface.co/docs/safetensors): an 8-byte little-endian header
 * length, a JSON header {name: {dtype, shape, data_offsets}}, then raw little-endian data.
 * Only the header is read up front; each tensor is read at its offset when asked for, so files
 * of any size (Node reads at most 2 GiB into one Buffer) and sharded checkpoints
 * (model.safetensors.index.json) load one tensor at a time. F32/F16/BF16/F64 become
 * Float32Array, I32/I64 Int32Array.
 */
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync } from 'node:fs';
import { basename, join } from 'node:path';
import { UserError } from './errors.ts';

export type TensorData = Float32Array | Int32Array;

export interface NamedArray {
  shape: number[];
  data: TensorData;
}

/** Tensors looked up by name: a Map, or a SafetensorsReader that reads each from disk on demand. */
export interface TensorSource {
  has(name: string): boolean;
  get(name: string): NamedArray | undefined;
  /** The tensor's shape without reading its values, where the source can tell. */
  shapeOf?(name: string): number[] | undefined;
  /** Reads float tensor `name` into `target` (exactly its size), where the source can do without an array of its own. */
  readFloat32Into?(name: string, target: Float32Array): void;
}

/** Where one tensor's bytes are: `start` is an absolute file offset. */
interface Location {
  file: string;
  dtype: string;
  shape: number[];
  start: number;
}

const BYTES: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4 };
/** Converted dtypes are read through a scratch buffer of this size, not one buffer per tensor. */
const SCRATCH_BYTES = 1 << 24;
/** readSync moves at most 2 GiB per call. */
const IO_BYTES = 1 << 30;
/** The format's own limit; a larger length means a corrupt file, not a header to allocate. */
const MAX_HEADER_BYTES = 100_000_000;

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * 2 ** -14 * (frac / 1024);
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * 2 ** (exp - 15) * (1 + frac / 1024);
}

let halfTable: Float32Array | null = null;
function halfToFloatTable(): Float32Array {
  if (!halfTable) {
    halfTable = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) halfTable[h] = halfToFloat(h);
  }
  return halfTable;
}

function openForReading(file: string): number {
  try {
    return openSync(file, 'r');
  } catch (err) {
    throw new UserError(`${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}

/** Fills `target` from `position`; a file that ends early is truncated. */
function readFully(fd: number, target: Uint8Array, position: number, file: string): void {
  for (let done = 0; done < target.length; ) {
    const n = readSync(fd, target, done, Math.min(target.length - done, IO_BYTES), position + done);
    if (n === 0) throw new UserError(`${file}: ends at byte ${position + done}, before the data its header describes; the file is truncated`);
    done += n;
  }
}

function isCount(x: unknown): x is number {
  return Number.isSafeInteger(x) && (x as number) >= 0;
}

/** Reads and checks the header of one file: every tensor must lie inside the file. */
function readHeader(file: string): Map<string, Location> {
  const fd = openForReading(file);
  try {
    const size = fstatSync(fd).size;
    if (size < 8) throw new UserError(`${file}: ${size} bytes is too short to be a safetensors file; the file is truncated`);
    const lengthBytes = Buffer.alloc(8);
    readFully(fd, lengthBytes, 0, file);
    const headerLen = lengthBytes.readBigUInt64LE(0);
    if (headerLen === 0n) throw new UserError(`${file}: header length is 0; not a safetensors file`);
    if (headerLen > BigInt(size - 8)) {
      throw new UserError(`${file}: header length ${headerLen} runs past the end of the file (${size} bytes); the file is truncated or not safetensors`);
    }
    if (headerLen > BigInt(MAX_HEADER_BYTES)) throw new UserError(`${file}: header length ${headerLen} exceeds the safetensors limit of ${MAX_HEADER_BYTES} bytes; the file is corrupt`);
    const headerBytes = Buffer.alloc(Number(headerLen));
    readFully(fd, headerBytes, 8, file);
    let header: unknown;
    try {
      header = JSON.parse(headerBytes.toString('utf8'));
    } catch {
      throw new UserError(`${file}: header is not valid JSON; the file is corrupt`);
    }
    if (!header || typeof header !== 'object' || Array.isArray(header)) throw new UserError(`${file}: header is not a JSON object; the file is corrupt`);
    const dataStart = 8 + Number(headerLen);
    const dataBytes = size - dataStart;
    const tensors = new Map<string, Location>();
    for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
      if (name === '__metadata__') continue;
      const { dtype, shape, data_offsets: offsets } = (raw ?? {}) as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      const width = BYTES[dtype as string];
      if (width === undefined) throw new UserError(`${file}: tensor ${name} has unsupported dtype ${dtype} (supported: ${Object.keys(BYTES).join(', ')})`);
      if (!Array.isArray(shape) || !shape.every(isCount)) throw new UserError(`${file}: tensor ${name} has no valid shape; the file is corrupt`);
      if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount) || offsets[0] > offsets[1]) {
        throw new UserError(`${file}: tensor ${name} has no valid data_offsets; the file is corrupt`);
      }
      const [begin, end] = offsets as [number, number];
      const expected = shape.reduce((a: number, b: number) => a * b, 1) * width;
      if (end - begin !== expected) throw new UserError(`${file}: tensor ${name} spans ${end - begin} bytes, but ${dtype} [${shape}] needs ${expected}; the file is corrupt`);
      if (end > dataBytes) {
        throw new UserError(`${file}: tensor ${name} lies at data bytes ${begin}..${end}, past the ${dataBytes} data bytes in the file; the file is truncated`);
      }
      tensors.set(name, { file, dtype: dtype as string, shape, start: dataStart + begin });
    }
    return tensors;
  } finally {
    closeSync(fd);
  }
}

/** Converts `n` elements of `scratch` (of `dtype`) into `out` from element `at`. */
function convert(dtype: string, scratch: ArrayBuffer, n: number, out: TensorData, at: number): void {
  switch (dtype) {
    case 'F16': {
      const table = halfToFloatTable();
      const src = new Uint16Array(scratch, 0, n);
      for (let i = 0; i < n; i++) out[at + i] = table[src[i]];
      return;
    }
    case 'BF16': {
      // bfloat16 is the top half of a float32.
      const src = new Uint16Array(scratch, 0, n);
      const bits = new Uint32Array(out.buffer, out.byteOffset, out.length);
      for (let i = 0; i < n; i++) bits[at + i] = src[i] << 16;
      return;
    }
    case 'F64': {
      const src = new Float64Array(scratch, 0, n);
      for (let i = 0; i < n; i++) out[at + i] = src[i];
      return;
    }
    default: {
      const src = new BigInt64Array(scratch, 0, n);
      for (let i = 0; i < n; i++) out[at + i] = Number(src[i]);
    }
  }
}

const isInteger = (dtype: string): boolean => dtype === 'I32' || dtype === 'I64';

/**
 * Reads one tensor at its offset into `target` (a fresh array when not given); F32/I32 land straight in it (typed arrays
 * are little-endian on every Node platform).
 */
function readTensor(loc: Location, target?: TensorData): NamedArray {
  const count = loc.shape.reduce((a, b) => a * b, 1);
  const out = target ?? (isInteger(loc.dtype) ? new Int32Array(count) : new Float32Array(count));
  const fd = openForReading(loc.file);
  try {
    if (loc.dtype === 'F32' || loc.dtype === 'I32') {
      readFully(fd, new Uint8Array(out.buffer, out.byteOffset, out.byteLength), loc.start, loc.file);
    } else {
      const width = BYTES[loc.dtype];
      const perChunk = Math.floor(SCRATCH_BYTES / width);
      const scratch = new ArrayBuffer(Math.min(count, perChunk) * width);
      for (let at = 0; at < count; at += perChunk) {
        const n = Math.min(perChunk, count - at);
        readFully(fd, new Uint8Array(scratch, 0, n * width), loc.start + at * width, loc.file);
        convert(loc.dtype, scratch, n, out, at);
      }
    }
  } finally {
    closeSync(fd);
  }
  return { shape: loc.shape, data: out };
}

function readIndex(index: string): Record<string, string> {
  let parsed: { weight_map?: unknown };
  try {
    parsed = JSON.parse(readFileSync(index, 'utf8'));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UserError(`${index}: ${code ? `cannot read (${code})` : `not valid JSON (${(err as Error).message})`}`);
  }
  const map = parsed?.weight_map;
  if (!map || typeof map !== 'object' || Array.isArray(map)) throw new UserError(`${index}: missing "weight_map"`);
  for (const [name, shard] of Object.entries(map)) {
    // Shards live next to the index; a path elsewhere is refused.
    if (typeof shard !== 'string' || basename(shard) !== shard || shard === '.' || shard === '..') throw new UserError(`${index}: tensor ${name} maps to ${JSON.stringify(shard)}, which is not a shard file name`);
  }
  return map as Record<string, string>;
}

/**
 * The files that hold `<stem>` tensors in `dir`: [<stem>.safetensors], or
 * [<stem>.safetensors.index.json, ...its shards]; [] when there are none.
 */
export function safetensorsFiles(dir: string, stem = 'model'): string[] {
  const index = join(dir, `${stem}.safetensors.index.json`);
  if (existsSync(index)) return [index, ...[...new Set(Object.values(readIndex(index)))].sort().map((shard) => join(dir, shard))];
  const single = join(dir, `${stem}.safetensors`);
  return existsSync(single) ? [single] : [];
}

/** The tensors of one safetensors file or sharded checkpoint, read from disk one at a time. */
export class SafetensorsReader implements TensorSource {
  private constructor(
    /** The file or index the tensors come from, for messages. */
    readonly source: string,
    private readonly locations: Map<string, Location>,
  ) {}

  static openFile(file: string): SafetensorsReader {
    return new SafetensorsReader(file, readHeader(file));
  }

  /** Opens `<stem>.safetensors` in `dir`, or the shards named by `<stem>.safetensors.index.json`. */
  static openDir(dir: string, stem = 'model'): SafetensorsReader {
    const index = join(dir, `${stem}.safetensors.index.json`);
    if (!existsSync(index)) {
      const single = join(dir, `${stem}.safetensors`);
      if (!existsSync(single)) throw new UserError(`${dir}: no ${stem}.safetensors or ${stem}.safetensors.index.json found`);
      return SafetensorsReader.openFile(single);
    }
    const weightMap = readIndex(index);
    const locations = new Map<string, Location>();
    const headers = new Map<string, Map<string, Location>>();
    for (const shard of [...new Set(Object.values(weightMap))].sort()) {
      const file = join(dir, shard);
      if (!existsSync(file)) throw new UserError(`${index}: names shard ${shard}, which is missing from ${dir}`);
      headers.set(shard, readHeader(file));
    }
    for (const [name, shard] of Object.entries(weightMap)) {
      const loc = headers.get(shard)!.get(name);
      if (!loc) throw new UserError(`${index}: says tensor ${name} is in ${shard}, but that shard does not hold it`);
      locations.set(name, loc);
    }
    return new SafetensorsReader(index, locations);
  }

  get names(): string[] {
    return [...this.locations.keys()];
  }

  has(name: string): boolean {
    return this.locations.has(name);
  }

  shapeOf(name: string): number[] | undefined {
    return this.locations.get(name)?.shape;
  }

  /** Reads the tensor from disk (a fresh array on every call). */
  get(name: string): NamedArray | undefined {
    const loc = this.locations.get(name);
    return loc && readTensor(loc);
  }

  /**
   * Reads float tensor `name` into `target` (exactly its element count), converting F16/BF16/F64: no array of its own,
   * so one buffer can serve tensor after tensor.
   */
  readFloat32Into(name: string, target: Float32Array): void {
    const loc = this.locations.get(name);
    if (!loc) throw new Error(`${this.source}: no tensor ${name}`);
    if (isInteger(loc.dtype)) throw new UserError(`${loc.file}: tensor ${name} is ${loc.dtype}, not a float tensor`);
    const count = loc.shape.reduce((a, b) => a * b, 1);
    if (target.length !== count) throw new Error(`${name}: ${count} values do not fit an array of ${target.length}`);
    readTensor(loc, target);
  }

  /** Reads every tensor: only for files known to be small. */
  readAll(): Map<string, NamedArray> {
    return new Map(this.names.map((name) => [name, this.get(name)!]));
  }
}

/** Reads every tensor of one .safetensors file. */
export function readSafetensors(file: string): Map<string, NamedArray> {
  return SafetensorsReader.openFile(file).readAll();
}
