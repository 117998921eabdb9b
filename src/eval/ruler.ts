/**
 * RULER-style synthetic long-context tasks (NVIDIA/RULER `scripts/data/synthetic/*.py`, templates from its
 * `constants.py`), generated deterministically from a seed at a target length in tokens of a given tokenizer,
 * with the haystack drawn from a corpus (the bundled Brown corpus by default).
 *
 * Differences from RULER, on purpose: the needle depth is set (or evenly spaced over the samples) and recorded
 * instead of random; the answer prefix ends the input, so a base model just continues it; QA asks about synthetic
 * facts planted in corpus passages, so it needs no QA data set and cannot be answered from prior knowledge;
 * cwe draws its words from the corpus and has no few-shot example. Keys, values and names come from disjoint
 * train and test pools, so samples made for a training mix never contain test entities.
 */
import { type CorpusDocument, readDocuments } from '../data/corpus.ts';
import { makeRng, pick, randomInt, type Rng, shuffleInPlace } from '../core/random.ts';
import { UserError } from '../io/errors.ts';
import { BUNDLED_TOKENIZER_PATH, Tokenizer } from '../tokenizer/sentencepiece.ts';
import { integerField, type JsonLine, readAllJsonObjects, stringArrayField, stringField } from '../io/jsonl.ts';
import { alignPredictions, type Prediction } from './jsonl.ts';
import { pythonRound, stringMatchAll, stringMatchPart } from './metrics.ts';
import { ADJECTIVES, FIRST_NAMES, NOUNS, SURNAMES, TOWN_ENDS, TOWN_STARTS } from './ruler-words.ts';

export const RULER_TASKS = [
  'niah_single',
  'niah_multikey',
  'niah_multivalue',
  'niah_multiquery',
  'variable_tracking',
  'common_words',
  'frequent_words',
  'qa',
] as const;
export type RulerTask = (typeof RULER_TASKS)[number];
export type RulerSplit = 'train' | 'test';

/** RULER's metric per task: all expected strings for the needle, tracking and word tasks; any one for QA. */
export const RULER_METRICS: Record<RulerTask, 'string_match_all' | 'string_match_part'> = {
  niah_single: 'string_match_all',
  niah_multikey: 'string_match_all',
  niah_multivalue: 'string_match_all',
  niah_multiquery: 'string_match_all',
  variable_tracking: 'string_match_all',
  common_words: 'string_match_all',
  frequent_words: 'string_match_all',
  qa: 'string_match_part',
};

export interface RulerSample {
  task: RulerTask;
  split: RulerSplit;
  seed: number;
  index: number;
  /** Percent depth (0 = start, 100 = end of the context) of the first expected needle; null for the word tasks. */
  depth: number | null;
  /** Tokens of `input` (without BOS). */
  length: number;
  /** The prompt, ending with RULER's answer prefix. */
  input: string;
  outputs: string[];
}

export interface RulerOptions {
  task: RulerTask;
  /** Target length of the input in tokens; it is reached from below, within a few tokens. */
  lengthTokens: number;
  seed: number;
  split: RulerSplit;
  /** Number of samples; the depths are spaced evenly over them unless `depth` is set. */
  count: number;
  /** Needle depth in percent for every sample. */
  depth?: number;
  tokenizer: Tokenizer;
  haystack: Haystack;
}

// ---------------------------------------------------------------------------------------------------------------
// Haystack

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
function appendWords(target: string[], sentence: string, limit: number): number {
  const count = wordCount(sentence);
  if (count <= limit) {
    target.push(sentence);
    return count;
  }
  target.push(sentence.split(' ').slice(0, limit).join(' '));
  return limit;
}

// ---------------------------------------------------------------------------------------------------------------
// Seeds, randomness and the train/test entity pools

/**
 * FNV-1a with murmur3's final mix, 32 bits: stable seeds and pool assignment from strings. The mix matters: the
 * low bit of plain FNV-1a is just the parity of the odd character codes, so pools of composed names would
 * follow from the pools of their parts.
 */
export function hashString(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193);
  hash = Math.imul(hash ^ (hash >>> 16), 0x85ebca6b);
  hash = Math.imul(hash ^ (hash >>> 13), 0xc2b2ae35);
  return (hash ^ (hash >>> 16)) >>> 0;
}

