/**
 * Autoregressive decoding. With the KV cache, the prompt is run once (prefill) and each new token
 * costs one single-position forward pass; without it, every step recomputes the whole sequence
 * (kept for benchmarks and as the reference the cache is tested against).
 */
import * as tf from '@tensorflow/tfjs';
import type { LlamaModel } from '../model/llama.ts';
import type { Tokenizer } from '../tokenizer/sentencepiece.ts';
import { makeRng } from '../core/random.ts';
import { DecodeSession, lastLogits } from './decode-session.ts';
import { sampleToken, type SamplingOptions } from './sampling.ts';

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
