/**
 * Checkpoints. A checkpoint is a directory a Hugging Face Llama loader also understands:
 *   config.json         HF Llama config plus an "arl" block (our extra fields)
 *   model.safetensors   weights by HF name, HF layout; above a shard size (2 GiB by default)
 *                       model-0000i-of-0000N.safetensors + model.safetensors.index.json instead
 *   generation_config.json
 *   tokenizer.model     the SentencePiece model the ids belong to (when known), with tokenizer_config.json
 *   optimizer.safetensors (sharded the same way), state.json   training state (training checkpoints only)
 * A training run directory holds ckpt-<step>/ directories and a `latest` file naming the newest.
 * Each checkpoint is written to a temp directory and renamed into place, and `latest` is
 * replaced atomically afterwards, so an interrupted save never leaves a half-written checkpoint.
 */
import * as tf from '@tensorflow/tfjs';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { ModelConfig } from '../model/config.ts';
import { LlamaModel } from '../model/llama.ts';
import { RECAP_CLOSE, RECAP_OPEN } from '../tokenizer/sentencepiece.ts';
import type { AdamW } from '../train/optimizer.ts';
import { replaceDirAtomic, writeFileAtomic } from './atomic.ts';
import { UserError } from './errors.ts';
import { assignHfWeights, configFromHf, configToHf, hfWeightTensors } from './hf.ts';
import { SafetensorsReader, safetensorsFiles, type TensorSource } from './safetensors.ts';
import { DEFAULT_SHARD_BYTES, type TensorToWrite, writeSafetensorsDir } from './safetensors-write.ts';
import { sha256Files } from './sha256.ts';

export const CHECKPOINT_FORMAT = 1;
const KEEP_CHECKPOINTS = 2;

/** Everything besides tensors needed to continue a training run exactly. */
export interface TrainState {
  step: number;
  tokensSeen: number;
  optimizerStep: number;
  /** Data loader position after the last completed step. */
  dataPosition: unknown;
  /** The training options the run was started with. */
  options: Record<string, unknown>;
  bestValLoss: number | null;
  /** Mixed precision: the dynamic loss scale reached. */
  lossScale?: number;
}

export interface LoadedCheckpoint {
  dir: string;
  config: ModelConfig;
  /** Read from disk tensor by tensor, so a large model is never held twice. */
  weights: SafetensorsReader;
  tokenizerPath: string | null;
  state: TrainState | null;
  optimizer: SafetensorsReader | null;
}

/** Accepts a checkpoint directory or a run directory (follows its `latest`). */
export function resolveCheckpointDir(path: string): string {
  const dir = resolve(path);
  if (!existsSync(dir)) throw new UserError(`${path}: no such checkpoint; train one with \`arl train\` or import one with \`arl import --hf DIR --out ${path}\``);
  if (existsSync(join(dir, 'config.json'))) return dir;
  const latest = join(dir, 'latest');
  if (existsSync(latest)) {
    const target = join(dir, readFileSync(latest, 'utf8').trim());
    if (!existsSync(join(target, 'config.json'))) throw new UserError(`${latest}: points to ${target}, which is not a checkpoint; delete ${latest} or pass a ckpt-* directory`);
    return target;
  }
  throw new UserError(`${path}: not a checkpoint (no config.json, and no \`latest\` file of a training run)`);
}

function readJsonFile<T>(file: string): T {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as T;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UserError(`${file}: ${code ? `cannot read (${code})` : `not valid JSON (${(err as Error).message}); the checkpoint is corrupt`}`);
  }
}

export function readCheckpointConfig(dir: string): ModelConfig {
  const file = join(dir, 'config.json');
  const hf = readJsonFile<Record<string, unknown>>(file);
  const config = configFromHf(hf, file, true);
  const extra = (hf.arl ?? {}) as { attentionWindow?: number | null };
  return { ...config, attentionWindow: extra.attentionWindow ?? null };
}

export function loadCheckpoint(path: string): LoadedCheckpoint {
  const dir = resolveCheckpointDir(path);
  const config = readCheckpointConfig(dir);
  const weights = SafetensorsReader.openDir(dir, 'model');
  const tokenizer = join(dir, 'tokenizer.model');
  const stateFile = join(dir, 'state.json');
  return {
    dir,
    config,
    weights,
    tokenizerPath: existsSync(tokenizer) ? tokenizer : null,
    state: existsSync(stateFile) ? readJsonFile<TrainState>(stateFile) : null,
    optimizer: safetensorsFiles(dir, 'optimizer').length > 0 ? SafetensorsReader.openDir(dir, 'optimizer') : null,
  };
}

/** Builds the model of a loaded checkpoint with its weights. */
export function modelFromCheckpoint(ckpt: LoadedCheckpoint): LlamaModel {
  const model = new LlamaModel(ckpt.config, null);
  try {
    assignHfWeights(model, ckpt.weights, ckpt.weights.source);
  } catch (err) {
    model.dispose();
    throw err;
  }
  return model;
}

/** Convenience: load a checkpoint path straight into a model. */
export function loadModel(path: string): { model: LlamaModel; ckpt: LoadedCheckpoint } {
  const ckpt = loadCheckpoint(path);
  return { model: modelFromCheckpoint(ckpt), ckpt };
}

/** Tells Hugging Face's LlamaTokenizer about our special tokens. */
const TOKENIZER_CONFIG = {
  tokenizer_class: 'LlamaTokenizer',
  add_bos_token: true,
  add_eos_token: false,
  additional_special_tokens: [RECAP_OPEN, RECAP_CLOSE],
  bos_token: '<s>',
  eos_token: '</s>',
  unk_token: '<unk>',
};

