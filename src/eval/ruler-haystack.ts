/** The haystack of RULER-style prompts: corpus sentences in order, grouped into passages, with the corpus's words. */
import { type CorpusDocument, readDocuments } from '../data/corpus.ts';
import { UserError } from '../io/errors.ts';

/** Passages for QA documents hold whole sentences of one corpus document, at least this many words. */
const PASSAGE_MIN_WORDS = 60;
/** Enough text for contexts of hundreds of thousands of tokens, without holding a huge corpus in memory. */
const MAX_HAYSTACK_SENTENCES = 200_000;

/** Splits a paragraph after ., ! or ? (and closing quotes) before a capital, digit or opening quote. */
export function splitSentences(paragraph: string): string[] {
  return paragraph
    .split(/(?<=[.!?]["'”’)\]]*)\s+(?=["'“‘(\[]?[A-Z0-9])/)
    .map((sentence) => sentence.replace(/\s+/g, ' ').trim())
    .filter((sentence) => sentence.length > 0);
}

/** Corpus sentences in order, the passages grouping them, and (for cwe) the corpus's lowercase words. */
export class Haystack {
  private vocabularyCache: string[] | null = null;

  private constructor(
    readonly sentences: readonly string[],
    readonly passages: ReadonlyArray<{ start: number; end: number }>,
    private readonly paragraphStarts: ReadonlySet<number> = new Set(),
  ) {}

  /** Reads a corpus as `readDocuments` does: "brown", a .txt file, a folder of them or a .jsonl file. */
  static async load(source = 'brown'): Promise<Haystack> {
    const docs: CorpusDocument[] = [];
    let sentences = 0;
    for await (const doc of readDocuments(source)) {
      docs.push(doc);
      sentences += doc.text.length / 80; // a rough count, only to stop reading a huge corpus early
      if (sentences >= MAX_HAYSTACK_SENTENCES) break;
    }
    return Haystack.fromDocuments(docs);
  }

  /**
   * A haystack of the given documents only (e.g. the training documents, or held-out ones for test prompts).
   * Sentences that open a paragraph are marked, so prompts keep the corpus's paragraphs as lines.
   */
  static fromDocuments(docs: Iterable<CorpusDocument>): Haystack {
    const sentences: string[] = [];
    const paragraphStarts = new Set<number>();
    const passages: Array<{ start: number; end: number }> = [];
    for (const doc of docs) {
      const firstPassage = passages.length;
      let start = sentences.length;
      let words = 0;
      for (const paragraph of doc.text.split(/\n\s*\n/)) {
        const first = sentences.length;
        for (const sentence of splitSentences(paragraph)) {
          sentences.push(sentence);
          words += wordCount(sentence);
          if (words >= PASSAGE_MIN_WORDS) {
            passages.push({ start, end: sentences.length });
            start = sentences.length;
            words = 0;
          }
        }
        if (sentences.length > first) paragraphStarts.add(first);
      }
      // A document's short tail joins its last passage.
      if (start < sentences.length) {
        if (passages.length > firstPassage) passages.at(-1)!.end = sentences.length;
        else passages.push({ start, end: sentences.length });
      }
      if (sentences.length >= MAX_HAYSTACK_SENTENCES) break;
    }
    if (sentences.length === 0) throw new UserError('the haystack corpus has no sentences; pass documents with text');
    return new Haystack(sentences, passages, paragraphStarts);
  }

  /** Distinct all-lowercase words of 3-12 letters, sorted: the candidates of common-words extraction. */
  get vocabulary(): readonly string[] {
    if (this.vocabularyCache === null) {
      const words = new Set<string>();
      for (const sentence of this.sentences) {
        for (const token of sentence.split(' ')) {
          const word = token.replace(/^[^A-Za-z]+|[^A-Za-z]+$/g, '');
          if (/^[a-z]{3,12}$/.test(word)) words.add(word);
        }
      }
      this.vocabularyCache = [...words].sort();
    }
    return this.vocabularyCache;
  }

  /**
   * The first `words` words of the sentences from `start` on (wrapping around); the last one may be cut. A
   * sentence that opens a paragraph of the corpus starts with a line break (see joinSentences).
   */
  take(start: number, words: number): string[] {
    const taken: string[] = [];
    let left = words;
    for (let i = start; left > 0; i++) {
      const index = i % this.sentences.length;
      left -= appendWords(taken, this.sentences[index]!, left);
      if (this.paragraphStarts.has(index) && taken.length > 1) taken[taken.length - 1] = `\n${taken.at(-1)}`;
    }
    return taken;
  }

  passageSentences(index: number): string[] {
    const { start, end } = this.passages[index]!;
    return this.sentences.slice(start, end);
  }
}

/** Sentences as running text: a space between them, or the line break a paragraph's first sentence carries. */
export function joinSentences(parts: readonly string[]): string {
  return parts.map((part, i) => (i === 0 || part.startsWith('\n') ? part : ` ${part}`)).join('');
}

function wordCount(sentence: string): number {
  return sentence.split(' ').length;
}

/** Appends `sentence`, cut to at most `limit` words; returns the words appended. */
export function appendWords(target: string[], sentence: string, limit: number): number {
  const count = wordCount(sentence);
  if (count <= limit) {
    target.push(sentence);
    return count;
  }
  target.push(sentence.split(' ').slice(0, limit).join(' '));
  return limit;
}
