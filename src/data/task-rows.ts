/**
 * Synthetic rows made on the fly for training, with a loss weight per target token.
 * - Task rows: each is a fresh RULER-style sample (new haystack span, key and value from the training pool)
 *   followed by its answer. The prompt (haystack) gets `haystackWeight` (0 by default) and the answer
 *   `answerWeight`, against weight 1 for every token of a text row (one weighted mean over the batch). A model
 *   trained on such rows as plain text learns the haystack and never learns to copy the needle, and a fixed pool
 *   of samples is learned by heart. Rows are a function of (seed, index), so a resumed run sees the same rows.
 * - Copy rows: a span of training text written twice, loss on the repeat. A needle's seven digits give a step
 *   only a few hundred copy targets, too sparse for the model to form the attention that copies (induction
 *   heads) within a few thousand steps; a copy row gives hundreds per row. Measured with the same rows in
 *   PyTorch (29.4M Llama, window 512, 1,200 steps): 0 of 100 single needles without copy rows, 98 of 100 with a
 *   quarter of each batch made of them.
 */
import { generateRulerSampleTokens } from '../eval/ruler.ts';
import { Haystack } from '../eval/ruler-haystack.ts';
import { hashString, KEY_WORDS, type KeyWords, RULER_TASKS, type RulerTask } from '../eval/ruler-tasks.ts';
import { makeRng } from '../core/random.ts';
import { UserError } from '../io/errors.ts';
import type { Tokenizer } from '../tokenizer/sentencepiece.ts';

export interface TaskRowOptions {
  /** Share of each batch's rows that are task rows (0 = none, plain text only). */
  fraction: number;
  /** Share of each batch's rows that are copy rows (training text written twice, loss on the repeat). */
  copyFraction: number;
  tasks: RulerTask[];
  /** Loss weight of the answer tokens, relative to a text token's 1. */
  answerWeight: number;
  /** Loss weight of the prompt tokens (haystack, needles, question), relative to a text token's 1. */
  haystackWeight: number;
  /** Documents the haystacks come from (readDocuments' sources); keep them apart from any test documents. */
  haystack: string;
  /** Where the needle keys' words come from (ruler-tasks.ts KeyWords). */
  keyWords: KeyWords;
}

/** Shortest sample drawn, in tokens: about a RULER needle prompt with a sentence or two of haystack. */
const MIN_SAMPLE_TOKENS = 96;

export const DEFAULT_TASK_ROWS: TaskRowOptions = {
  fraction: 0,
  copyFraction: 0,
  tasks: ['niah_single', 'niah_multikey', 'niah_multivalue', 'niah_multiquery'],
  answerWeight: 5,
  haystackWeight: 0,
  haystack: 'brown',
  keyWords: 'lists',
};

export function validateTaskRowOptions(o: TaskRowOptions): void {
  if (!(o.fraction >= 0 && o.fraction <= 1)) throw new UserError(`--task-fraction must be in [0, 1], the share of task rows per batch (got ${o.fraction})`);
  if (!(o.copyFraction >= 0 && o.fraction + o.copyFraction <= 1)) {
    throw new UserError(`--copy-fraction must be at least 0, and with --task-fraction at most 1 (got ${o.copyFraction} + ${o.fraction})`);
  }
  if (!(o.answerWeight >= 0) || !(o.haystackWeight >= 0) || o.answerWeight + o.haystackWeight === 0) {
    throw new UserError(`--answer-weight and --haystack-weight must be non-negative and not both 0 (got ${o.answerWeight}, ${o.haystackWeight})`);
  }
  if (!(KEY_WORDS as readonly string[]).includes(o.keyWords)) throw new UserError(`--task-key-words must be one of ${KEY_WORDS.join(', ')} (got ${o.keyWords})`);
  const unknown = o.tasks.filter((t) => !(RULER_TASKS as readonly string[]).includes(t));
  if (o.tasks.length === 0 || unknown.length > 0) throw new UserError(`--task-names must name RULER tasks (${RULER_TASKS.join(', ')}); got ${o.tasks.join(', ') || 'none'}`);
}

/** One training row: seq+1 tokens (x is the first seq, y the last seq) and a weight per target. */
export interface WeightedRow {
  tokens: Int32Array;
  weights: Float32Array;
}

/**
 * How many of a batch's `batch` rows are task rows and copy rows. Both are rounded, and with an odd batch they
 * could add up to more rows than it has: copy rows give way.
 */
