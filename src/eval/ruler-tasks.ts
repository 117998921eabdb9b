/**
 * The RULER tasks (templates from NVIDIA/RULER's `constants.py`) and their plans: each draws its needles, entities
 * and haystack positions from a seed, before the prompt's length is fitted. Keys, values and names come from
 * disjoint train and test pools.
 */
import { makeRng, pick, randomInt, type Rng, shuffleInPlace } from '../core/random.ts';
import { UserError } from '../io/errors.ts';
import { appendWords, type Haystack, joinSentences } from './ruler-haystack.ts';
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

// ---------------------------------------------------------------------------------------------------------------
// Seeds and the train/test entity pools

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
export interface PlanContext {
  rng: Rng;
  sampleSeed: number;
  split: RulerSplit;
  haystack: Haystack;
  depth: number;
  lengthTokens: number;
  /** Entities already used in this sample, so keys, values and names never repeat within it. */
  taken: Set<string>;
  /** Where the words of needle keys come from (see KeyWords). */
  keyWords: KeyWords;
}

/**
 * The words of needle keys: `lists`, RULER's adjective-noun from our word lists (their halves for the split), or
 * `haystack`, any two words of the haystack's vocabulary in the training pool, for training rows only: thousands of
 * words instead of about a hundred of each kind, so that matching a key cannot lean on knowing its words.
 */
export const KEY_WORDS = ['lists', 'haystack'] as const;
export type KeyWords = (typeof KEY_WORDS)[number];

const haystackKeyWordCache = new WeakMap<Haystack, string[]>();

/**
 * The haystack's lowercase words of 4 letters or more that occur at least 5 times (common words, like the lists',
 * rather than rare ones of many pieces), in the training pool, which no test key word can be.
 */
function haystackKeyWords(haystack: Haystack): string[] {
  let words = haystackKeyWordCache.get(haystack);
  if (!words) {
    const counts = new Map<string, number>();
    for (const sentence of haystack.sentences) for (const word of sentence.match(/\b[a-z]{4,12}\b/g) ?? []) counts.set(word, (counts.get(word) ?? 0) + 1);
    words = haystack.vocabulary.filter((w) => (counts.get(w) ?? 0) >= 5 && entityPool(w) === 'train');
    if (words.length < 2) throw new UserError('the haystack has too few words for needle keys; use a larger corpus or key words from the lists');
    haystackKeyWordCache.set(haystack, words);
  }
  return words;
}

/** "adjective-noun", as RULER's keys, or two haystack words (see KeyWords). */
function drawKey(ctx: PlanContext): string {
  const { rng, split } = ctx;
  if (ctx.keyWords === 'haystack') {
    const words = haystackKeyWords(ctx.haystack);
    return drawEntity(split, ctx.taken, () => `${pick(rng, words)}-${pick(rng, words)}`);
  }
  return drawEntity(split, ctx.taken, () => `${pick(rng, poolOf(ADJECTIVES, split))}-${pick(rng, poolOf(NOUNS, split))}`);
}

/** A 7-digit number, as RULER's values. */
function drawNumber(ctx: PlanContext): string {
  return drawEntity(ctx.split, ctx.taken, () => String(randomInt(ctx.rng, 1_000_000, 10_000_000)));
}

/** A needle's key and 7-digit value from the split's pool, drawn from `seed` (for documents made outside a task plan). */
export function drawNeedleEntities(split: RulerSplit, seed: number, taken = new Set<string>()): { key: string; value: string } {
  const ctx = { rng: makeRng(seed), split, taken, keyWords: 'lists' } as PlanContext;
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
export interface Plan {
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

/** A needle sentence of the NIAH tasks (and of ARL's recall documents). */
export function needleSentence(key: string, value: string): string {
  return `One of the special magic numbers for ${key} is: ${value}.`;
}

/** The needles of a NIAH prompt, in the order they appear (values of digits, or a word as in the LIFT word variant). */
export function needlesIn(input: string): Array<{ key: string; value: string }> {
  return [...input.matchAll(/One of the special magic numbers for ([\w-]+) is: (\w+)\./g)].map((m) => ({ key: m[1]!, value: m[2]! }));
}

/** Needles "One of the special magic numbers for {key} is: {value}.", `queries` of the `keys` asked for. */
function planNiah(ctx: PlanContext, shape: { keys: number; valuesPerKey: number; queries: number }): Plan {
  const { rng } = ctx;
  const keys = Array.from({ length: shape.keys }, () => drawKey(ctx));
  const values = keys.map(() => Array.from({ length: shape.valuesPerKey }, () => drawNumber(ctx)));
  const queried = shuffleInPlace(rng, keys.map((_, i) => i)).slice(0, shape.queries);
  const outputs = queried.flatMap((k) => values[k]!);
  const needles: Needle[] = keys.flatMap((key, k) =>
    values[k]!.map((value) => ({
      text: needleSentence(key, value),
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

export const PLANNERS: Record<RulerTask, (ctx: PlanContext) => Plan> = {
  niah_single: (ctx) => planNiah(ctx, { keys: 1, valuesPerKey: 1, queries: 1 }),
  niah_multikey: (ctx) => planNiah(ctx, { keys: 4, valuesPerKey: 1, queries: 1 }),
  niah_multivalue: (ctx) => planNiah(ctx, { keys: 1, valuesPerKey: 4, queries: 1 }),
  niah_multiquery: (ctx) => planNiah(ctx, { keys: 4, valuesPerKey: 1, queries: 4 }),
  variable_tracking: planVariableTracking,
  common_words: planCommonWords,
  frequent_words: planFrequentWords,
  qa: planQa,
};