/** The pool an entity (key, value, name, word) belongs to: half of all strings by hash, the rest in the other. */
export function entityPool(entity: string): RulerSplit {
  return (hashString(`ruler-pool:${entity}`) & 1) === 0 ? 'train' : 'test';
}

const listPools = new WeakMap<readonly string[], Record<RulerSplit, string[]>>();

/** The entries of a word list in a split's pool. */
function poolOf(list: readonly string[], split: RulerSplit): string[] {
  let pools = listPools.get(list);
  if (!pools) {
    pools = { train: list.filter((w) => entityPool(w) === 'train'), test: list.filter((w) => entityPool(w) === 'test') };
    listPools.set(list, pools);
  }
  return pools[split];
}

/** Draws with `make` until the result is in the split's pool and not in `taken` (then adds it there). */
function drawEntity(split: RulerSplit, taken: Set<string>, make: () => string): string {
  for (let attempt = 0; attempt < 100_000; attempt++) {
    const entity = make();
    if (entityPool(entity) === split && !taken.has(entity)) {
      taken.add(entity);
      return entity;
    }
  }
  throw new Error(`no new ${split} entity found after 100000 draws (last tried ${make()})`);
}

const UPPERCASE = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';
const LOWERCASE = 'abcdefghijklmnopqrstuvwxyz';

/** `length` letters drawn from `alphabet`. */
function letters(rng: Rng, alphabet: string, length: number): string {
  return Array.from({ length }, () => alphabet[randomInt(rng, 0, alphabet.length)]).join('');
}

/** What every task plan can draw from. */
interface PlanContext {
  rng: Rng;
  sampleSeed: number;
  split: RulerSplit;
  haystack: Haystack;
  depth: number;
  lengthTokens: number;
  /** Entities already used in this sample, so keys, values and names never repeat within it. */
  taken: Set<string>;
}

/** "adjective-noun", as RULER's keys. */
function drawKey(ctx: PlanContext): string {
  const { rng, split } = ctx;
  return drawEntity(split, ctx.taken, () => `${pick(rng, poolOf(ADJECTIVES, split))}-${pick(rng, poolOf(NOUNS, split))}`);
}

/** A 7-digit number, as RULER's values. */
function drawNumber(ctx: PlanContext): string {
  return drawEntity(ctx.split, ctx.taken, () => String(randomInt(ctx.rng, 1_000_000, 10_000_000)));
}

/** A needle's key and 7-digit value from the split's pool, drawn from `seed` (for documents made outside a task plan). */
export function drawNeedleEntities(split: RulerSplit, seed: number, taken = new Set<string>()): { key: string; value: string } {
  const ctx = { rng: makeRng(seed), split, taken } as PlanContext;
  return { key: drawKey(ctx), value: drawNumber(ctx) };
}

function drawPerson(ctx: PlanContext): string {
  const { rng, split } = ctx;
  return drawEntity(split, ctx.taken, () => `${pick(rng, poolOf(FIRST_NAMES, split))} ${pick(rng, poolOf(SURNAMES, split))}`);
}

// ---------------------------------------------------------------------------------------------------------------
// Tasks

/**
 * A sample before its length is fixed: `render(size)` builds the prompt with a haystack of the given size (words
 * of text, or list entries for the word tasks); everything random was drawn before, so only the size varies.
 */
interface Plan {
  outputs: string[];
  depth: number | null;
  minSize: number;
  maxSize: number;
  render(size: number): string;
}

/** RULER's grid of 40 depths, for needles whose depth is not set. */
const DEPTH_GRID = Array.from({ length: 40 }, (_, i) => Math.round((100 * i) / 39));

interface Needle {
  text: string;
  depth: number;
}

/** Puts each needle before the sentence at floor(sentences * depth / 100), as RULER does; ties keep their order. */
function insertNeedles(sentences: readonly string[], needles: readonly Needle[]): string {
  const placed = needles
    .map((needle) => ({ text: needle.text, at: Math.floor((sentences.length * needle.depth) / 100) }))
    .sort((a, b) => a.at - b.at); // a stable sort
  const parts: string[] = [];
  let next = 0;
  for (let i = 0; i <= sentences.length; i++) {
    while (next < placed.length && placed[next]!.at === i) parts.push(placed[next++]!.text);
    if (i < sentences.length) parts.push(sentences[i]!);
  }
  return joinSentences(parts);
}