export function syntheticRowsPerBatch(o: TaskRowOptions, batch: number): { task: number; copy: number } {
  const task = Math.round(o.fraction * batch);
  return { task, copy: Math.min(Math.round(o.copyFraction * batch), batch - task) };
}

/**
 * A copy row from `text` (at least ceil((seq+1)/2) tokens of training text): those tokens, then the same again,
 * cut to seq+1. Targets in the repeat weigh 1, except its first token, which nothing announces.
 */
export function copyRow(text: Int32Array, seq: number): WeightedRow {
  const half = Math.ceil((seq + 1) / 2);
  const tokens = new Int32Array(seq + 1);
  tokens.set(text.subarray(0, half));
  tokens.set(text.subarray(0, seq + 1 - half), half);
  const weights = new Float32Array(seq);
  weights.fill(1, half); // weights[i] is the weight of target tokens[i + 1]
  return { tokens, weights };
}

export class TaskRows {
  private constructor(
    private readonly o: TaskRowOptions,
    private readonly tokenizer: Tokenizer,
    private readonly haystack: Haystack,
    private readonly seq: number,
    private readonly seed: number,
  ) {}

  static async open(o: TaskRowOptions, tokenizer: Tokenizer, seq: number, seed: number, haystack?: Haystack): Promise<TaskRows> {
    validateTaskRowOptions(o);
    return new TaskRows(o, tokenizer, haystack ?? (await Haystack.load(o.haystack)), seq, seed);
  }

  /**
   * Row `index`: samples packed one after another (BOS, then each prompt and its answer line) until the row is
   * full, each of a log-uniform random length up to what is left (less room for its answer). Tasks in turn,
   * random needle depths; the tail is EOS at weight 0. Packing puts more answers, the only weighted tokens (at
   * the default haystack weight 0), in each step.
   */
  row(index: number): WeightedRow {
    const rng = makeRng(hashString(`task-row|${this.seed}|${index}`));
    const { tokenizer, seq } = this;
    const ids = [tokenizer.bosId];
    const weights = new Float32Array(seq); // weights[i] is the weight of target ids[i + 1]
    const answerRoom = 48;
    const shortest = Math.min(MIN_SAMPLE_TOKENS, seq - answerRoom);
    for (let k = 0; seq - ids.length - answerRoom >= shortest; k++) {
      const longest = seq - ids.length - answerRoom;
      // Log-uniform lengths: many short haystacks, where copying the needle is first learned, and some long ones.
      const length = Math.round(Math.exp(Math.log(shortest) + rng() * (Math.log(longest) - Math.log(shortest))));
      const drawn = this.sample(index * 64 + k, length, longest, rng);
      if (!drawn) break;
      const { sample, ids: prompt } = drawn;
      // The answer is encoded on its own: SentencePiece pieces never span the space before it.
      const answer = tokenizer.encode(`${sample.outputs.join(', ')}\n`);
      const sampleStart = ids.length;
      const answerStart = sampleStart + prompt.length;
      for (const id of prompt) ids.push(id);
      for (const id of answer) ids.push(id);
      for (let i = sampleStart - 1; i + 1 < Math.min(ids.length, seq + 1); i++) weights[i] = i + 1 >= answerStart ? this.o.answerWeight : this.o.haystackWeight;
    }
    if (ids.length === 1) throw new UserError(`none of the tasks ${this.o.tasks.join(', ')} fits a row of ${seq} tokens; use a longer --seq or other --task-names`);
    const tokens = new Int32Array(seq + 1).fill(tokenizer.eosId);
    tokens.set(ids.slice(0, seq + 1));
    return { tokens, weights };
  }

  /** A training sample of about `lengthTokens` and its prompt's tokens, lengthened up to `longest` while its task's prompt does not fit; null if none fits. */
  private sample(index: number, lengthTokens: number, longest: number, rng: () => number) {
    for (let t = 0; t < this.o.tasks.length; t++) {
      const task = this.o.tasks[(index + t) % this.o.tasks.length]!;
      for (let length = Math.min(lengthTokens, longest); ; length = Math.min(longest, Math.ceil(length * 1.5))) {
        try {
          return generateRulerSampleTokens({ task, lengthTokens: length, seed: this.seed, split: 'train', count: 1, depth: Math.floor(rng() * 101), tokenizer: this.tokenizer, haystack: this.haystack, keyWords: this.o.keyWords }, index);
        } catch (err) {
          if (!(err instanceof UserError && /too short/.test(err.message))) throw err;
          if (length === longest) break;
        }
      }
    }
    return null;
  }
}
