/**
 * An adapter is saved as its own small safetensors file (never merged into the base weights).
 * Its metadata names the adapter kind and settings and the SHA-256 of the base checkpoint's
 * weights (weightsSha256 in io/checkpoint.ts), so an adapter is never applied to a model it was not trained on.
 */
import * as tf from '@tensorflow/tfjs';
import { readFileSync } from 'node:fs';
import { UserError } from '../io/errors.ts';
import { type NamedArray, readSafetensors } from '../io/safetensors.ts';
import { writeSafetensors } from '../io/safetensors-write.ts';
import type { ModelConfig } from '../model/config.ts';
import { ADAPTER_KINDS, type AdapterKind, type ModelAdapter } from './adapter.ts';
import { GatedMemoryAdapter } from './gated-memory.ts';
import { LORA_DEFAULTS, LoraAdapter } from './lora.ts';

export const ADAPTER_FILE = 'adapter.safetensors';
const FORMAT = 'arl-lift-adapter';

export function createAdapter(kind: AdapterKind, config: ModelConfig, settings: Record<string, number> = {}, seed = 0): ModelAdapter {
  if (kind === 'gated-memory') return new GatedMemoryAdapter(config, seed);
  return new LoraAdapter(config, { rank: settings.rank ?? LORA_DEFAULTS.rank, alpha: settings.alpha ?? LORA_DEFAULTS.alpha }, seed);
}

/** What an adapter file records besides its weights. */
export interface AdapterInfo {
  kind: AdapterKind;
  settings: Record<string, number>;
  baseSha256: string;
  /** Free-form provenance (input hash, training options), kept as strings. */
  extra: Record<string, string>;
}

export async function saveAdapter(file: string, adapter: ModelAdapter, baseSha256: string, extra: Record<string, string> = {}): Promise<void> {
  const tensors = new Map<string, NamedArray>();
  for (const { name, variable } of adapter.namedWeights()) tensors.set(name, { shape: variable.shape, data: (await variable.data()) as Float32Array });
  await writeSafetensors(file, tensors, { ...extra, format: FORMAT, kind: adapter.kind, settings: JSON.stringify(adapter.settings), base_sha256: baseSha256 });
}

/** The safetensors header's __metadata__; {} for a file that is not safetensors, so it is reported as no adapter. */
function readMetadata(file: string): Record<string, string> {
  const bytes = (() => {
    try {
      return readFileSync(file);
    } catch (err) {
      throw new UserError(`${file}: cannot read adapter (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
  })();
  try {
    const headerLen = Number(bytes.readBigUInt64LE(0));
    return (JSON.parse(bytes.subarray(8, 8 + headerLen).toString('utf8')).__metadata__ ?? {}) as Record<string, string>;
  } catch {
    return {};
  }
}

/** Reads an adapter file's metadata; anything that is not one of our adapter files is a UserError. */
export function readAdapterInfo(file: string): AdapterInfo {
  const meta = readMetadata(file);
  if (meta.format !== FORMAT) throw new UserError(`${file}: not a LIFT adapter file (no "${FORMAT}" metadata); pass a file written by \`arl lift\``);
  const kind = meta.kind as AdapterKind;
  if (!ADAPTER_KINDS.includes(kind)) throw new UserError(`${file}: unknown adapter kind "${meta.kind}"; expected ${ADAPTER_KINDS.join(' or ')}`);
  const { format: _format, kind: _kind, settings, base_sha256, ...extra } = meta;
  return { kind, settings: JSON.parse(settings ?? '{}') as Record<string, number>, baseSha256: base_sha256 ?? '', extra };
}

/**
 * Loads an adapter for the model of `checkpointDir` (whose hash is `baseSha256`). An adapter
 * trained on another base is refused with one line.
 */
export function loadAdapter(file: string, config: ModelConfig, baseSha256: string, checkpointDir: string): { adapter: ModelAdapter; info: AdapterInfo } {
  const info = readAdapterInfo(file);
  if (info.baseSha256 !== baseSha256) {
    throw new UserError(`${file}: adapter was trained on another base model (base sha256 ${info.baseSha256.slice(0, 12)}..., ${checkpointDir} is ${baseSha256.slice(0, 12)}...); train one for this checkpoint with \`arl lift\``);
  }
  const tensors = readSafetensors(file);
  const adapter = createAdapter(info.kind, config, info.settings);
  for (const { name, variable } of adapter.namedWeights()) {
    const arr = tensors.get(name);
    if (!arr || arr.shape.join(',') !== variable.shape.join(',')) {
      adapter.dispose();
      throw new UserError(`${file}: tensor ${name} is missing or has the wrong shape for this model; the file is corrupt`);
    }
    tf.tidy(() => variable.assign(tf.tensor(arr.data, arr.shape, 'float32')));
  }
  return { adapter, info };
}
