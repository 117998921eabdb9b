/**
 * LIFT step 2, contextualized training: each segment is trained on after a head + "..." + tail
 * view of the whole input and the recite prompt, with the loss on the segment only, so the
 * adapter learns the segment in the context of the input rather than as free text.
 * Head + tail truncation is also how answering prompts are fitted into the window.
 */
import type { Tokenizer } from '../tokenizer/sentencepiece.ts';

export const RECITE_PROMPT = 'Given above context, please recite following segment of the context:';

/** A training sequence; the loss covers ids[lossFrom..] (each predicted from the token before). */
export interface LiftExample {
  ids: number[];
  lossFrom: number;
}

/**
 * `tokens` cut to at most `budget` tokens as head + "..." + tail. `headShare` in [0, 1] places the
 * cut (answering uses 0.5, as the paper's first 3900 + last 3900; training draws it at random).
 */
export function headTail(tokens: number[], budget: number, ellipsis: number[], headShare = 0.5): number[] {
  if (tokens.length <= budget) return tokens;
  const keep = Math.max(0, budget - ellipsis.length);
  const head = Math.round(keep * headShare);
  return [...tokens.slice(0, head), ...ellipsis, ...tokens.slice(tokens.length - (keep - head))];
}

/** Token pieces the examples are built from, encoded once per input. */
export interface PromptPieces {
  bos: number;
  eos: number;
  ellipsis: number[];
  recite: number[];
}

export function promptPieces(tokenizer: Tokenizer): PromptPieces {
  return { bos: tokenizer.bosId, eos: tokenizer.eosId, ellipsis: tokenizer.encode(' ... '), recite: tokenizer.encode(`\n${RECITE_PROMPT}\n`) };
}

/** [bos] head + "..." + tail, recite prompt, segment; the context is cut at a random point (rng). */
export function contextualizedExample(input: number[], segment: number[], context: number, pieces: PromptPieces, rng: () => number): LiftExample {
  const prefix = [pieces.bos, ...headTail(input, context, pieces.ellipsis, rng()), ...pieces.recite];
  return { ids: [...prefix, ...segment], lossFrom: prefix.length };
}

/** The plain form (the paper's ablation "without contextualized training"): [bos] segment. */
export function plainSegmentExample(segment: number[], pieces: PromptPieces): LiftExample {
  return { ids: [pieces.bos, ...segment], lossFrom: 1 };
}
