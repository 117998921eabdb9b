/** Hugging Face Llama checkpoints: config.json <-> ModelConfig, safetensors weights <-> our model. */
import * as tf from '@tensorflow/tfjs';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type ModelConfig, type RopeScaling, validateConfig } from '../model/config.ts';
import type { LlamaModel } from '../model/llama.ts';
import { hfWeightMaker, transposeInto } from '../ops/hf-layout.ts';
import { UserError } from './errors.ts';
import { type NamedArray, SafetensorsReader, type TensorSource } from './safetensors.ts';
import type { TensorToWrite } from './safetensors-write.ts';

type HfConfig = Record<string, unknown>;

function readJson(file: string): HfConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UserError(`${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  try {
    return JSON.parse(text) as HfConfig;
  } catch (err) {
    throw new UserError(`${file}: not valid JSON (${(err as Error).message})`);
  }
}

function firstId(value: unknown, fallback: number): number {
  if (Array.isArray(value)) return typeof value[0] === 'number' ? value[0] : fallback;
  return typeof value === 'number' ? value : fallback;
}

/** Rope settings live at the top level (older configs) or in rope_parameters (transformers >= 5). */
function ropeSettings(hf: HfConfig, file: string): { theta: number; scaling: RopeScaling } {
  const params = (hf.rope_parameters ?? hf.rope_scaling ?? {}) as Record<string, unknown>;
  const theta = (params.rope_theta ?? hf.rope_theta ?? 10000) as number;
  const type = (params.rope_type ?? params.type ?? 'default') as string;
  if (type !== 'default' && type !== 'linear' && type !== 'llama3') {
    throw new UserError(`${file}: rope type "${type}" is not supported (supported: default, linear, llama3)`);
  }
  return {
    theta,
    scaling: {
      type,
      factor: params.factor as number | undefined,
      lowFreqFactor: params.low_freq_factor as number | undefined,
      highFreqFactor: params.high_freq_factor as number | undefined,
      originalMaxPositions: params.original_max_position_embeddings as number | undefined,
    },
  };
}

/** Parses a Hugging Face Llama config.json. `lmHeadPresent` decides tying when the config does not say. */
export function configFromHf(hf: HfConfig, file: string, lmHeadPresent: boolean): ModelConfig {
  if (hf.model_type !== undefined && hf.model_type !== 'llama') {
    throw new UserError(`${file}: model_type "${hf.model_type}" is not a Llama model; only model_type "llama" can be imported`);
  }
  if (hf.attention_bias === true || hf.mlp_bias === true) throw new UserError(`${file}: attention_bias/mlp_bias are not supported (Llama has no biases)`);
  const act = hf.hidden_act ?? 'silu';
  if (act !== 'silu') throw new UserError(`${file}: hidden_act "${act}" is not supported (Llama uses silu)`);
  const dim = hf.hidden_size as number;
  const heads = hf.num_attention_heads as number;
  const { theta, scaling } = ropeSettings(hf, file);
  const tie = hf.tie_word_embeddings === undefined ? !lmHeadPresent : hf.tie_word_embeddings === true;
  const config: ModelConfig = {
    vocabSize: hf.vocab_size as number,
    dim,
    layers: hf.num_hidden_layers as number,
    heads,
    kvHeads: (hf.num_key_value_heads as number | undefined) ?? heads,
    headDim: (hf.head_dim as number | undefined) ?? dim / heads,
    hiddenDim: hf.intermediate_size as number,
    maxSeq: (hf.max_position_embeddings as number | undefined) ?? 2048,
    ropeTheta: theta,
    ropeScaling: scaling,
    normEps: (hf.rms_norm_eps as number | undefined) ?? 1e-6,
    tieEmbeddings: tie,
    attentionWindow: null,
    bosId: firstId(hf.bos_token_id, 1),
    eosId: firstId(hf.eos_token_id, 2),
  };
  validateConfig(config, file);
  return config;
}

export function configToHf(c: ModelConfig): HfConfig {
  const ropeParameters: Record<string, unknown> = { rope_theta: c.ropeTheta, rope_type: c.ropeScaling.type };
  if (c.ropeScaling.factor !== undefined) ropeParameters.factor = c.ropeScaling.factor;
  if (c.ropeScaling.lowFreqFactor !== undefined) ropeParameters.low_freq_factor = c.ropeScaling.lowFreqFactor;
  if (c.ropeScaling.highFreqFactor !== undefined) ropeParameters.high_freq_factor = c.ropeScaling.highFreqFactor;
  if (c.ropeScaling.originalMaxPositions !== undefined) ropeParameters.original_max_position_embeddings = c.ropeScaling.originalMaxPositions;
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    attention_bias: false,
    mlp_bias: false,
    hidden_act: 'silu',
    vocab_size: c.vocabSize,
    hidden_size: c.dim,
    num_hidden_layers: c.layers,
    num_attention_heads: c.heads,
    num_key_value_heads: c.kvHeads,
    head_dim: c.headDim,
    intermediate_size: c.hiddenDim,
    max_position_embeddings: c.maxSeq,
    rms_norm_eps: c.normEps,
    rope_theta: c.ropeTheta,
    rope_parameters: ropeParameters,
    tie_word_embeddings: c.tieEmbeddings,
    bos_token_id: c.bosId,
    eos_token_id: c.eosId,
    torch_dtype: 'float32',
  };
}

function transpose2d(arr: NamedArray): Float32Array {
  const [rows, cols] = arr.shape;
  return transposeInto(arr.data as Float32Array, rows, cols, new Float32Array(rows * cols));
}

function checkHfShape(name: string, shape: readonly number[] | undefined, hfShape: readonly number[], source: string): void {
  if (!shape) throw new UserError(`${source}: missing tensor ${name}; the weights do not match the config`);
  if (shape.join(',') !== hfShape.join(',')) {
    throw new UserError(`${source}: tensor ${name} has shape [${shape}] but the config needs [${hfShape}]; config and weights do not match`);
  }
}

/** The HF-layout tensor `name` from `tensors`, checked against the shape the model needs. */
function checkedHfTensor(tensors: TensorSource, name: string, hfShape: readonly number[], source: string): NamedArray {
  const arr = tensors.get(name);
  checkHfShape(name, arr?.shape, hfShape, source);
  return arr!;
}

function hfShapeOf(variable: tf.LayerVariable, transposed: boolean): number[] {
  const shape = variable.shape as number[];
  return transposed ? [...shape].reverse() : [...shape];
}

/**
 * Copies HF-layout tensors (by HF name) into the model's variables, one at a time. Every expected tensor must be
 * present with the right shape. A source that reads into a given array (a safetensors reader) fills the array the
 * backend's weight maker hands out, so no tensor is read into an array of its own first.
 */
export function assignHfWeights(model: LlamaModel, tensors: TensorSource, source: string): void {
  const maker = hfWeightMaker();
  for (const { name, variable, transposed } of model.namedWeights()) {
    const shape = variable.shape as number[];
    const hfShape = hfShapeOf(variable, transposed);
    let values: Float32Array;
    if (tensors.readFloat32Into && tensors.shapeOf) {
      checkHfShape(name, tensors.shapeOf(name), hfShape, source);
      values = maker.values(shape.reduce((a, b) => a * b, 1), transposed);
      tensors.readFloat32Into(name, values);
    } else {
      const { data } = checkedHfTensor(tensors, name, hfShape, source);
      values = maker.values(data.length, transposed);
      values.set(data);
    }
    const tensor = maker.tensor(values, shape, transposed);
    variable.write(tensor);
    tensor.dispose();
  }
}

/** The model's variables as HF-layout tensors by HF name, each read from the model only when written. */
export function hfWeightTensors(model: LlamaModel): TensorToWrite[] {
  return model.namedWeights().map(({ name, variable, transposed }) => {
    const shape = variable.shape as number[];
    return {
      name,
      shape: transposed ? [shape[1], shape[0]] : shape,
      dtype: 'F32' as const,
      read: async () => {
        const data = (await variable.read().data()) as Float32Array;
        return transposed ? transpose2d({ shape, data }) : Float32Array.from(data);
      },
    };
  });
}

/**
 * The model's weights straight from HF-layout `tensors`, checked against `model`'s names and shapes, each read only
 * when written. A checkpoint is HF layout too, so an import copies without the two transposes a round trip through
 * the model's variables costs (most of an import's time at 1.1B).
 */
export function hfSourceTensors(model: LlamaModel, tensors: TensorSource, source: string): TensorToWrite[] {
  return model.namedWeights().map(({ name, variable, transposed }) => {
    const shape = hfShapeOf(variable, transposed);
    checkHfShape(name, tensors.shapeOf ? tensors.shapeOf(name) : tensors.get(name)?.shape, shape, source);
    return {
      name,
      shape,
      dtype: 'F32' as const,
      read: async () => {
        const { data } = tensors.get(name)!; // present with this shape: checked above
        return data instanceof Float32Array ? data : Float32Array.from(data);
      },
    };
  });
}

/** Reads the model's variables as HF-layout tensors by HF name. */
export async function hfWeights(model: LlamaModel): Promise<Map<string, NamedArray>> {
  const out = new Map<string, NamedArray>();
  for (const t of hfWeightTensors(model)) out.set(t.name, { shape: t.shape, data: await t.read() });
  return out;
}

/** Reads the config of a Hugging Face Llama directory and opens its weights (read tensor by tensor). */
export function readHfCheckpoint(dir: string): { config: ModelConfig; tensors: SafetensorsReader } {
  const tensors = SafetensorsReader.openDir(dir);
  const config = configFromHf(readJson(join(dir, 'config.json')), join(dir, 'config.json'), tensors.has('lm_head.weight'));
  return { config, tensors };
}
