/**
 * LIFT step 3, auxiliary QA: question/answer pairs about the input, trained as
 * truncated input + question -> answer with the loss on the answer only, so the adapter learns to
 * use what it stored when asked. Pairs come from a JSONL file the user gives, or from an LLM that
 * writes Question/Answer/Evidence from a random window of sentences (evidence must appear in the
 * window verbatim; up to 5 tries per pair), as the official code does, or as cloze pairs made from the input
 * alone (no LLM): the first part of a random sentence as the question, the rest of it as the answer.
 */
import { splitSentences } from '../arl/document.ts';
import { type Rng, shuffleInPlace } from '../core/random.ts';
import { ChatError, type ChatModel } from '../io/chat.ts';
import { UserError } from '../io/errors.ts';
import { readAllJsonObjects, stringField } from '../io/jsonl.ts';
import type { Tokenizer } from '../tokenizer/sentencepiece.ts';
import { headTail, type LiftExample, type PromptPieces } from './contextualized-training.ts';

export interface QaPair {
  question: string;
  answer: string;
}

/** The answering prompt; {context} is the (truncated) input, {question} the question. */
export const DEFAULT_PROMPT_TEMPLATE = '{context}\n\nQuestion: {question}\nAnswer:';

/** Questions from a JSONL file of {question, answer?}; `answer` is required when `needAnswers`. */
export async function readQuestions(path: string, needAnswers: boolean): Promise<{ question: string; answer: string | null }[]> {
  const records = await readAllJsonObjects(path);
  return records.map((line) => {
    const question = stringField(line, 'question');
    if (question.trim() === '') throw new UserError(`${line.where}: field "question" is empty`);
    const present = line.fields.answer !== undefined;
    if (!present && needAnswers) throw new UserError(`${line.where}: field "answer" is missing (auxiliary QA pairs need both question and answer)`);
    return { question, answer: present ? stringField(line, 'answer') : null };
  });
}

export async function readQaPairs(path: string): Promise<QaPair[]> {
  return (await readQuestions(path, true)) as QaPair[];
}

/**
 * [bos] + template with the input cut head + tail so the prompt plus `reserve` tokens fit
 * `window`. The same prompt serves QA training and answering.
 */
export function questionPrompt(tokenizer: Tokenizer, input: number[], question: string, template: string, pieces: PromptPieces, window: number, reserve: number): number[] {
  const at = template.indexOf('{context}');
  if (at < 0) throw new UserError(`--prompt-template must contain {context}: "${template}"`);
  const before = tokenizer.encode(template.slice(0, at).replaceAll('{question}', question));
  const after = tokenizer.encode(template.slice(at + '{context}'.length).replaceAll('{question}', question));
  const budget = window - 1 - before.length - after.length - reserve;
  if (budget < 1) throw new UserError(`the question "${question.slice(0, 40)}" with its prompt needs ${window - budget} of the model's ${window} tokens; shorten it`);
  return [pieces.bos, ...before, ...headTail(input, budget, pieces.ellipsis), ...after];
}

/** A QA training example: prompt, then answer + end of sequence, loss on the answer. */
export function qaExample(tokenizer: Tokenizer, input: number[], qa: QaPair, template: string, pieces: PromptPieces, window: number): LiftExample {
  const answer = [...tokenizer.encode(qa.answer.trim()), pieces.eos].slice(0, Math.floor(window / 2));
  const prompt = questionPrompt(tokenizer, input, qa.question, template, pieces, window, answer.length);
  return { ids: [...prompt, ...answer], lossFrom: prompt.length };
}

export const QA_WINDOW_SENTENCES = 16;
export const QA_PER_INPUT = 10;
export const QA_TRIES = 5;

function qaRequest(passage: string): string {
  return [
    'Read the passage and write one question that it answers, the short answer, and the evidence: a sentence or phrase copied verbatim from the passage that supports the answer.',
    'Reply in exactly this form:\nQuestion: ...\nAnswer: ...\nEvidence: ...',
    `Passage:\n${passage}`,
  ].join('\n\n');
}

const squash = (s: string) => s.replace(/\s+/g, ' ').trim();

/** Parses a Question/Answer/Evidence reply; null unless all three are there and the evidence is in `passage`. */
export function parseQaReply(reply: string, passage: string): QaPair | null {
  const field = (name: string) => new RegExp(`^\\s*\\**${name}\\**\\s*:\\s*(.+)$`, 'im').exec(reply)?.[1].trim() ?? '';
  const question = field('Question');
  const answer = field('Answer');
  const evidence = field('Evidence').replace(/^["“]|["”]$/g, '');
  if (!question || !answer || !evidence) return null;
  return squash(passage).includes(squash(evidence)) ? { question, answer } : null;
}

