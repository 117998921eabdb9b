/** Model configuration and named presets (litgpt-style: a preset is just a partial config). */
import { UserError } from '../io/errors.ts';

export interface RopeScaling {
  /** 'default' (none), 'linear' (positions divided by factor) or 'llama3' (frequency-dependent). */
  type: 'default' | 'linear' | 'llama3';
  factor?: number;
  lowFreqFactor?: number;
  highFreqFactor?: number;
  originalMaxPositions?: number;
}

export interface ModelConfig {
  vocabSize: number;
  dim: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  /** Width of the SwiGLU hidden layer (HF intermediate_size). */
  hiddenDim: number;
  /** Longest sequence the rotary tables cover (HF max_position_embeddings). */
  maxSeq: number;
  ropeTheta: number;
  ropeScaling: RopeScaling;
  normEps: number;
  tieEmbeddings: boolean;
  /** Sliding attention window in tokens (each token sees itself and window-1 before it); null = full causal. */
  attentionWindow: number | null;
  bosId: number;
  eosId: number;
}

const DEFAULTS: Omit<ModelConfig, 'vocabSize' | 'dim' | 'layers' | 'heads' | 'kvHeads' | 'headDim' | 'hiddenDim' | 'maxSeq'> = {
  ropeTheta: 10000,
  ropeScaling: { type: 'default' },
  normEps: 1e-5,
  tieEmbeddings: false,
  attentionWindow: null,
  bosId: 1,
  eosId: 2,
};

export type ConfigOverrides = Partial<ModelConfig>;

export const PRESETS: Record<string, ConfigOverrides> = {
  /** CPU demo size: trains in minutes on 2 cores. */
  tiny: { dim: 128, layers: 4, heads: 4, kvHeads: 2, hiddenDim: 352, maxSeq: 256 },
  small: { dim: 256, layers: 6, heads: 8, kvHeads: 4, hiddenDim: 688, maxSeq: 512 },
  base: { dim: 512, layers: 8, heads: 8, kvHeads: 4, hiddenDim: 1376, maxSeq: 1024 },
  medium: { dim: 768, layers: 12, heads: 12, kvHeads: 4, hiddenDim: 2048, maxSeq: 2048 },
};

/** SwiGLU width as in Llama: 2/3 of 4*dim, rounded up to a multiple of 8. */
export function defaultHiddenDim(dim: number): number {
  return Math.ceil((8 * dim) / 3 / 8) * 8;
}

/** Builds a full config from a preset name plus explicit overrides, and validates it. */
export function makeConfig(preset: string | null, overrides: ConfigOverrides): ModelConfig {
  let base: ConfigOverrides = {};
  if (preset !== null) {
    const found = PRESETS[preset];
    if (!found) throw new UserError(`unknown preset "${preset}"; choose one of ${Object.keys(PRESETS).join(', ')}`);
    base = found;
  }
  const merged = { ...DEFAULTS, ...base, ...stripUndefined(overrides) } as Partial<ModelConfig>;
  const dim = merged.dim;
  const heads = merged.heads;
  if (dim === undefined || heads === undefined || merged.layers === undefined || merged.vocabSize === undefined) {
    throw new UserError('model config needs vocabSize, dim, layers and heads (or a --preset)');
  }
  const config: ModelConfig = {
    ...(merged as ModelConfig),
    kvHeads: merged.kvHeads ?? heads,
    headDim: merged.headDim ?? dim / heads,
    hiddenDim: merged.hiddenDim ?? defaultHiddenDim(dim),
    maxSeq: merged.maxSeq ?? 256,
  };
  validateConfig(config);
  return config;
}

function stripUndefined<T extends object>(obj: T): Partial<T> {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined)) as Partial<T>;
}

export function validateConfig(c: ModelConfig, source = 'model config'): void {
  const positive = ['vocabSize', 'dim', 'layers', 'heads', 'kvHeads', 'headDim', 'hiddenDim', 'maxSeq'] as const;
  for (const key of positive) {
    if (!Number.isInteger(c[key]) || c[key] <= 0) throw new UserError(`${source}: ${key} must be a positive integer (got ${c[key]})`);
  }
  if (c.heads % c.kvHeads !== 0) throw new UserError(`${source}: heads (${c.heads}) must be a multiple of kvHeads (${c.kvHeads})`);
  if (c.headDim % 2 !== 0) throw new UserError(`${source}: headDim (${c.headDim}) must be even for rotary embeddings`);
  if (!(c.ropeTheta > 0)) throw new UserError(`${source}: ropeTheta must be positive`);
  if (c.attentionWindow !== null && !(Number.isInteger(c.attentionWindow) && c.attentionWindow > 0)) {
    throw new UserError(`${source}: attentionWindow must be a positive integer or null`);
  }
}

export function parameterCount(c: ModelConfig): number {
  const attn = c.dim * c.headDim * (2 * c.heads + 2 * c.kvHeads);
  const mlp = 3 * c.dim * c.hiddenDim;
  const perLayer = attn + mlp + 2 * c.dim;
  return c.vocabSize * c.dim * (c.tieEmbeddings ? 1 : 2) + c.layers * perLayer + c.dim;
}