function fill(template: string, values: Record<string, string>): string {
  return template.replace(/\{(\w+)\}/g, (_, name: string) => values[name]!);
}

const NIAH_TEMPLATE =
  'Some special magic numbers are hidden within the following text. Make sure to memorize it. I will quiz you about the numbers afterwards.\n{context}\nWhat are all the special magic numbers for {query} mentioned in the provided text? The special magic numbers for {query} mentioned in the provided text are';
/** RULER's wording when a single number is asked for. */
const NIAH_TEMPLATE_ONE =
  'A special magic number is hidden within the following text. Make sure to memorize it. I will quiz you about the number afterwards.\n{context}\nWhat is the special magic number for {query} mentioned in the provided text? The special magic number for {query} mentioned in the provided text is';

/** Needles "One of the special magic numbers for {key} is: {value}.", `queries` of the `keys` asked for. */
function planNiah(ctx: PlanContext, shape: { keys: number; valuesPerKey: number; queries: number }): Plan {
  const { rng } = ctx;
  const keys = Array.from({ length: shape.keys }, () => drawKey(ctx));
  const values = keys.map(() => Array.from({ length: shape.valuesPerKey }, () => drawNumber(ctx)));
  const queried = shuffleInPlace(rng, keys.map((_, i) => i)).slice(0, shape.queries);
  const outputs = queried.flatMap((k) => values[k]!);
  const needles: Needle[] = keys.flatMap((key, k) =>
    values[k]!.map((value) => ({
      text: `One of the special magic numbers for ${key} is: ${value}.`,
      depth: value === outputs[0] ? ctx.depth : pick(rng, DEPTH_GRID),
    })),
  );
  shuffleInPlace(rng, needles);
  const queriedKeys = queried.map((k) => keys[k]!);
  const query = queriedKeys.length > 1 ? `${queriedKeys.slice(0, -1).join(', ')}, and ${queriedKeys.at(-1)}` : queriedKeys[0]!;
  const template = outputs.length === 1 ? NIAH_TEMPLATE_ONE : NIAH_TEMPLATE;
  const start = randomInt(rng, 0, ctx.haystack.sentences.length);
  return {
    outputs,
    depth: ctx.depth,
    minSize: 0,
    maxSize: Infinity,
    render: (words) => fill(template, { context: insertNeedles(ctx.haystack.take(start, words), needles), query }),
  };
}

const VT_TEMPLATE =
  'Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n{context}\nQuestion: Find all variables that are assigned the value {query} in the text above. Answer: According to the chain(s) of variable assignment in the text above, {count} variables are assigned the value {query}, they are:';
const VT_HOPS = 4;

/** One chain "VAR A = 12345. VAR B = VAR A. ..." of 4 hops; its first link at the depth, the rest after it. */
function planVariableTracking(ctx: PlanContext): Plan {
  const { rng, split } = ctx;
  const names = Array.from({ length: VT_HOPS + 1 }, () => drawEntity(split, ctx.taken, () => letters(rng, UPPERCASE, 5)));
  const value = drawEntity(split, ctx.taken, () => String(randomInt(rng, 10_000, 100_000)));
  const laterDepths = Array.from({ length: VT_HOPS }, () => randomInt(rng, ctx.depth, 101)).sort((a, b) => a - b);
  const needles: Needle[] = [
    { text: `VAR ${names[0]} = ${value}.`, depth: ctx.depth },
    ...laterDepths.map((depth, hop) => ({ text: `VAR ${names[hop + 1]} = VAR ${names[hop]}.`, depth })),
  ];
  const start = randomInt(rng, 0, ctx.haystack.sentences.length);
  return {
    outputs: names,
    depth: ctx.depth,
    minSize: 0,
    maxSize: Infinity,
    render: (words) =>
      fill(VT_TEMPLATE, { context: insertNeedles(ctx.haystack.take(start, words), needles), query: value, count: String(names.length) }),
  };
}

const CWE_TEMPLATE =
  'Below is a numbered list of words. In these words, some appear more often than others. Memorize the ones that appear most often.\n{context}\nQuestion: What are the 10 most common words in the above list? Answer: The top 10 words that appear most often in the list are:';
const CWE_COMMON_WORDS = 10;

