/** Safetensors reading by offset: hand-built sharded HF checkpoints, files past 2 GiB, and bad input as one-line errors. */
import assert from 'node:assert/strict';
import { closeSync, ftruncateSync, mkdtempSync, openSync, readFileSync, rmSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { UserError } from '../src/io/errors.ts';
import { readSafetensors, SafetensorsReader, safetensorsFiles } from '../src/io/safetensors.ts';
import { writeSafetensorsDir, type TensorToWrite } from '../src/io/safetensors-write.ts';

interface RawTensor {
  name: string;
  dtype: string;
  shape: number[];
  bytes: Buffer;
}

/** A safetensors header (8-byte length + JSON) for tensors laid out back to back. */
function header(tensors: Omit<RawTensor, 'bytes'>[], sizes: number[]): Buffer {
  const json: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  tensors.forEach(({ name, dtype, shape }, i) => {
    json[name] = { dtype, shape, data_offsets: [offset, offset + sizes[i]] };
    offset += sizes[i];
  });
  const body = Buffer.from(JSON.stringify(json));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(body.length));
  return Buffer.concat([length, body]);
}

function safetensorsBytes(tensors: RawTensor[]): Buffer {
  return Buffer.concat([header(tensors, tensors.map((t) => t.bytes.length)), ...tensors.map((t) => t.bytes)]);
}

const f32 = (values: number[]): Buffer => Buffer.from(new Float32Array(values).buffer);
const u16 = (values: number[]): Buffer => Buffer.from(new Uint16Array(values).buffer);
const tempDir = (): string => mkdtempSync(join(tmpdir(), 'arl-st-'));

/** Asserts a UserError whose single line names `file` and matches `pattern`. */
function assertBadInput(fn: () => unknown, file: string, pattern: RegExp): void {
  assert.throws(fn, (err: Error) => {
    assert.ok(err instanceof UserError, `${err.name}: ${err.message}`);
    assert.ok(err.message.startsWith(file), err.message);
    assert.ok(!err.message.includes('\n'), err.message);
    assert.match(err.message, pattern);
    return true;
  });
}

test('a hand-built sharded HF checkpoint (index + 2 shards, F32, BF16, F16) reads back exact values', () => {
  const dir = tempDir();
  // F16: 1.5, -2, 65504 (max), 2^-24 (smallest subnormal), -0, inf. BF16: 1, -3.5, 0.10009765625, 2^-133 (subnormal).
  const shard1: RawTensor[] = [
    { name: 'model.embed_tokens.weight', dtype: 'F32', shape: [2, 3], bytes: f32([0.5, -1, 3.25, 1e-30, -7, 42]) },
    { name: 'model.norm.weight', dtype: 'BF16', shape: [4], bytes: u16([0x3f80, 0xc060, 0x3dcd, 0x0001]) },
  ];
  const shard2: RawTensor[] = [{ name: 'lm_head.weight', dtype: 'F16', shape: [3, 2], bytes: u16([0x3e00, 0xc000, 0x7bff, 0x0001, 0x8000, 0x7c00]) }];
  writeFileSync(join(dir, 'model-00001-of-00002.safetensors'), safetensorsBytes(shard1));
  writeFileSync(join(dir, 'model-00002-of-00002.safetensors'), safetensorsBytes(shard2));
  const weightMap = Object.fromEntries([...shard1.map((t) => [t.name, 'model-00001-of-00002.safetensors']), ...shard2.map((t) => [t.name, 'model-00002-of-00002.safetensors'])]);
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 52 }, weight_map: weightMap }));

  const reader = SafetensorsReader.openDir(dir);
  assert.deepEqual(reader.names.sort(), ['lm_head.weight', 'model.embed_tokens.weight', 'model.norm.weight']);
  const embed = reader.get('model.embed_tokens.weight')!;
  assert.deepEqual(embed.shape, [2, 3]);
  assert.deepEqual([...embed.data], [...new Float32Array([0.5, -1, 3.25, 1e-30, -7, 42])]);
  assert.deepEqual([...reader.get('model.norm.weight')!.data], [1, -3.5, 0.10009765625, 2 ** -133]);
  const head = reader.get('lm_head.weight')!;
  assert.deepEqual(head.shape, [3, 2]);
  assert.ok(head.data instanceof Float32Array);
  assert.deepEqual([...head.data], [1.5, -2, 65504, 2 ** -24, -0, Infinity]);
  assert.ok(Object.is(head.data[4], -0));
  assert.equal(reader.get('absent'), undefined);
  assert.deepEqual(
    safetensorsFiles(dir).map((f) => f.slice(dir.length + 1)),
    ['model.safetensors.index.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'],
  );
  rmSync(dir, { recursive: true });
});

