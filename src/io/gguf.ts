/**
 * GGUF export (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md), version 3, for llama.cpp:
 *   magic "GGUF", version, tensor count, metadata count, metadata key/values, tensor infos,
 *   then the tensor data, each tensor aligned to 32 bytes. Everything little-endian.
 * Metadata: the "llama" architecture's hyperparameters and the SentencePiece vocabulary
 * (tokenizer.ggml.model "llama": pieces, scores and types, our <recap> markers user-defined).
 * Tensors are F32 and named as llama.cpp names them. Like llama.cpp's convert_hf_to_gguf.py, Q and K
 * rows are permuted within each head: HF rotates pairs (i, i + headDim/2), llama.cpp's "llama" rope
 * rotates adjacent pairs (2i, 2i+1), so row p*headDim/2 + j of a head moves to row 2j + p.
 */
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import type { ModelConfig } from '../model/config.ts';
import { ropeInverseFrequencies } from '../model/llama.ts';
import type { Tokenizer } from '../tokenizer/sentencepiece.ts';
import { UserError } from './errors.ts';
import type { NamedArray } from './safetensors.ts';

const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian uint32
const GGUF_VERSION = 3;
const ALIGNMENT = 32;
const GGML_TYPE_F32 = 0;
const FILE_TYPE_ALL_F32 = 0;
/** SentencePiece piece types, which GGUF's tokenizer.ggml.token_type shares. */
const TOKEN_TYPE_UNUSED = 5;

enum ValueType {
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
}

type Value =
  | { type: ValueType.UINT32 | ValueType.INT32 | ValueType.FLOAT32; value: number }
  | { type: ValueType.BOOL; value: boolean }
  | { type: ValueType.STRING; value: string }
  | { type: ValueType.ARRAY; items: ValueType.STRING; value: string[] }
  | { type: ValueType.ARRAY; items: ValueType.INT32 | ValueType.FLOAT32; value: number[] };

const u32 = (value: number): Value => ({ type: ValueType.UINT32, value });
const f32 = (value: number): Value => ({ type: ValueType.FLOAT32, value });
const str = (value: string): Value => ({ type: ValueType.STRING, value });

/** Appends little-endian values to a growing list of buffers. */
class ByteWriter {
  readonly chunks: Buffer[] = [];
  length = 0;

  private push(b: Buffer): void {
    this.chunks.push(b);
    this.length += b.length;
  }

  u32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    this.push(b);
  }

  i32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v);
    this.push(b);
  }

  u64(v: number): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.push(b);
  }

  f32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeFloatLE(v);
    this.push(b);
  }

  string(s: string): void {
    const bytes = Buffer.from(s, 'utf8');
    this.u64(bytes.length);
    this.push(bytes);
  }

  padTo(alignment: number): void {
    const pad = (alignment - (this.length % alignment)) % alignment;
    if (pad > 0) this.push(Buffer.alloc(pad));
  }

  scalar(type: ValueType, v: number | string | boolean): void {
    if (type === ValueType.UINT32) this.u32(v as number);
    else if (type === ValueType.INT32) this.i32(v as number);
    else if (type === ValueType.FLOAT32) this.f32(v as number);
    else if (type === ValueType.BOOL) this.push(Buffer.from([v ? 1 : 0]));
    else this.string(v as string);
  }

  value(v: Value): void {
    this.u32(v.type);
    if (v.type !== ValueType.ARRAY) return this.scalar(v.type, v.value);
    this.u32(v.items);
    this.u64(v.value.length);
    for (const item of v.value) this.scalar(v.items, item);
  }
}

/** Why llama.cpp's "llama" architecture cannot hold this model, or null when it can. */
export function ggufUnsupportedReason(config: ModelConfig, tokenizer: Tokenizer | null): string | null {
  if (config.attentionWindow !== null) return `the model uses a sliding attention window of ${config.attentionWindow} tokens, which llama.cpp's llama architecture does not have`;
  if (tokenizer === null) return 'the checkpoint has no tokenizer.model, and GGUF needs the vocabulary; pass --tokenizer';
  if (tokenizer.vocabSize > config.vocabSize) return `the tokenizer has ${tokenizer.vocabSize} tokens but the model only ${config.vocabSize}`;
  return null;
}

