/**
 * Autoregressive decoding. With the KV cache, the prompt is run once (prefill) and each new token
 * costs one single-position forward pass; without it, every step recomputes the whole sequence
 * (kept for benchmarks and as the reference the cache is tested against).
 */
import * as tf from '@tensorflow/tfjs';
import { disposeCache, type KVCache, type LlamaModel } from '../model/llama.ts';
import { DecodeGraph, decodeGraphSupported } from '../ops/webgpu/decode-graph.ts';
import type { Tokenizer } from '../tokenizer/sentencepiece.ts';
import { makeRng } from '../core/random.ts';
import { argmax, sampleToken, type SamplingOptions } from './sampling.ts';

export interface GenerateOptions extends SamplingOptions {
  maxNewTokens: number;
  stopIds: number[];
  seed: number;
  useCache: boolean;
  /** Called with each new token as soon as it is chosen (for streaming). */
  onToken?: (id: number) => void;
}

export const DEFAULT_GENERATE: GenerateOptions = {
  maxNewTokens: 64,
  temperature: 0.8,
  topK: 40,
  topP: 0.95,
  greedy: false,
  stopIds: [],
  seed: 0,
  useCache: true,
};

async function lastLogits(model: LlamaModel, hidden: tf.Tensor3D): Promise<Float32Array> {
  const logits = tf.tidy(() => {
    const [, t, d] = hidden.shape;
    const last = tf.reshape(tf.slice(hidden, [0, t - 1, 0], [1, 1, d]), [1, d]) as tf.Tensor2D;
    return model.project(last);
  });
  const values = (await logits.data()) as Float32Array;
  logits.dispose();
  return values;
}

/**
 * A KV-cached decoding state for one sequence: tokens appended run through the model once, and
 * the next-token logits after the last of them come back. generate() and the recap agent
 * (recap-agent.ts) both decode through it. Holds the cache's tensors until dispose().
 * On webgpu single tokens go through the decode graph (ops/webgpu/decode-graph.ts), several (the prompt)
 * through the tfjs model, into the same cache.
 */
export class DecodeSession {
  private cache: KVCache;
  private graph: DecodeGraph | null = null;

  constructor(private readonly model: LlamaModel) {
    this.cache = model.emptyCache(1);
  }

  /** Tokens in the cache. */
  get length(): number {
    return this.cache.length;
  }

  /** Runs `ids` (one forward) after the cached ones; returns the logits that follow the last. */
  async append(ids: number[]): Promise<Float32Array> {
    const graph = this.graphFor(ids);
    if (graph) return this.advance(await graph.step(this.cache, ids[0], false));
    const out = tf.tidy(() => {
      const r = this.model.hidden(tf.tensor2d(ids, [1, ids.length], 'int32'), this.cache);
      return { hidden: r.hidden, layers: r.cache!.layers };
    });
    const next: KVCache = { layers: out.layers, length: this.cache.length + ids.length };
    disposeCache(this.cache);
    this.cache = next;
    const logits = await lastLogits(this.model, out.hidden);
    out.hidden.dispose();
    return logits;
  }

  /** Like append, but returns only the most likely next token (greedy decoding reads back one id, not the logits). */
  async appendGreedy(ids: number[]): Promise<number> {
    const graph = this.graphFor(ids);
    return graph ? this.advance(await graph.step(this.cache, ids[0], true)) : argmax(await this.append(ids));
  }

  /** The decode graph for appending `ids`, built on first use; null where the tfjs path runs. */
  private graphFor(ids: number[]): DecodeGraph | null {
    if (ids.length !== 1 || !decodeGraphSupported(this.model)) return null;
    if (this.graph && !this.graph.bindsCurrentWeights()) {
      this.graph.dispose();
      this.graph = null;
    }
    this.graph ??= new DecodeGraph(this.model);
    return this.graph;
  }

  /** One token was written into the cache in place. */
  private advance<T>(result: T): T {
    this.cache.length += 1;
    return result;
  }

  /** Drops the cache and starts over from `ids`. */
  async restart(ids: number[]): Promise<Float32Array> {
    disposeCache(this.cache);
    this.cache = this.model.emptyCache(1);
    return this.append(ids);
  }

  dispose(): void {
    this.graph?.dispose();
    disposeCache(this.cache);
  }
}

async function recomputeLogits(model: LlamaModel, ids: number[]): Promise<Float32Array> {
  const window = ids.slice(-model.config.maxSeq);
  const hidden = tf.tidy(() => model.hidden(tf.tensor2d(window, [1, window.length], 'int32')).hidden);
  const logits = await lastLogits(model, hidden);
  hidden.dispose();
  return logits;
}

/** Generates up to maxNewTokens after `prompt`; returns the new ids only. Leaves no tensors behind. */
export async function generate(model: LlamaModel, prompt: number[], options: Partial<GenerateOptions> = {}): Promise<number[]> {
  const opts = { ...DEFAULT_GENERATE, ...options };
  if (prompt.length === 0) throw new Error('generate needs at least one prompt token');
  const rng = makeRng(opts.seed);
  const maxSeq = model.config.maxSeq;
  const ids = [...prompt];
  const produced: number[] = [];
  const session = opts.useCache ? new DecodeSession(model) : null;
  const greedy = opts.greedy || opts.temperature <= 0;
  // Greedy decoding reads back only the chosen id (the argmax is taken on the GPU by the decode graph).
  const appendAndChoose = async (fresh: number[]): Promise<number> => (greedy ? session!.appendGreedy(fresh) : sampleToken(await session!.append(fresh), opts, rng));
  try {
    // Prefill at most maxSeq - 1 tokens so there is room for at least one new position.
    let next = session ? await appendAndChoose(ids.slice(-(maxSeq - 1))) : sampleToken(await recomputeLogits(model, ids), opts, rng);
    while (produced.length < opts.maxNewTokens) {
      produced.push(next);
      ids.push(next);
      opts.onToken?.(next);
      if (opts.stopIds.includes(next) || produced.length === opts.maxNewTokens) break;
      if (!session) next = sampleToken(await recomputeLogits(model, ids), opts, rng);
      // Window full: re-prefill the most recent half so decoding can go on.
      else if (session.length >= maxSeq) next = sampleToken(await session.restart(ids.slice(-Math.floor(maxSeq / 2))), opts, rng);
      else next = await appendAndChoose([next]);
    }
  } finally {
    session?.dispose();
  }
  return produced;
}

/**
 * Text of `ids` as a continuation of `prompt`. SentencePiece drops a leading space when decoding
 * on its own, so decode prompt + continuation and cut the prompt's text off.
 */
export function continuationText(tokenizer: Tokenizer, prompt: number[], ids: number[]): string {
  return tokenizer.decode([...prompt, ...ids]).slice(tokenizer.decode(prompt).length);
}