test('readFloat32Into fills a view inside a larger buffer (F32, BF16, F16) and leaves the rest as it was', () => {
  const dir = tempDir();
  const tensors: RawTensor[] = [
    { name: 'a', dtype: 'F32', shape: [2, 3], bytes: f32([0.5, -1, 3.25, 1e-30, -7, 42]) },
    { name: 'b', dtype: 'BF16', shape: [4], bytes: u16([0x3f80, 0xc060, 0x3dcd, 0x0001]) },
    { name: 'h', dtype: 'F16', shape: [3, 2], bytes: u16([0x3e00, 0xc000, 0x7bff, 0x0001, 0x8000, 0x7c00]) },
    { name: 'i', dtype: 'I32', shape: [1], bytes: Buffer.from(new Int32Array([3]).buffer) },
  ];
  writeFileSync(join(dir, 'model.safetensors'), safetensorsBytes(tensors));
  const reader = SafetensorsReader.openDir(dir);
  const buffer = new Float32Array(10).fill(9);
  for (const name of ['a', 'b', 'h']) {
    const count = reader.shapeOf(name)!.reduce((x, y) => x * y, 1);
    const view = buffer.subarray(3, 3 + count);
    reader.readFloat32Into(name, view);
    assert.ok(Buffer.from(view.buffer, view.byteOffset, view.byteLength).equals(Buffer.from(reader.get(name)!.data.buffer)), name);
    assert.deepEqual([...buffer.subarray(0, 3), ...buffer.subarray(3 + count)], Array(10 - count).fill(9), name);
    buffer.fill(9);
  }
  assert.throws(() => reader.readFloat32Into('a', new Float32Array(5)), /6 values/);
  assertBadInput(() => reader.readFloat32Into('i', new Float32Array(1)), join(dir, 'model.safetensors'), /I32, not a float tensor/);
  rmSync(dir, { recursive: true });
});

test('converted dtypes are read in chunks: a BF16/F16 tensor larger than the read buffer converts every element', () => {
  const dir = tempDir();
  const count = (1 << 23) + 5; // 16 MiB + 10 bytes of 2-byte values: crosses the 16 MiB scratch buffer
  const bf16 = new Uint16Array(count);
  const half = new Uint16Array(count);
  for (let i = 0; i < count; i++) {
    bf16[i] = 0x3f80 + (i % 128); // 1 + (i % 128) / 128
    half[i] = 0x3c00 + (i % 1024); // 1 + (i % 1024) / 1024
  }
  const file = join(dir, 'big.safetensors');
  writeFileSync(file, safetensorsBytes([
    { name: 'b', dtype: 'BF16', shape: [count], bytes: Buffer.from(bf16.buffer) },
    { name: 'h', dtype: 'F16', shape: [count], bytes: Buffer.from(half.buffer) },
  ]));
  const reader = SafetensorsReader.openFile(file);
  const b = reader.get('b')!.data;
  const h = reader.get('h')!.data;
  for (let i = 0; i < count; i++) {
    if (b[i] !== 1 + (i % 128) / 128 || h[i] !== 1 + (i % 1024) / 1024) assert.fail(`element ${i}: bf16 ${b[i]}, f16 ${h[i]}`);
  }
  rmSync(dir, { recursive: true });
});