/**
 * `count` QA pairs from random windows of `windowSentences` sentences of `text`; each pair gets up
 * to QA_TRIES requests (a reply without verbatim evidence or a failed call is a failed try). Returns the pairs made and how many windows gave none.
 */
export async function generateQaPairs(writer: Pick<ChatModel, 'complete'>, text: string, rng: () => number, count = QA_PER_INPUT, windowSentences = QA_WINDOW_SENTENCES): Promise<{ pairs: QaPair[]; failed: number }> {
  const sentences = splitSentences(text);
  const pairs: QaPair[] = [];
  let failed = 0;
  for (let i = 0; i < count; i++) {
    const start = Math.floor(rng() * Math.max(1, sentences.length - windowSentences + 1));
    const passage = sentences.slice(start, start + windowSentences).join('').trim();
    let pair: QaPair | null = null;
    for (let attempt = 0; attempt < QA_TRIES && !pair; attempt++) {
      try {
        pair = parseQaReply(await writer.complete([{ role: 'user', content: qaRequest(passage) }], { maxTokens: 256, temperature: 0.7 }), passage);
      } catch (err) {
        if (!(err instanceof ChatError)) throw err; // the client has retried already: this try failed
      }
    }
    if (pair) pairs.push(pair);
    else failed++;
  }
  return { pairs, failed };
}

export interface ClozeOptions {
  /** Pairs to make (fewer when the input has fewer usable sentences). */
  count: number;
  /** Tokens of the sentence's first part quoted in the question, at most (the words just before the split). */
  cueTokens: number;
  /** Tokens of the answer, the rest of the sentence, at most (its first words). */
  answerTokens: number;
}

export const CLOZE_DEFAULTS: ClozeOptions = { count: QA_PER_INPUT, cueTokens: 32, answerTokens: 16 };
/** Sentences of fewer words are not used: the cue and the answer get two words each at least. */
const CLOZE_MIN_WORDS = 4;

export const clozeQuestion = (cue: string): string => `What follows "${cue}" in the text?`;

/** The longest run of `words` (from the front, or from the back with `fromEnd`) that encodes to at most `cap` tokens. */
function wordsWithin(tokenizer: Pick<Tokenizer, 'encode'>, words: readonly string[], cap: number, fromEnd: boolean): string {
  let kept = '';
  // Every word is at least one token, so no more than `cap` of them can fit.
  for (let n = 1; n <= Math.min(words.length, cap); n++) {
    const text = (fromEnd ? words.slice(words.length - n) : words.slice(0, n)).join(' ');
    if (tokenizer.encode(text).length > cap) break;
    kept = text;
  }
  return kept;
}

/**
 * Cloze QA pairs from `text` alone, with no LLM: sentences of at least four words are taken in a random order
 * (`rng`, so a seed gives the same pairs), each split after its middle word; the question quotes the words before
 * the split (`cueTokens` at most, those next to the split), the answer is the rest of the sentence (its first
 * `answerTokens` at most). Nothing but the input is seen, so no pair is made from a test question or answer.
 */
export function clozeQaPairs(text: string, tokenizer: Pick<Tokenizer, 'encode'>, rng: Rng, options: Partial<ClozeOptions> = {}): QaPair[] {
  const o = { ...CLOZE_DEFAULTS, ...options };
  for (const key of ['count', 'cueTokens', 'answerTokens'] as const) {
    if (!Number.isInteger(o[key]) || o[key] < 1) throw new UserError(`cloze QA: ${key} must be a positive integer (got ${o[key]})`);
  }
  const sentences = splitSentences(text).map((s) => s.split(/\s+/).filter(Boolean)).filter((words) => words.length >= CLOZE_MIN_WORDS);
  const pairs: QaPair[] = [];
  for (const words of shuffleInPlace(rng, sentences)) {
    if (pairs.length === o.count) break;
    const split = Math.ceil(words.length / 2);
    const cue = wordsWithin(tokenizer, words.slice(0, split), o.cueTokens, true);
    const answer = wordsWithin(tokenizer, words.slice(split), o.answerTokens, false);
    if (cue && answer) pairs.push({ question: clozeQuestion(cue), answer });
  }
  return pairs;
}