/** Tokens, scores and types for the model's vocabulary: the tokenizer's pieces, padded with unused tokens up to the model's vocabulary size. */
function vocabularyMetadata(config: ModelConfig, tokenizer: Tokenizer): Record<string, Value> {
  const pieces = [...tokenizer.vocabulary];
  for (let id = pieces.length; id < config.vocabSize; id++) pieces.push({ piece: `[PAD${id}]`, type: TOKEN_TYPE_UNUSED, score: -1000 });
  return {
    'tokenizer.ggml.model': str('llama'),
    'tokenizer.ggml.pre': str('default'),
    'tokenizer.ggml.tokens': { type: ValueType.ARRAY, items: ValueType.STRING, value: pieces.map((p) => p.piece) },
    'tokenizer.ggml.scores': { type: ValueType.ARRAY, items: ValueType.FLOAT32, value: pieces.map((p) => p.score) },
    'tokenizer.ggml.token_type': { type: ValueType.ARRAY, items: ValueType.INT32, value: pieces.map((p) => p.type) },
    'tokenizer.ggml.bos_token_id': u32(tokenizer.bosId),
    'tokenizer.ggml.eos_token_id': u32(tokenizer.eosId),
    ...(tokenizer.unkId >= 0 ? { 'tokenizer.ggml.unknown_token_id': u32(tokenizer.unkId) } : {}),
    'tokenizer.ggml.add_bos_token': { type: ValueType.BOOL, value: true },
    'tokenizer.ggml.add_eos_token': { type: ValueType.BOOL, value: false },
  };
}

function modelMetadata(config: ModelConfig, name: string): Record<string, Value> {
  const metadata: Record<string, Value> = {
    'general.architecture': str('llama'),
    'general.name': str(name),
    'general.file_type': u32(FILE_TYPE_ALL_F32),
    'llama.vocab_size': u32(config.vocabSize),
    'llama.context_length': u32(config.maxSeq),
    'llama.embedding_length': u32(config.dim),
    'llama.block_count': u32(config.layers),
    'llama.feed_forward_length': u32(config.hiddenDim),
    'llama.attention.head_count': u32(config.heads),
    'llama.attention.head_count_kv': u32(config.kvHeads),
    'llama.attention.key_length': u32(config.headDim),
    'llama.attention.value_length': u32(config.headDim),
    'llama.rope.dimension_count': u32(config.headDim),
    'llama.rope.freq_base': f32(config.ropeTheta),
    'llama.attention.layer_norm_rms_epsilon': f32(config.normEps),
  };
  // llama3 rope goes in as a per-frequency divisor tensor (rope_freqs), as convert_hf_to_gguf.py does.
  if (config.ropeScaling.type === 'linear') {
    metadata['llama.rope.scaling.type'] = str('linear');
    metadata['llama.rope.scaling.factor'] = f32(config.ropeScaling.factor ?? 1);
  }
  return metadata;
}

/** Rows of a [heads*headDim, in] matrix reordered within each head from HF's half-split rope pairs to adjacent pairs. */
export function permuteForLlamaCppRope(arr: NamedArray, heads: number): NamedArray {
  const [rows, cols] = arr.shape;
  const headDim = rows / heads;
  const half = headDim / 2;
  const out = new Float32Array(rows * cols);
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < half; j++) {
      for (let p = 0; p < 2; p++) {
        const from = (h * headDim + p * half + j) * cols;
        out.set(arr.data.subarray(from, from + cols), (h * headDim + 2 * j + p) * cols);
      }
    }
  }
  return { shape: arr.shape, data: out };
}

