/**
 * Synthetic task rows made on the fly for training: each row is a fresh RULER-style sample (new haystack span,
 * key and value from the training pool) followed by its answer, with a loss weight per target token. The prompt
 * (haystack) gets `haystackWeight` (0 by default) and the answer `answerWeight`, scaled so that the row weighs as
 * much as a row of text: a model trained on such rows as plain text learns the haystack and never learns to copy
 * the needle, and a fixed pool of samples is learned by heart. Rows are a function of (seed, index), so a resumed run sees the same rows.
 */
import { generateRulerSample } from '../eval/ruler.ts';
import { Haystack } from '../eval/ruler-haystack.ts';
import { hashString, RULER_TASKS, type RulerTask } from '../eval/ruler-tasks.ts';
import { makeRng } from '../core/random.ts';
import { UserError } from '../io/errors.ts';
import type { Tokenizer } from '../tokenizer/sentencepiece.ts';

export interface TaskRowOptions {
  /** Share of each batch's rows that are task rows (0 = none, plain text only). */
  fraction: number;
  tasks: RulerTask[];
  /** Loss weight of the answer tokens, relative to the prompt's (each row's weights are scaled to sum to seq). */
  answerWeight: number;
  /** Loss weight of the prompt tokens (haystack, needles, question), relative to the answer's. */
  haystackWeight: number;
  /** Documents the haystacks come from (readDocuments' sources); keep them apart from any test documents. */
  haystack: string;
}

/** Shortest sample drawn, in tokens: about a RULER needle prompt with a sentence or two of haystack. */
const MIN_SAMPLE_TOKENS = 96;

export const DEFAULT_TASK_ROWS: TaskRowOptions = {
  fraction: 0,
  tasks: ['niah_single', 'niah_multikey', 'niah_multivalue', 'niah_multiquery'],
  answerWeight: 5,
  haystackWeight: 0,
  haystack: 'brown',
};

export function validateTaskRowOptions(o: TaskRowOptions): void {
  if (!(o.fraction >= 0 && o.fraction <= 1)) throw new UserError(`--task-fraction must be in [0, 1], the share of task rows per batch (got ${o.fraction})`);
  if (!(o.answerWeight >= 0) || !(o.haystackWeight >= 0) || o.answerWeight + o.haystackWeight === 0) {
    throw new UserError(`--answer-weight and --haystack-weight must be non-negative and not both 0 (got ${o.answerWeight}, ${o.haystackWeight})`);
  }
  const unknown = o.tasks.filter((t) => !(RULER_TASKS as readonly string[]).includes(t));
  if (o.tasks.length === 0 || unknown.length > 0) throw new UserError(`--task-names must name RULER tasks (${RULER_TASKS.join(', ')}); got ${o.tasks.join(', ') || 'none'}`);
}

/** One training row: seq+1 tokens (x is the first seq, y the last seq) and a weight per target. */
export interface WeightedRow {
  tokens: Int32Array;
  weights: Float32Array;
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

  /** Task rows in a batch of `batch` rows. */
  rowsPerBatch(batch: number): number {
    return Math.round(this.o.fraction * batch);
  }

  /**
   * Row `index`: samples packed one after another (BOS, then each prompt and its answer line) until the row is
   * full, each of a log-uniform random length up to what is left (less room for its answer). Tasks in turn,
   * random needle depths; the tail is EOS at weight 0. Packing puts more answers, the only weighted tokens, in
   * each step.
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
      const sample = this.sample(index * 64 + k, length, longest, rng);
      if (!sample) break;
      // The answer is encoded on its own: SentencePiece pieces never span the space before it.
      const prompt = tokenizer.encode(sample.input);
      const answer = tokenizer.encode(`${sample.outputs.join(', ')}\n`);
      const sampleStart = ids.length;
      const answerStart = sampleStart + prompt.length;
      for (const id of prompt) ids.push(id);
      for (const id of answer) ids.push(id);
      for (let i = sampleStart - 1; i + 1 < Math.min(ids.length, seq + 1); i++) weights[i] = i + 1 >= answerStart ? this.o.answerWeight : this.o.haystackWeight;
    }
    if (ids.length === 1) throw new UserError(`none of the tasks ${this.o.tasks.join(', ')} fits a row of ${seq} tokens; use a longer --seq or other --task-names`);
    // A task row weighs as much in the batch's loss as a text row (seq tokens at weight 1): the weights only
    // share that out. Left unscaled, a row's few answer tokens would be a few percent of the gradient.
    const total = weights.reduce((a, b) => a + b, 0);
    if (total > 0) for (let i = 0; i < seq; i++) weights[i]! *= seq / total;
    const tokens = new Int32Array(seq + 1).fill(tokenizer.eosId);
    tokens.set(ids.slice(0, seq + 1));
    return { tokens, weights };
  }

  /** A training sample of about `lengthTokens`, lengthened up to `longest` while its task's prompt does not fit; null if none fits. */
  private sample(index: number, lengthTokens: number, longest: number, rng: () => number) {
    for (let t = 0; t < this.o.tasks.length; t++) {
      const task = this.o.tasks[(index + t) % this.o.tasks.length]!;
      for (let length = Math.min(lengthTokens, longest); ; length = Math.min(longest, Math.ceil(length * 1.5))) {
        try {
          return generateRulerSample({ task, lengthTokens: length, seed: this.seed, split: 'train', count: 1, depth: Math.floor(rng() * 101), tokenizer: this.tokenizer, haystack: this.haystack }, index);
        } catch (err) {
          if (!(err instanceof UserError && /too short/.test(err.message))) throw err;
          if (length === longest) break;
        }
      }
    }
    return null;
  }
}
