/**
 * Training-input augmentation for small models (not in the paper; off by default): the input
 * followed by copies of it with its sentences in other random orders. A tiny model fine-tuned on
 * one fixed text stores each sentence keyed on the text before it, so a question (another context)
 * does not retrieve it; seen after varied contexts, a sentence is keyed on its own words. The
 * copies hold only the input's own sentences.
 */
import { shuffleInPlace } from '../core/random.ts';
import { UserError } from '../io/errors.ts';

export function withSentenceOrders(text: string, orders: number, rng: () => number): string {
  if (!Number.isInteger(orders) || orders < 1) throw new UserError(`--sentence-orders must be a whole number >= 1, got ${orders}`);
  const sentences = text.trim().split(/(?<=[.!?])\s+/);
  const copies = [text.trim()];
  for (let n = 1; n < orders; n++) {
    copies.push(shuffleInPlace(rng, [...sentences]).join(' '));
  }
  return copies.join(' ');
}
