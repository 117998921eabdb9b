/**
 * Recall documents: continued-pretraining text in which earlier content is used again later, so that ARL has
 * something to learn. Each is a run of corpus paragraphs (one per line) with a needle sentence at the end of an
 * early paragraph, the needle's fact restated at the start of a later paragraph between S and W - 64 tokens
 * after it (the short context cannot see the needle there, the window can), and a question about it at the end.
 *
 * Nothing here marks where recaps go: ARL's own steps find the restated value as key tokens (long context
 * predicts it, short context cannot), the needle sentence as their segment, and insert the recap before the
 * restating sentence, which opens a paragraph. That is where the recap agent is offered a recap at inference.
 * Values come from the training pool, the paragraphs from the documents given (not the test ones). Keys are two
 * words of those documents that no RULER key list holds. Keys from the training pool (97 adjectives x 99 nouns)
 * are learned by heart: a model trained on them recaps a test needle under a remembered training key, never the
 * needle's own (docs/experiment.md). A key drawn from thousands of words can only be copied.
 */
import type { CorpusDocument } from '../data/corpus.ts';
import type { Haystack } from '../eval/ruler-haystack.ts';
import { drawNeedleEntities, hashString } from '../eval/ruler-tasks.ts';
import { ADJECTIVES, NOUNS } from '../eval/ruler-words.ts';
import { makeRng, pick, type Rng } from '../core/random.ts';
import { UserError } from '../io/errors.ts';
import type { Tokenizer } from '../tokenizer/sentencepiece.ts';

export interface RecallDocumentOptions {
  haystack: Haystack;
  tokenizer: Tokenizer;
  /** The model's window W. */
  window: number;
  /** The short context S of the key-token step: restatements come at least this far after the needle. */
  shortContext: number;
  seed: number;
}

/** Tokens left between a restatement and the window's edge, so the needle is still inside the window there. */
const WINDOW_MARGIN = 64;

const RULER_KEY_WORDS = new Set([...ADJECTIVES, ...NOUNS]);
const keyWordsCache = new WeakMap<Haystack, readonly string[]>();

/** "word-word" from the haystack's words of 4 or more letters that are in no RULER key list. */
function recallKey(rng: Rng, haystack: Haystack): string {
  let words = keyWordsCache.get(haystack);
  if (!words) {
    words = haystack.vocabulary.filter((w) => w.length >= 4 && !RULER_KEY_WORDS.has(w));
    keyWordsCache.set(haystack, words);
  }
  if (words.length < 2) throw new UserError('the continued-pretraining documents hold fewer than two words (4 or more letters, in no RULER key list) to make recall keys from; give more text');
  const first = pick(rng, words);
  let second = pick(rng, words);
  while (second === first) second = pick(rng, words);
  return `${first}-${second}`;
}

/** Document `index`; null when the drawn paragraphs leave no paragraph start at a usable distance (rare). */
export function recallDocument(o: RecallDocumentOptions, index: number): CorpusDocument | null {
  const rng = makeRng(hashString(`recall|${o.seed}|${index}`));
  const { value } = drawNeedleEntities('train', hashString(`recall-needle|${o.seed}|${index}`));
  const key = recallKey(makeRng(hashString(`recall-key|${o.seed}|${index}`)), o.haystack);
  // About 1.5 to 2 windows of text; a token is about 0.75 words of this corpus.
  const words = Math.round(((1.5 + 0.5 * rng()) * o.window * 3) / 4);
  const start = Math.floor(rng() * o.haystack.sentences.length);
  const paragraphs: string[] = [];
  for (const sentence of o.haystack.take(start, words)) {
    if (paragraphs.length === 0 || sentence.startsWith('\n')) paragraphs.push(sentence.replace(/^\n/, ''));
    else paragraphs[paragraphs.length - 1] += ` ${sentence}`;
  }
  const tokens = paragraphs.map((p) => o.tokenizer.encode(p).length + 1);
  const ends: number[] = [];
  tokens.reduce((sum, n, i) => (ends[i] = sum + n), 0);
  // The needle closes a paragraph in the first third; the restatement opens one S to W - 64 tokens later.
  const needleCandidates = paragraphs.map((_, i) => i).filter((i) => ends[i]! <= ends.at(-1)! / 3);
  if (needleCandidates.length === 0) return null;
  const needleAt = needleCandidates[Math.floor(rng() * needleCandidates.length)]!;
  const restateCandidates = paragraphs
    .map((_, i) => i)
    .filter((i) => i > needleAt && ends[i - 1]! - ends[needleAt]! >= o.shortContext && ends[i - 1]! - ends[needleAt]! <= o.window - WINDOW_MARGIN);
  if (restateCandidates.length === 0) return null;
  const restateAt = restateCandidates[Math.floor(rng() * restateCandidates.length)]!;
  paragraphs[needleAt] += ` One of the special magic numbers for ${key} is: ${value}.`;
  paragraphs[restateAt] = `The special magic number for ${key} is ${value}. ${paragraphs[restateAt]}`;
  paragraphs.push(`What is the special magic number for ${key} mentioned in the provided text? The special magic number for ${key} mentioned in the provided text is ${value}.`);
  return { id: `recall:${o.seed}:${index}`, text: paragraphs.join('\n') };
}

/** `count` recall documents (indices on from 0, skipping the few that fit no restatement). */
export function recallDocuments(o: RecallDocumentOptions, count: number): CorpusDocument[] {
  const docs: CorpusDocument[] = [];
  for (let index = 0; docs.length < count; index++) {
    if (index > 10 * count + 100) throw new Error(`only ${docs.length} of ${count} recall documents fit a window of ${o.window}`);
    const doc = recallDocument(o, index);
    if (doc) docs.push(doc);
  }
  return docs;
}
