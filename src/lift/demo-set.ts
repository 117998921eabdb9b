/**
 * The synthetic set of `arl lift-demo` (deterministic from a seed): documents that each state the
 * code word of each of 45 people once, in a random order of people. The base model is trained on
 * other documents of the same kind in which some facts are stated again a few sentences later, so
 * it learns to recall a person's word from its context (in-context retrieval keyed on the person,
 * which the adapter's memory then builds on) but not any demo document's facts; a fact can then
 * only be recalled from the document itself. Questions ask about people whose sentence lies
 * outside the head + tail part of the document that fits the answering prompt.
 */
import { makeRng, shuffleInPlace } from '../core/random.ts';

const PEOPLE = [
  'John', 'Mary', 'James', 'Robert', 'William', 'Charles', 'George', 'Frank', 'Henry', 'Thomas', 'Richard', 'Jack', 'Sam',
  'Joseph', 'Edward', 'Paul', 'Peter', 'David', 'Arthur', 'Walter', 'Harry', 'Anna', 'Helen', 'Ruth', 'Alice', 'Martha',
  'Margaret', 'Jane', 'Susan', 'Louise', 'Grace', 'Carl', 'Fred', 'Albert', 'Ralph', 'Harold', 'Roy', 'Ben', 'Tom', 'Jim',
  'Bill', 'Joe', 'Kate', 'Rose', 'Jean',
];
/** Single tokens of the bundled tokenizer, so an answer is one greedy step. */
const CODE_WORDS = ['red', 'blue', 'green', 'white', 'black', 'horse', 'dog', 'cat', 'bird', 'Chicago', 'London', 'Berlin', 'Washington', 'river', 'church', 'school', 'hotel', 'bridge', 'market'];

export interface DemoFact {
  person: string;
  word: string;
}

export interface DemoDocument {
  text: string;
  facts: DemoFact[];
}

export const factSentence = (f: DemoFact) => `The code word of ${f.person} is ${f.word}.`;
/** The cloze question for a fact; the answer is the next word. */
export const factQuestion = (person: string) => `The code word of ${person} is`;
export const DEMO_PROMPT_TEMPLATE = '{context}\n{question}';

/** How far back (in facts) a repeated fact of a base-training document lies: well inside the window. */
const REPEAT_REACH = 12;

/**
 * A document of all 45 people's code words in a random order. With `repeatShare` > 0 (the base
 * model's training documents), after each fact, with that probability, one of the previous
 * REPEAT_REACH facts is stated again: the base model learns to look a person's word up in context.
 */
export function demoDocument(seed: number, repeatShare = 0): DemoDocument {
  const rng = makeRng(seed);
  const people = shuffleInPlace(rng, [...PEOPLE]);
  const facts = people.map((person) => ({ person, word: CODE_WORDS[Math.floor(rng() * CODE_WORDS.length)] }));
  const sentences: string[] = [];
  facts.forEach((f, i) => {
    sentences.push(factSentence(f));
    if (i > 0 && rng() < repeatShare) sentences.push(factSentence(facts[i - 1 - Math.floor(rng() * Math.min(i, REPEAT_REACH))]));
  });
  return { text: sentences.join(' '), facts };
}

/** A chance-level guess is right 1 time in this many. */
export const CODE_WORD_COUNT = CODE_WORDS.length;