/** 10 words repeated often, the others rarely (RULER: 30 and 3 times from 4096 tokens on, else 6 and 1). */
function planCommonWords(ctx: PlanContext): Plan {
  const pool = poolOf(ctx.haystack.vocabulary, ctx.split);
  if (pool.length <= CWE_COMMON_WORDS) throw new UserError(`common_words: the corpus has only ${pool.length} usable distinct words`);
  const words = shuffleInPlace(ctx.rng, [...pool]);
  const [commonRepeats, rareRepeats] = ctx.lengthTokens < 4096 ? [6, 1] : [30, 3];
  const common = words.slice(0, CWE_COMMON_WORDS);
  return {
    outputs: common,
    depth: null,
    minSize: CWE_COMMON_WORDS,
    maxSize: words.length,
    render: (distinctWords) => {
      const list = [
        ...common.flatMap((word) => Array<string>(commonRepeats).fill(word)),
        ...words.slice(CWE_COMMON_WORDS, distinctWords).flatMap((word) => Array<string>(rareRepeats).fill(word)),
      ];
      shuffleInPlace(makeRng(ctx.sampleSeed), list);
      return fill(CWE_TEMPLATE, { context: list.map((word, i) => `${i + 1}. ${word}`).join(' ') });
    },
  };
}

const FWE_TEMPLATE =
  "Read the following coded text and track the frequency of each coded word. Find the three most frequently appeared coded words. {context}\nQuestion: Do not provide any explanation. Please ignore the dots '....'. What are the three most frequently appeared words in the above coded text? Answer: According to the coded text above, the three most frequently appeared words are:";
const ZIPF_ALPHA = 2;
const ZETA_OF_ALPHA = Math.PI ** 2 / 6;

/**
 * Coded words with Zipf counts floor(n * k^-2 / zeta(2)) by rank k; rank 1 is the noise word "...", ranks 2-4
 * are the answer. At small n the floors can tie, so ranks 2-4 are raised to stay strictly above rank 5.
 */
function planFrequentWords(ctx: PlanContext): Plan {
  const vocabularySize = Math.max(10, Math.floor(ctx.lengthTokens / 50)); // RULER: max_seq_length // 50
  const vocabulary = ['...', ...Array.from({ length: vocabularySize - 1 }, () => drawEntity(ctx.split, ctx.taken, () => letters(ctx.rng, LOWERCASE, 6)))];
  return {
    outputs: vocabulary.slice(1, 4),
    depth: null,
    minSize: 1,
    maxSize: Infinity,
    render: (totalWords) => {
      const counts = vocabulary.map((_, rank) => Math.floor((totalWords * (rank + 1) ** -ZIPF_ALPHA) / ZETA_OF_ALPHA));
      for (let rank = 3; rank >= 1; rank--) counts[rank] = Math.max(counts[rank]!, counts[rank + 1]! + 1);
      const text = vocabulary.flatMap((word, rank) => Array<string>(counts[rank]!).fill(word));
      shuffleInPlace(makeRng(ctx.sampleSeed), text);
      return fill(FWE_TEMPLATE, { context: text.join(' ') });
    },
  };
}

const QA_TEMPLATE =
  'Answer the question based on the given documents. Only give me the answer and do not output any other words.\n\nThe following are given documents.\n\n{context}\n\nAnswer the question based on the given documents. Only give me the answer and do not output any other words.\n\nQuestion: {query} Answer:';

/** Fact templates: a sentence planted in a passage, the question it answers, and how to draw the answer. */
const QA_RELATIONS: ReadonlyArray<{ fact: (person: string, answer: string) => string; question: (person: string) => string; draw: (ctx: PlanContext) => string }> = [
  {
    fact: (person, town) => `${person} was born in the town of ${town}.`,
    question: (person) => `In which town was ${person} born?`,
    draw: (ctx) => drawEntity(ctx.split, ctx.taken, () => pick(ctx.rng, TOWN_STARTS) + pick(ctx.rng, TOWN_ENDS)),
  },
  {
    fact: (person, number) => `The number of ${person}'s safe deposit box is ${number}.`,
    question: (person) => `What is the number of ${person}'s safe deposit box?`,
    draw: drawNumber,
  },
  {
    fact: (person, name) => `${person} has a dog named ${name}.`,
    question: (person) => `What is the name of ${person}'s dog?`,
    draw: (ctx) => pick(ctx.rng, poolOf(FIRST_NAMES, ctx.split)),
  },
];

