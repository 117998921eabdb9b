/**
 * Synthetic task rows made on the fly for training: each row is a fresh RULER-style sample (new haystack span,
 * key and value from the training pool) followed by its answer, with a loss weight per target token. The prompt
 * (haystack) gets `haystackWeight` (0 by default) and the answer `answerWeight`: a model trained on such rows as
 * plain text learns the haystack and never learns to copy the needle, and a fixed pool of samples is learned by
 * heart. Rows are a function of (seed, index), so a resumed run sees the same rows.
 */
import { hashString, Haystack, generateRulerSample, RULER_TASKS, type RulerTask } from '../eval/ruler.ts';
import { makeRng } from '../infer/sampling.ts';
import { UserError } from '../io/errors.ts';
import type { Tokenizer } from '../tokenizer/sentencepiece.ts';

export interface TaskRowOptions {
  /** Share of each batch's rows that are task rows (0 = none, plain text only). */
  fraction: number;
  tasks: RulerTask[];
  /** Loss weight of the answer tokens. */
  answerWeight: number;
  /** Loss weight of the prompt tokens (haystack, needles, question). */
  haystackWeight: number;
  /** Documents the haystacks come from (readDocuments' sources); keep them apart from any test documents. */
  haystack: string;
}

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
   * Row `index`: a task in turn, a random length from a quarter of the row up to what leaves room for the answer,
   * a random needle depth; padded with EOS at weight 0.
   */
  row(index: number): WeightedRow {
    const rng = makeRng(hashString(`task-row|${this.seed}|${index}`));
    const { tokenizer, seq } = this;
    const answerRoom = 48;
    const longest = seq - answerRoom;
    const shortest = Math.min(longest, Math.max(16, Math.floor(seq / 4)));
    for (let attempt = 0; attempt < 2 * this.o.tasks.length; attempt++) {
      const task = this.o.tasks[(index + Math.floor(attempt / 2)) % this.o.tasks.length]!;
      // A drawn length too short for the task's prompt is tried once more at the longest.
      const lengthTokens = attempt % 2 === 0 ? shortest + Math.floor(rng() * (longest - shortest + 1)) : longest;
      const depth = Math.floor(rng() * 101);
      let sample;
      try {
        sample = generateRulerSample({ task, lengthTokens, seed: this.seed, split: 'train', count: 1, depth, tokenizer, haystack: this.haystack }, index);
      } catch (err) {
        if (err instanceof UserError && /too short/.test(err.message)) continue;
        throw err;
      }
      const prompt = tokenizer.encode(sample.input);
      const full = tokenizer.encode(`${sample.input} ${sample.outputs.join(', ')}\n`);
      const answerStart = 1 + prompt.length; // after BOS
      const ids = [tokenizer.bosId, ...full].slice(0, seq + 1);
      const tokens = new Int32Array(seq + 1).fill(tokenizer.eosId);
      tokens.set(ids);
      const weights = new Float32Array(seq);
      // weights[i] is the weight of target tokens[i + 1].
      for (let i = 0; i + 1 < ids.length; i++) weights[i] = i + 1 >= answerStart ? this.o.answerWeight : this.o.haystackWeight;
      return { tokens, weights };
    }
    throw new UserError(`none of the tasks ${this.o.tasks.join(', ')} fits a row of ${seq} tokens; use a longer --seq or other --task-names`);
  }
}
