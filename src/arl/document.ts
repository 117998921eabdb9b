/**
 * A document as ARL sees it: BOS followed by the concatenated encodings of its sentences, plus the
 * token offset where each sentence starts. Both ARL steps use this one tokenization, so key-token
 * positions (step 1) and sentence-aligned candidate segments (step 2) index the same tokens.
 */
import type { Tokenizer } from '../tokenizer/sentencepiece.ts';

export interface TokenizedDocument {
  /** BOS, then the sentences' tokens. */
  tokens: number[];
  /** Token offset of each sentence's first token, ascending; sentence k ends where k+1 starts (the last at tokens.length). */
  sentenceStarts: number[];
  /** The sentence starts that open a new line (a paragraph, after the first). */
  paragraphStarts: number[];
}

/** SentencePiece's word-boundary marker, which it also prepends to every encoded text (the "dummy prefix"). */
const WORD_BOUNDARY = '\u2581';
const SENTENCE_END_MARKS = '.!?';
const CLOSING_MARKS = `"'”’)]`;

/** True when text[0, at) ends a sentence: . ! or ? followed by any closing quotes or brackets. */
function endsSentence(text: string, at: number): boolean {
  let i = at - 1;
  while (i >= 0 && CLOSING_MARKS.includes(text[i])) i--;
  return i >= 0 && SENTENCE_END_MARKS.includes(text[i]);
}

/**
 * Splits text into sentences whose concatenation is the text: a cut falls at the start of each
 * whitespace run that follows a sentence end or contains a line break (paragraph breaks), so the
 * whitespace opens the next sentence. Trailing whitespace stays with the last sentence.
 */
export function splitSentences(text: string): string[] {
  const sentences: string[] = [];
  let start = 0;
  for (const run of text.matchAll(/\s+/g)) {
    const at = run.index;
    if (at === 0 || at + run[0].length === text.length) continue;
    if (run[0].includes('\n') || endsSentence(text, at)) {
      sentences.push(text.slice(start, at));
      start = at;
    }
  }
  sentences.push(text.slice(start));
  return sentences;
}

/**
 * Encodes a document sentence by sentence. Every sentence after the first opens with whitespace;
 * encoding it alone would add a second word-boundary marker, so a leading space is left to the
 * dummy prefix and a lone dummy marker before a line break is dropped. That reproduces the
 * whole-text encoding (pieces never span a space or a byte-encoded newline) while making the
 * sentence offsets exact.
 */
export function tokenizeDocument(text: string, tokenizer: Tokenizer): TokenizedDocument {
  const tokens = [tokenizer.bosId];
  const sentenceStarts: number[] = [];
  const paragraphStarts: number[] = [];
  for (const [index, sentence] of splitSentences(text).entries()) {
    const ids = index > 0 ? encodeContinuation(sentence, tokenizer) : tokenizer.encode(sentence);
    if (ids.length === 0) continue;
    if (index > 0 && /^\s*\n/.test(sentence)) paragraphStarts.push(tokens.length);
    sentenceStarts.push(tokens.length);
    for (const id of ids) tokens.push(id);
  }
  return { tokens, sentenceStarts, paragraphStarts };
}

/** Tokens of `text` as it reads after earlier text (no dummy word-boundary marker of its own), as tokenizeDocument encodes every sentence but the first. */
export function encodeContinuation(text: string, tokenizer: Tokenizer): number[] {
  if (text.startsWith(' ')) return tokenizer.encode(text.slice(1));
  const ids = tokenizer.encode(text);
  return ids.length > 0 && tokenizer.pieceOf(ids[0]) === WORD_BOUNDARY ? ids.slice(1) : ids;
}