/**
 * A passage with a planted fact about one person, among distractor passages that each state the same kind of
 * fact about someone else; the gold passage sits at the depth among them.
 */
function planQa(ctx: PlanContext): Plan {
  const { rng, haystack } = ctx;
  if (haystack.passages.length < 2) throw new UserError('qa: the corpus needs at least two passages of text');
  const relation = pick(rng, QA_RELATIONS);
  const person = drawPerson(ctx);
  const answer = relation.draw(ctx);
  const gold = randomInt(rng, 0, haystack.passages.length);
  const goldDocument = plantFact(haystack.passageSentences(gold), relation.fact(person, answer), rng()).join(' ');
  const firstDistractor = randomInt(rng, 0, haystack.passages.length);
  // Each distractor's fact and its place come from its own seed, so they do not change with the context size.
  const distractorFacts = new Map<number, { fact: string; place: number }>();
  const distractorFact = (k: number) => {
    let entry = distractorFacts.get(k);
    if (!entry) {
      const own: PlanContext = { ...ctx, rng: makeRng(hashString(`${ctx.sampleSeed}:distractor:${k}`)), taken: new Set([person]) };
      entry = { fact: relation.fact(drawPerson(own), relation.draw(own)), place: own.rng() };
      distractorFacts.set(k, entry);
    }
    return entry;
  };
  return {
    outputs: [answer],
    depth: ctx.depth,
    minSize: 0,
    maxSize: Infinity,
    render: (words) => {
      const documents: string[] = [];
      let passage = firstDistractor;
      for (let left = words; left > 0; passage++) {
        if (passage % haystack.passages.length === gold) continue;
        const { fact, place } = distractorFact(documents.length);
        // The fact counts against the words, so the last document may end inside or before it.
        const taken: string[] = [];
        for (const sentence of plantFact(haystack.passageSentences(passage % haystack.passages.length), fact, place)) {
          if (left === 0) break;
          left -= appendWords(taken, sentence, left);
        }
        documents.push(taken.join(' '));
      }
      documents.splice(Math.round((ctx.depth / 100) * documents.length), 0, goldDocument);
      const context = documents.map((document, i) => `Document ${i + 1}:\n${document}`).join('\n\n');
      return fill(QA_TEMPLATE, { context, query: relation.question(person) });
    },
  };
}

/** The sentences with `fact` inserted between them, `place` (in [0, 1)) of the way through. */
function plantFact(sentences: readonly string[], fact: string, place: number): string[] {
  const at = Math.floor(place * (sentences.length + 1));
  return [...sentences.slice(0, at), fact, ...sentences.slice(at)];
}

const PLANNERS: Record<RulerTask, (ctx: PlanContext) => Plan> = {
  niah_single: (ctx) => planNiah(ctx, { keys: 1, valuesPerKey: 1, queries: 1 }),
  niah_multikey: (ctx) => planNiah(ctx, { keys: 4, valuesPerKey: 1, queries: 1 }),
  niah_multivalue: (ctx) => planNiah(ctx, { keys: 1, valuesPerKey: 4, queries: 1 }),
  niah_multiquery: (ctx) => planNiah(ctx, { keys: 4, valuesPerKey: 1, queries: 4 }),
  variable_tracking: planVariableTracking,
  common_words: planCommonWords,
  frequent_words: planFrequentWords,
  qa: planQa,
};

// ---------------------------------------------------------------------------------------------------------------
// Fitting to a length in tokens

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