function configJson(config: ModelConfig): string {
  return JSON.stringify({ ...configToHf(config), arl: { format: CHECKPOINT_FORMAT, attentionWindow: config.attentionWindow } }, null, 2);
}

/** AdamW moments by weight name, each read from the optimizer only when written. */
function optimizerTensors(model: LlamaModel, optimizer: AdamW): TensorToWrite[] {
  return model.namedWeights().flatMap(({ name, variable }, i) =>
    (['m', 'v'] as const).map((prefix) => ({
      name: `${prefix}.${name}`,
      shape: variable.shape as number[],
      dtype: 'F32' as const,
      read: async () => (await optimizer[prefix][i].data()) as Float32Array,
    })),
  );
}

/** Restores AdamW moments saved by saveTrainingCheckpoint. */
export function restoreOptimizer(model: LlamaModel, optimizer: AdamW, tensors: TensorSource, step: number, source: string): void {
  model.namedWeights().forEach(({ name, variable }, i) => {
    for (const [prefix, target] of [['m', optimizer.m[i]], ['v', optimizer.v[i]]] as const) {
      const arr = tensors.get(`${prefix}.${name}`);
      if (!arr || arr.shape.join(',') !== variable.shape.join(',')) throw new UserError(`${source}: optimizer state for ${name} is missing or has the wrong shape; the checkpoint is corrupt`);
      tf.tidy(() => target.assign(tf.tensor(arr.data, arr.shape, 'float32')));
    }
  });
  optimizer.step = step;
}

/**
 * Writes a plain checkpoint (weights, config, tokenizer) to `dir`, replacing it atomically.
 * Weights and optimizer state larger than `shardBytes` are split into shards.
 */
export async function saveCheckpoint(
  dir: string,
  model: LlamaModel,
  tokenizerPath: string | null,
  extra?: { optimizer: AdamW; state: TrainState },
  shardBytes = DEFAULT_SHARD_BYTES,
): Promise<void> {
  await writeCheckpoint(dir, model, hfWeightTensors(model), tokenizerPath, extra, shardBytes);
}

/** Writes a checkpoint of `model`'s config with `weights` (HF layout) as its weights; saveCheckpoint's weights are the model's own. */
export async function writeCheckpoint(
  dir: string,
  model: LlamaModel,
  weights: TensorToWrite[],
  tokenizerPath: string | null,
  extra?: { optimizer: AdamW; state: TrainState },
  shardBytes = DEFAULT_SHARD_BYTES,
): Promise<void> {
  const target = resolve(dir);
  // The directory is replaced whole: never let that delete a folder that is not a checkpoint.
  if (existsSync(target) && readdirSync(target).length > 0 && !existsSync(join(target, 'config.json'))) {
    throw new UserError(`${dir}: exists and is not a checkpoint (no config.json); choose another output directory`);
  }
  const tmp = `${target}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  writeFileAtomic(join(tmp, 'config.json'), configJson(model.config));
  await writeSafetensorsDir(tmp, 'model', weights, { shardBytes, metadata: { format: 'pt' } });
  writeFileAtomic(join(tmp, 'generation_config.json'), JSON.stringify({ bos_token_id: model.config.bosId, eos_token_id: model.config.eosId }, null, 2));
  if (tokenizerPath) {
    copyFileSync(tokenizerPath, join(tmp, 'tokenizer.model'));
    writeFileAtomic(join(tmp, 'tokenizer_config.json'), JSON.stringify(TOKENIZER_CONFIG, null, 2));
  }
  if (extra) {
    await writeSafetensorsDir(tmp, 'optimizer', optimizerTensors(model, extra.optimizer), { shardBytes });
    writeFileAtomic(join(tmp, 'state.json'), JSON.stringify(extra.state, null, 2));
  }
  replaceDirAtomic(tmp, target);
}

/** Saves run/ckpt-<step>, points run/latest at it, and prunes older checkpoints. Returns the checkpoint dir. */
export async function saveTrainingCheckpoint(runDir: string, model: LlamaModel, tokenizerPath: string | null, optimizer: AdamW, state: TrainState): Promise<string> {
  const name = `ckpt-${String(state.step).padStart(6, '0')}`;
  const dir = join(runDir, name);
  await saveCheckpoint(dir, model, tokenizerPath, { optimizer, state });
  writeFileAtomic(join(runDir, 'latest'), `${name}\n`);
  const old = readdirSync(runDir)
    .filter((f) => /^ckpt-\d+$/.test(f) && statSync(join(runDir, f)).isDirectory())
    .sort()
    .slice(0, -KEEP_CHECKPOINTS);
  for (const f of old) rmSync(join(runDir, f), { recursive: true, force: true });
  return dir;
}

/** True when `runDir` already holds a training checkpoint to resume from. */
export function hasTrainingCheckpoint(runDir: string): boolean {
  return existsSync(join(runDir, 'latest'));
}

/**
 * SHA-256 identifying a checkpoint's weights: that of model.safetensors (so single-file hashes stay
 * what they were), or of the index followed by its shards in name order.
 */
export function weightsSha256(dir: string): string {
  const files = safetensorsFiles(dir, 'model');
  if (files.length === 0) throw new UserError(`${dir}: no model.safetensors (nor model.safetensors.index.json) to identify the weights by`);
  return sha256Files(files);
}
