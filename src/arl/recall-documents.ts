/**
 * Recall documents: continued-pretraining text in which earlier content is used again later, so that ARL has
 * something to learn. Each is a run of corpus paragraphs (one per line) with one to four needle sentences, each at
 * the end of a paragraph in the first half; each needle's fact is restated at the start of a later paragraph
 * between S and W - 64 tokens after it (the short context cannot see the needle there, the window can), and a
 * question about one of them ends the document. Several needles teach a recap for each fact while it is in view,
 * as a test with four keys needs: a model that saw one needle per document learns that one recap is enough.
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
import { drawNeedleEntities, hashString, needleSentence } from '../eval/ruler-tasks.ts';
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

/** The most needles a recall document holds; each document draws 1 to this many. */
const MAX_NEEDLES = 4;

/** Document `index`; null when its paragraphs leave some needle no paragraph start at a usable distance (rare). */
export function recallDocument(o: RecallDocumentOptions, index: number): CorpusDocument | null {
  const rng = makeRng(hashString(`recall|${o.seed}|${index}`));
  // About 1.5 to 2 windows of text; a token is about 0.75 words of this corpus.
  const words = Math.round(((1.5 + 0.5 * rng()) * o.window * 3) / 4);
  const start = Math.floor(rng() * o.haystack.sentences.length);
  const paragraphs: string[] = [];
  for (const sentence of o.haystack.take(start, words)) {
    if (paragraphs.length === 0 || sentence.startsWith('\n')) paragraphs.push(sentence.replace(/^\n/, ''));
    else paragraphs[paragraphs.length - 1] += ` ${sentence}`;
  }
  const tokensOf = (text: string) => o.tokenizer.encode(text).length;
  const total = paragraphs.reduce((sum, p) => sum + tokensOf(p) + 1, 0);

  const keyRng = makeRng(hashString(`recall-key|${o.seed}|${index}`));
  const taken = new Set<string>();
  const needles = Array.from({ length: 1 + Math.floor(rng() * MAX_NEEDLES) }, (_, k) => {
    let key = recallKey(keyRng, o.haystack);
    while (taken.has(key)) key = recallKey(keyRng, o.haystack);
    taken.add(key);
    const { value } = drawNeedleEntities('train', hashString(`recall-needle|${o.seed}|${index}|${k}`), taken);
    return {
      key,
      value,
      // Where it goes: the end of the first paragraph past this token, and how far after it the restatement aims.
      at: (rng() * total) / 2,
      gap: o.shortContext + rng() * (o.window - WINDOW_MARGIN - o.shortContext),
      sentence: ` ${needleSentence(key, value)}`,
      restatement: `The special magic number for ${key} is ${value}. `,
    };
  }).sort((a, b) => a.at - b.at);

  // One pass in reading order, counting tokens with everything inserted so far. A paragraph opens with at most one
  // restatement: the needle that waited longest among those whose aimed gap is reached, or whose window would
  // close before the next paragraph start.
  let position = 0;
  let placed = 0;
  const waiting: Array<(typeof needles)[number] & { end: number }> = [];
  for (let i = 0; i < paragraphs.length; i++) {
    if (waiting.some((n) => position - n.end > o.window - WINDOW_MARGIN)) return null;
    const length = tokensOf(paragraphs[i]!) + 1;
    const due = waiting.findIndex((n) => position - n.end >= o.shortContext && (position - n.end >= n.gap || position + length - n.end > o.window - WINDOW_MARGIN));
    if (due >= 0) {
      const [needle] = waiting.splice(due, 1);
      paragraphs[i] = needle!.restatement + paragraphs[i];
      position += tokensOf(needle!.restatement);
    }
    position += length;
    if (placed < needles.length && position >= needles[placed]!.at) {
      const needle = needles[placed++]!;
      paragraphs[i] += needle.sentence;
      position += tokensOf(needle.sentence);
      waiting.push({ ...needle, end: position - 1 });
    }
  }
  if (placed < needles.length || waiting.length > 0) return null;
  const { key, value } = needles[Math.floor(rng() * needles.length)]!;
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