/** The prompt of the largest size whose exact token count is at most `target`. */
function fitToLength(plan: Plan, task: RulerTask, target: number, tokenizer: Tokenizer): { input: string; length: number } {
  const estimate = (size: number) => estimateTokens(tokenizer, plan.render(size));
  let budget = target;
  for (;;) {
    const size = largestSizeWithin(plan, estimate, budget);
    const input = plan.render(size);
    const length = tokenizer.encode(input).length;
    if (length <= target) {
      if (size === plan.maxSize && length < 0.95 * target) {
        throw new UserError(`${task}: the corpus has too few distinct words to fill ${target} tokens (reached ${length}); use a larger corpus or a shorter length`);
      }
      return { input, length };
    }
    if (size === plan.minSize) throw new UserError(`${task}: length ${target} is too short; its shortest prompt has ${length} tokens`);
    budget -= length - target; // the estimate was low by this much; aim lower
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Samples

/** Depths 0, …, 100 spread evenly over the samples (50 for a single one). */
export function evenlySpacedDepth(index: number, count: number): number {
  return count <= 1 ? 50 : Math.round((100 * index) / (count - 1));
}

function checkOptions(options: Pick<RulerOptions, 'lengthTokens' | 'count' | 'depth' | 'seed'>): void {
  if (!Number.isInteger(options.lengthTokens) || options.lengthTokens <= 0) throw new UserError(`length must be a positive integer, got ${options.lengthTokens}`);
  if (!Number.isInteger(options.count) || options.count <= 0) throw new UserError(`count must be a positive integer, got ${options.count}`);
  if (!Number.isInteger(options.seed)) throw new UserError(`seed must be an integer, got ${options.seed}`);
  if (options.depth !== undefined && !(options.depth >= 0 && options.depth <= 100)) throw new UserError(`depth must be a percentage from 0 to 100, got ${options.depth}`);
}

/** Sample `index` of a set; the same options and index always give the same sample. */
export function generateRulerSample(options: RulerOptions, index: number): RulerSample {
  checkOptions(options);
  const { task, split, seed } = options;
  // The split is part of the seed, so train and test samples are drawn from unrelated random streams.
  const sampleSeed = hashString(`${split}|${task}|${seed}|${index}`);
  const plan = PLANNERS[task]({
    rng: makeRng(sampleSeed),
    sampleSeed,
    split,
    haystack: options.haystack,
    depth: options.depth ?? evenlySpacedDepth(index, options.count),
    lengthTokens: options.lengthTokens,
    taken: new Set(),
  });
  const { input, length } = fitToLength(plan, task, options.lengthTokens, options.tokenizer);
  return { task, split, seed, index, depth: plan.depth, length, input, outputs: plan.outputs };
}

export function* generateRulerSamples(options: RulerOptions): Generator<RulerSample> {
  for (let index = 0; index < options.count; index++) yield generateRulerSample(options, index);
}

/**
 * Short RULER samples with their answers, as documents to mix into pretraining data: always the train split,
 * tasks in turn, depths spread over the whole mix.
 */
/**
 * Training-pool samples for the pretraining mix, tasks in turn, each followed by its answer. With
 * `minLengthTokens`, lengths step through a ladder from it to `lengthTokens` (sample i takes rung i / tasks
 * mod 3): short haystacks teach the retrieval formats with fewer distractors, as a curriculum; a sample whose
 * prompt does not fit a short rung takes the next one, and one that fits none is left out.
 */
export async function* rulerMixDocuments(options: {
  tasks: readonly RulerTask[];
  count: number;
  lengthTokens: number;
  minLengthTokens?: number;
  seed: number;
  tokenizer?: Tokenizer;
  haystack?: Haystack;
}): AsyncGenerator<CorpusDocument> {
  if (options.tasks.length === 0) throw new UserError('name at least one RULER task to mix');
  const tokenizer = options.tokenizer ?? (await Tokenizer.load(BUNDLED_TOKENIZER_PATH));
  const haystack = options.haystack ?? (await Haystack.load());
  const shortest = Math.min(options.minLengthTokens ?? options.lengthTokens, options.lengthTokens);
  const ladder = [shortest, Math.round((shortest + options.lengthTokens) / 2), options.lengthTokens];
  for (let index = 0; index < options.count; index++) {
    const task = options.tasks[index % options.tasks.length]!;
    const rung = Math.floor(index / options.tasks.length) % ladder.length;
    const sample = (lengthTokens: number) =>
      generateRulerSample({ task, lengthTokens, seed: options.seed, split: 'train', count: options.count, tokenizer, haystack }, index);
    let made: RulerSample | null = null;
    for (const lengthTokens of ladder.slice(rung)) {
      try {
        made = sample(lengthTokens);
        break;
      } catch (err) {
        if (!(err instanceof UserError && /too short/.test(err.message))) throw err;
      }
    }
    // A sample whose prompt exceeds even the longest rung (a long qa paragraph) is left out of the mix.
    if (made) yield { id: `ruler:${task}:${options.seed}:${index}`, text: `${made.input} ${made.outputs.join(', ')}` };
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Scoring

export interface RulerTaskScore {
  metric: 'string_match_all' | 'string_match_part';
  count: number;
  /** 100 * mean, rounded to 2 decimals (RULER's constants.py). */
  score: number;
}

/** One prediction's score in [0, 1] by its task's metric. */
export function scoreRulerExample(task: RulerTask, pred: string, outputs: readonly string[]): number {
  return RULER_METRICS[task] === 'string_match_all' ? stringMatchAll(pred, outputs) : stringMatchPart(pred, outputs);
}

export function scoreRuler(examples: ReadonlyArray<{ task: RulerTask; pred: string; outputs: readonly string[] }>): Record<string, RulerTaskScore> {
  const byTask = new Map<RulerTask, number[]>();
  for (const { task, pred, outputs } of examples) {
    const scores = byTask.get(task) ?? [];
    scores.push(scoreRulerExample(task, pred, outputs));
    byTask.set(task, scores);
  }
  const result: Record<string, RulerTaskScore> = {};
  for (const [task, scores] of byTask) {
    let total = 0;
    for (const score of scores) total += score;
    result[task] = { metric: RULER_METRICS[task], count: scores.length, score: pythonRound((total / scores.length) * 100, 2) };
  }
  return result;
}

/** Answer budget per task in tokens (RULER's tokens_to_generate; needle tasks 64 instead of 128, as our answers are one line). */
export const RULER_ANSWER_TOKENS: Record<RulerTask, number> = {
  niah_single: 64,
  niah_multikey: 64,
  niah_multivalue: 64,
  niah_multiquery: 64,
  variable_tracking: 30,
  common_words: 120,
  frequent_words: 50,
  qa: 32,
};

/** Samples of a generated file, with the line each came from. */
export async function readRulerSamples(path: string): Promise<Array<{ sample: Pick<RulerSample, 'task' | 'index' | 'input' | 'outputs' | 'length' | 'depth'>; source: JsonLine }>> {
  return (await readAllJsonObjects(path)).map((source) => {
    const depth = source.fields.depth;
    const sample = {
      task: parseTask(source),
      index: integerField(source, 'index'),
      input: stringField(source, 'input'),
      outputs: stringArrayField(source, 'outputs'),
      length: integerField(source, 'length'),
      depth: typeof depth === 'number' ? depth : null,
    };
    return { sample, source };
  });
}

function parseTask(source: JsonLine): RulerTask {
  const task = stringField(source, 'task');
  if (!(RULER_TASKS as readonly string[]).includes(task)) throw new UserError(`${source.where}: unknown RULER task "${task}"; known: ${RULER_TASKS.join(', ')}`);
  return task as RulerTask;
}

/**
 * Scores a predictions file against generated samples: lines with a string "pred", matched by "task" and
 * "index" when every line has both, by "index" alone (single-task data), or by line order when none has "index".
 */
export async function scoreRulerFiles(dataPath: string, predictionsPath: string): Promise<Record<string, RulerTaskScore>> {
  const predictionLines = await readAllJsonObjects(predictionsPath);
  const withTask = predictionLines.every((line) => line.fields.task !== undefined);
  const keyOf = (task: string, index: number) => (withTask ? `${task}#${index}` : String(index));
  const predictions: Prediction[] = predictionLines.map((source) => ({
    pred: stringField(source, 'pred'),
    key: source.fields.index === undefined ? null : keyOf(withTask ? parseTask(source) : '', integerField(source, 'index')),
    source,
  }));
  const records = (await readAllJsonObjects(dataPath)).map((source) => {
    const record = { task: parseTask(source), index: integerField(source, 'index'), outputs: stringArrayField(source, 'outputs') };
    return { record, key: keyOf(record.task, record.index), source };
  });
  const dataTasks = new Set(records.map((entry) => entry.record.task));
  if (!withTask && dataTasks.size > 1 && predictions.some((p) => p.key !== null)) {
    throw new UserError(
      `${predictionsPath}: ${dataPath} has several tasks (${[...dataTasks].join(', ')}); give every prediction "task" as well as "index", or neither to match by line order`,
    );
  }
  const pairs = alignPredictions(records, predictions, predictionsPath, withTask ? 'task and index' : 'index');
  return scoreRuler(pairs.map(({ record, prediction }) => ({ task: record.task, pred: prediction.pred, outputs: record.outputs })));
}
