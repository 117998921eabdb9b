/** Fitting a RULER prompt to a length in tokens: the largest haystack whose prompt stays within it. */
import { UserError } from '../io/errors.ts';
import type { Tokenizer } from '../tokenizer/sentencepiece.ts';
import type { Plan, RulerTask } from './ruler-tasks.ts';

/**
 * Token counts of space-separated chunks, per tokenizer. SentencePiece does not merge across spaces, so the sum
 * over chunks is the text's count to within a token or two, at a fraction of the cost of encoding it each time.
 */
const chunkTokenCounts = new WeakMap<Tokenizer, Map<string, number>>();

function estimateTokens(tokenizer: Tokenizer, text: string): number {
  let counts = chunkTokenCounts.get(tokenizer);
  if (!counts) {
    counts = new Map();
    chunkTokenCounts.set(tokenizer, counts);
  }
  let total = 0;
  for (const chunk of text.split(' ')) {
    let count = counts.get(chunk);
    if (count === undefined) {
      count = tokenizer.encode(chunk).length;
      counts.set(chunk, count);
    }
    total += count;
  }
  return total;
}

/** Largest size in [minSize, maxSize] whose estimated prompt is within `budget` tokens (minSize if none is). */
function largestSizeWithin(plan: Plan, estimate: (size: number) => number, budget: number): number {
  let fits = plan.minSize;
  if (estimate(fits) > budget) return fits;
  let step = 16;
  let over = fits + step;
  while (over < plan.maxSize && estimate(over) <= budget) {
    fits = over;
    step *= 2;
    over = fits + step;
  }
  if (over >= plan.maxSize) {
    over = plan.maxSize;
    if (estimate(over) <= budget) return over;
  }
  while (over - fits > 1) {
    const middle = Math.floor((fits + over) / 2);
    if (estimate(middle) <= budget) fits = middle;
    else over = middle;
  }
  return fits;
}

/** The prompt of the largest size whose exact token count is at most `target`, and its tokens. */
export function fitToLength(plan: Plan, task: RulerTask, target: number, tokenizer: Tokenizer): { input: string; ids: number[] } {
  const estimate = (size: number) => estimateTokens(tokenizer, plan.render(size));
  let budget = target;
  for (;;) {
    const size = largestSizeWithin(plan, estimate, budget);
    const input = plan.render(size);
    const ids = tokenizer.encode(input);
    const length = ids.length;
    if (length <= target) {
      if (size === plan.maxSize && length < 0.95 * target) {
        throw new UserError(`${task}: the corpus has too few distinct words to fill ${target} tokens (reached ${length}); use a larger corpus or a shorter length`);
      }
      return { input, ids };
    }
    if (size === plan.minSize) throw new UserError(`${task}: length ${target} is too short; its shortest prompt has ${length} tokens`);
    budget -= length - target; // the estimate was low by this much; aim lower
  }
}