/** HF tensor names to llama.cpp's. */
function ggufName(hfName: string): string {
  const fixed: Record<string, string> = { 'model.embed_tokens.weight': 'token_embd.weight', 'model.norm.weight': 'output_norm.weight', 'lm_head.weight': 'output.weight' };
  if (fixed[hfName]) return fixed[hfName];
  const m = /^model\.layers\.(\d+)\.(.+)\.weight$/.exec(hfName);
  const inBlock: Record<string, string> = {
    input_layernorm: 'attn_norm',
    'self_attn.q_proj': 'attn_q',
    'self_attn.k_proj': 'attn_k',
    'self_attn.v_proj': 'attn_v',
    'self_attn.o_proj': 'attn_output',
    post_attention_layernorm: 'ffn_norm',
    'mlp.gate_proj': 'ffn_gate',
    'mlp.up_proj': 'ffn_up',
    'mlp.down_proj': 'ffn_down',
  };
  if (!m || !inBlock[m[2]]) throw new Error(`no GGUF name for tensor ${hfName}`);
  return `blk.${m[1]}.${inBlock[m[2]]}.weight`;
}

/** The GGUF tensors of a model given its HF-layout tensors (hfWeights), in file order. */
export function ggufTensors(config: ModelConfig, hf: Map<string, NamedArray>): Map<string, NamedArray> {
  const out = new Map<string, NamedArray>();
  for (const [name, arr] of hf) {
    let tensor = arr;
    if (name.endsWith('self_attn.q_proj.weight')) tensor = permuteForLlamaCppRope(arr, config.heads);
    if (name.endsWith('self_attn.k_proj.weight')) tensor = permuteForLlamaCppRope(arr, config.kvHeads);
    out.set(ggufName(name), tensor);
  }
  if (config.ropeScaling.type === 'llama3') {
    const unscaled = ropeInverseFrequencies({ ...config, ropeScaling: { type: 'default' } });
    const scaled = ropeInverseFrequencies(config);
    out.set('rope_freqs.weight', { shape: [unscaled.length], data: unscaled.map((f, i) => f / scaled[i]) });
  }
  return out;
}

/**
 * Writes `file` (via a temp file and rename) as GGUF v3 holding the model and its vocabulary.
 * Refuses, before writing anything, a model GGUF's llama architecture cannot hold.
 */
export function writeGguf(file: string, config: ModelConfig, hf: Map<string, NamedArray>, tokenizer: Tokenizer | null, name: string): { tensors: number; bytes: number } {
  const unsupported = ggufUnsupportedReason(config, tokenizer);
  if (unsupported) throw new UserError(`cannot export to GGUF: ${unsupported}`);
  const metadata = { ...modelMetadata(config, name), ...vocabularyMetadata(config, tokenizer!) };
  const tensors = ggufTensors(config, hf);

  const header = new ByteWriter();
  header.u32(GGUF_MAGIC);
  header.u32(GGUF_VERSION);
  header.u64(tensors.size);
  header.u64(Object.keys(metadata).length);
  for (const [key, value] of Object.entries(metadata)) {
    header.string(key);
    header.value(value);
  }
  let offset = 0;
  for (const [tensorName, { shape, data }] of tensors) {
    header.string(tensorName);
    header.u32(shape.length);
    for (const dim of [...shape].reverse()) header.u64(dim); // GGUF lists dimensions fastest-varying first
    header.u32(GGML_TYPE_F32);
    header.u64(offset);
    offset += Math.ceil((data.length * 4) / ALIGNMENT) * ALIGNMENT;
  }
  header.padTo(ALIGNMENT);

  const tmp = `${file}.${process.pid}.tmp`;
  const fd = openSync(tmp, 'w');
  let bytes = 0;
  const write = (b: Uint8Array): void => {
    for (let done = 0; done < b.length; ) done += writeSync(fd, b, done, b.length - done);
    bytes += b.length;
  };
  try {
    for (const chunk of header.chunks) write(chunk);
    for (const { data } of tensors.values()) {
      const values = Float32Array.from(data); // typed arrays are little-endian on every Node platform
      write(new Uint8Array(values.buffer));
      const pad = (ALIGNMENT - (values.byteLength % ALIGNMENT)) % ALIGNMENT;
      if (pad > 0) write(new Uint8Array(pad));
    }
    fsyncSync(fd);
    closeSync(fd);
    renameSync(tmp, file);
  } catch (err) {
    try {
      closeSync(fd);
    } catch {
      // already closed
    }
    rmSync(tmp, { force: true });
    throw err;
  }
  return { tensors: tensors.size, bytes };
}
