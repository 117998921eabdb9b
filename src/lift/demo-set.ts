/**
 * The synthetic set of `arl lift-demo` (deterministic from a seed): documents that each state the
 * code word of each of 45 people once, always in the same order of people. The base model is trained on other documents of
 * the same kind, so it knows the form but not any document's facts; a fact can then only be
 * recalled from the document itself. Questions ask about people whose sentence lies outside the
 * head + tail part of the document that fits the answering prompt.
 */
import { makeRng } from '../infer/sampling.ts';

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

export function demoDocument(seed: number): DemoDocument {
  const rng = makeRng(seed);
  // Always the same order of people: the base model learns it, so only the code words are new in a document.
  const facts = PEOPLE.map((person) => ({ person, word: CODE_WORDS[Math.floor(rng() * CODE_WORDS.length)] }));
  return { text: facts.map(factSentence).join(' '), facts };
}

/** A chance-level guess is right 1 time in this many. */
export const CODE_WORD_COUNT = CODE_WORDS.length;