test('a tensor past 2 GiB in a sparse file is read at its offset, without reading the whole file', (t) => {
  const dir = tempDir();
  const file = join(dir, 'huge.safetensors');
  const padCount = 2 ** 29 + 2 ** 20; // 2 GiB + 4 MiB of F32 that is never read
  const tail = f32([1.25, -2.5, 3.75, 1e20]);
  const tailBf16 = u16([0x4040, 0xbf80]); // 3, -1
  const head = header(
    [
      { name: 'pad', dtype: 'F32', shape: [padCount] },
      { name: 'tail', dtype: 'F32', shape: [4] },
      { name: 'tail_bf16', dtype: 'BF16', shape: [2] },
    ],
    [padCount * 4, tail.length, tailBf16.length],
  );
  const tailAt = head.length + padCount * 4;
  const fd = openSync(file, 'w');
  try {
    writeSync(fd, head, 0, head.length, 0);
    ftruncateSync(fd, tailAt + tail.length + tailBf16.length);
    writeSync(fd, Buffer.concat([tail, tailBf16]), 0, tail.length + tailBf16.length, tailAt);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    t.skip(`this filesystem refuses a sparse ${tailAt}-byte file (${(err as NodeJS.ErrnoException).code})`);
    return;
  } finally {
    closeSync(fd);
  }
  try {
    const reader = SafetensorsReader.openFile(file);
    assert.ok(reader.has('pad'));
    assert.deepEqual([...reader.get('tail')!.data], [...new Float32Array([1.25, -2.5, 3.75, 1e20])]);
    assert.deepEqual([...reader.get('tail_bf16')!.data], [3, -1]);
  } finally {
    rmSync(dir, { recursive: true });
  }
});

test('writing past the shard size gives HF-named shards and an index; both layouts read back bit-equal', async () => {
  const dir = tempDir();
  const tensors: TensorToWrite[] = [];
  for (let i = 0; i < 5; i++) {
    const data = Float32Array.from({ length: 100 + i }, (_, j) => Math.sin(i * 1000 + j) * 1e3);
    tensors.push({ name: `w${i}`, shape: [100 + i], dtype: 'F32', read: () => data });
  }
  tensors.push({ name: 'ids', shape: [2, 2], dtype: 'I32', read: () => new Int32Array([1, -2, 2 ** 31 - 1, 0]) });
  const files = await writeSafetensorsDir(join(dir, 'sharded'), 'model', tensors, { shardBytes: 850, metadata: { format: 'pt' } });
  assert.deepEqual(files, [
    'model-00001-of-00003.safetensors',
    'model-00002-of-00003.safetensors',
    'model-00003-of-00003.safetensors',
    'model.safetensors.index.json',
  ]);
  const index = JSON.parse(readFileSync(join(dir, 'sharded', 'model.safetensors.index.json'), 'utf8'));
  assert.equal(index.metadata.total_size, (100 + 101 + 102 + 103 + 104 + 4) * 4);
  assert.deepEqual(Object.keys(index.weight_map), tensors.map((t) => t.name));
  assert.equal(index.weight_map.w0, 'model-00001-of-00003.safetensors');
  assert.equal(index.weight_map.ids, 'model-00003-of-00003.safetensors');
  assert.deepEqual(await writeSafetensorsDir(join(dir, 'single'), 'model', tensors), ['model.safetensors']);

  const sharded = SafetensorsReader.openDir(join(dir, 'sharded')).readAll();
  const single = readSafetensors(join(dir, 'single', 'model.safetensors'));
  for (const t of tensors) {
    const expected = Buffer.from((t.read() as Float32Array).buffer);
    for (const got of [sharded.get(t.name)!, single.get(t.name)!]) {
      assert.deepEqual(got.shape, t.shape);
      assert.ok(Buffer.from(got.data.buffer).equals(expected), t.name);
    }
  }
  assert.ok(single.get('ids')!.data instanceof Int32Array);
  rmSync(dir, { recursive: true });
});

