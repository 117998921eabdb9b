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
 *
 * This file generates the samples; ruler-haystack.ts, ruler-tasks.ts, ruler-length.ts and ruler-score.ts hold
 * the haystack, the task plans, the fitting to a length and the scoring.
 */
import { makeRng } from '../core/random.ts';
import type { CorpusDocument } from '../data/corpus.ts';
import { UserError } from '../io/errors.ts';
import { BUNDLED_TOKENIZER_PATH, Tokenizer } from '../tokenizer/sentencepiece.ts';
import { Haystack } from './ruler-haystack.ts';
import { fitToLength } from './ruler-length.ts';
import { hashString, type KeyWords, PLANNERS, type RulerSplit, type RulerTask } from './ruler-tasks.ts';

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
  /** Where needle keys' words come from (default `lists`); `haystack` is for training samples only. */
  keyWords?: KeyWords;
}

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
  return generateRulerSampleTokens(options, index).sample;
}

/** generateRulerSample with the prompt's tokens (without BOS), which fitting its length has already encoded. */
export function generateRulerSampleTokens(options: RulerOptions, index: number): { sample: RulerSample; ids: number[] } {
  checkOptions(options);
  const { task, split, seed } = options;
  const keyWords = options.keyWords ?? 'lists';
  // Haystack words are split by the same hash as the lists, but test keys are defined as the lists' test halves.
  if (keyWords !== 'lists' && split !== 'train') throw new Error(`key words from the ${keyWords} are for training samples only`);
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
    keyWords,
  });
  const { input, ids } = fitToLength(plan, task, options.lengthTokens, options.tokenizer);
  return { sample: { task, split, seed, index, depth: plan.depth, length: ids.length, input, outputs: plan.outputs }, ids };
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
