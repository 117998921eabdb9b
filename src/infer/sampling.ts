/** Picking the next token from a row of logits: greedy, or temperature + top-k + top-p with a seeded RNG. */

export interface SamplingOptions {
  /** 0 or greedy=true means argmax. */
  temperature: number;
  topK: number;
  topP: number;
  greedy: boolean;
}

export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

export function sampleToken(logits: ArrayLike<number>, opts: SamplingOptions, rng: () => number): number {
  if (opts.greedy || opts.temperature <= 0) return argmax(logits);
  let order = Array.from({ length: logits.length }, (_, i) => i).sort((a, b) => logits[b] - logits[a]);
  if (opts.topK > 0) order = order.slice(0, opts.topK);
  const maxLogit = logits[order[0]];
  let probs = order.map((i) => Math.exp((logits[i] - maxLogit) / opts.temperature));
  let total = probs.reduce((a, b) => a + b, 0);
  if (opts.topP > 0 && opts.topP < 1) {
    let cumulative = 0;
    let keep = 0;
    while (keep < probs.length && cumulative < opts.topP * total) cumulative += probs[keep++];
    order = order.slice(0, keep);
    probs = probs.slice(0, keep);
    total = cumulative;
  }
  let r = rng() * total;
  for (let i = 0; i < order.length; i++) {
    r -= probs[i];
    if (r <= 0) return order[i];
  }
  return order[order.length - 1];
}