test('bad files: one line naming the file and what is wrong', () => {
  const dir = tempDir();
  const good = safetensorsBytes([
    { name: 'a', dtype: 'F32', shape: [4], bytes: f32([1, 2, 3, 4]) },
    { name: 'b', dtype: 'F32', shape: [2], bytes: f32([5, 6]) },
  ]);
  const at = (name: string, bytes: Buffer): string => {
    const file = join(dir, name);
    writeFileSync(file, bytes);
    return file;
  };
  const tiny = at('tiny.safetensors', good.subarray(0, 5));
  assertBadInput(() => SafetensorsReader.openFile(tiny), tiny, /5 bytes is too short .*truncated/);
  const longHeader = Buffer.from(good);
  longHeader.writeBigUInt64LE(BigInt(good.length), 0);
  const pastEnd = at('header.safetensors', longHeader);
  assertBadInput(() => SafetensorsReader.openFile(pastEnd), pastEnd, /header length \d+ runs past the end of the file/);
  // A sparse file the claimed header fits in, though it exceeds the format's limit.
  const hugeLength = Buffer.alloc(8);
  hugeLength.writeBigUInt64LE(200_000_000n);
  const huge = at('huge-header.safetensors', hugeLength);
  truncateSync(huge, 200_000_100);
  assertBadInput(() => SafetensorsReader.openFile(huge), huge, /header length 200000000 exceeds the safetensors limit/);
  const cut = at('cut.safetensors', good.subarray(0, good.length - 4));
  assertBadInput(() => SafetensorsReader.openFile(cut), cut, /tensor b lies at data bytes 16\.\.24, past the 20 data bytes .*truncated/);
  const wrongSize = at('size.safetensors', Buffer.concat([header([{ name: 'a', dtype: 'F32', shape: [3] }], [16]), f32([1, 2, 3, 4])]));
  assertBadInput(() => SafetensorsReader.openFile(wrongSize), wrongSize, /tensor a spans 16 bytes, but F32 \[3\] needs 12/);
  const badDtype = at('dtype.safetensors', Buffer.concat([header([{ name: 'a', dtype: 'F8_E4M3', shape: [4] }], [4]), Buffer.alloc(4)]));
  assertBadInput(() => SafetensorsReader.openFile(badDtype), badDtype, /tensor a has unsupported dtype F8_E4M3/);
  const notJson = Buffer.from(good);
  notJson[8] = 0x7b + 1;
  const corrupt = at('json.safetensors', notJson);
  assertBadInput(() => SafetensorsReader.openFile(corrupt), corrupt, /header is not valid JSON/);
  const missing = join(dir, 'nope.safetensors');
  assertBadInput(() => SafetensorsReader.openFile(missing), missing, /cannot read \(ENOENT\)/);

  // A file cut after its header was read: the read itself reports the truncation.
  const later = at('later.safetensors', good);
  const reader = SafetensorsReader.openFile(later);
  truncateSync(later, good.length - 8);
  assertBadInput(() => reader.get('b'), later, /ends at byte \d+, before the data its header describes; the file is truncated/);
  rmSync(dir, { recursive: true });
});

test('bad sharded checkpoints: missing shard, a tensor its shard lacks, a shard path outside the folder, broken index', () => {
  const dir = tempDir();
  const index = join(dir, 'model.safetensors.index.json');
  writeFileSync(join(dir, 'model-00001-of-00002.safetensors'), safetensorsBytes([{ name: 'a', dtype: 'F32', shape: [1], bytes: f32([1]) }]));
  const writeIndex = (weightMap: Record<string, string>) => writeFileSync(index, JSON.stringify({ metadata: { total_size: 8 }, weight_map: weightMap }));

  writeIndex({ a: 'model-00001-of-00002.safetensors', b: 'model-00002-of-00002.safetensors' });
  assertBadInput(() => SafetensorsReader.openDir(dir), index, /names shard model-00002-of-00002\.safetensors, which is missing from/);
  writeIndex({ a: 'model-00001-of-00002.safetensors', c: 'model-00001-of-00002.safetensors' });
  assertBadInput(() => SafetensorsReader.openDir(dir), index, /says tensor c is in model-00001-of-00002\.safetensors, but that shard does not hold it/);
  writeIndex({ a: '../model-00001-of-00002.safetensors' });
  assertBadInput(() => SafetensorsReader.openDir(dir), index, /tensor a maps to "\.\.\/model-00001-of-00002\.safetensors", which is not a shard file name/);
  writeFileSync(index, '{"metadata": {}}');
  assertBadInput(() => SafetensorsReader.openDir(dir), index, /missing "weight_map"/);
  writeFileSync(index, '{"weight_map": ');
  assertBadInput(() => SafetensorsReader.openDir(dir), index, /not valid JSON/);
  rmSync(index);
  assertBadInput(() => SafetensorsReader.openDir(dir), dir, /no model\.safetensors or model\.safetensors\.index\.json found/);
  rmSync(dir, { recursive: true });
});
