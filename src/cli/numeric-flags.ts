/**
 * The one check of the CLI's numeric flags, run by main.ts before every command: a value that is not a
 * number (yargs parses `--steps abc` as NaN) is named with the text given, and flags listed in
 * FLAG_RANGES must lie in their range. Commands add only checks that depend on other values.
 */
import { UserError } from '../io/errors.ts';

export interface NumberRange {
  integer?: boolean;
  /** Smallest allowed value. */
  min?: number;
  /** The value must be greater than this. */
  above?: number;
  /** Largest allowed value. */
  max?: number;
  /** The value must be smaller than this. */
  below?: number;
}

const POSITIVE_INTEGER: NumberRange = { integer: true, min: 1 };
const COUNT: NumberRange = { integer: true, min: 0 };
const POSITIVE: NumberRange = { above: 0 };
const NON_NEGATIVE: NumberRange = { min: 0 };

/** Ranges of flags that mean the same in every command that has them. */
export const FLAG_RANGES: Readonly<Record<string, NumberRange>> = {
  'max-new-tokens': POSITIVE_INTEGER,
  'max-answer-tokens': POSITIVE_INTEGER,
  'max-recap-tokens': POSITIVE_INTEGER,
  'max-docs': POSITIVE_INTEGER,
  steps: POSITIVE_INTEGER,
  batch: POSITIVE_INTEGER,
  seq: POSITIVE_INTEGER,
  accum: POSITIVE_INTEGER,
  'save-every': POSITIVE_INTEGER,
  'eval-batches': POSITIVE_INTEGER,
  'eval-every': COUNT,
  batches: COUNT,
  warmup: COUNT,
  vocab: POSITIVE_INTEGER,
  dim: POSITIVE_INTEGER,
  layers: POSITIVE_INTEGER,
  heads: POSITIVE_INTEGER,
  'kv-heads': POSITIVE_INTEGER,
  'hidden-dim': POSITIVE_INTEGER,
  'max-seq': POSITIVE_INTEGER,
  'lora-rank': POSITIVE_INTEGER,
  'sentence-orders': POSITIVE_INTEGER,
  'qa-count': POSITIVE_INTEGER,
  count: POSITIVE_INTEGER,
  'llm-concurrency': POSITIVE_INTEGER,
  'llm-threads': POSITIVE_INTEGER,
  'llm-retries': COUNT,
  'segment-length': POSITIVE_INTEGER,
  'segment-stride': POSITIVE_INTEGER,
  'context-tokens': COUNT,
  'stage1-epochs': COUNT,
  'stage2-epochs': COUNT,
  lr: POSITIVE,
  'rope-theta': POSITIVE,
  'min-lr': NON_NEGATIVE,
  'weight-decay': NON_NEGATIVE,
  clip: NON_NEGATIVE,
  temperature: NON_NEGATIVE,
  'top-k': COUNT,
  'per-sentence': COUNT,
  'top-p': { above: 0, max: 1 },
  'val-fraction': { min: 0, below: 1 },
  'task-fraction': { min: 0, max: 1 },
  'copy-fraction': { min: 0, max: 1 },
  'cpt-task-fraction': { min: 0, max: 1 },
  'cpt-copy-fraction': { min: 0, max: 1 },
  'answer-weight': NON_NEGATIVE,
  'haystack-weight': NON_NEGATIVE,
  'base-steps': POSITIVE_INTEGER,
  'cpt-steps': POSITIVE_INTEGER,
  'base-docs': POSITIVE_INTEGER,
  'cpt-docs': POSITIVE_INTEGER,
  'dev-docs': POSITIVE_INTEGER,
  'heldout-docs': POSITIVE_INTEGER,
  'recall-docs': COUNT,
  seeds: POSITIVE_INTEGER,
  'per-length': POSITIVE_INTEGER,
  'dev-samples': POSITIVE_INTEGER,
  'lift-docs': POSITIVE_INTEGER,
  'recap-thresholds': { above: 0, max: 1 },
  seed: { integer: true },
};

/** What `range` asks for, e.g. "a positive integer" or "a number in (0, 1]". */
export function describeRange(range: NumberRange): string {
  const kind = range.integer ? 'an integer' : 'a number';
  const { min, above, max, below } = range;
  if (range.integer && min === 1 && max === undefined && below === undefined) return 'a positive integer';
  if (min === 0 && max === undefined && below === undefined) return range.integer ? 'a non-negative integer' : 'a number >= 0';
  if (above === 0 && max === undefined && below === undefined) return 'a number > 0';
  const low = min !== undefined ? `[${min}` : above !== undefined ? `(${above}` : '(-inf';
  const high = max !== undefined ? `${max}]` : below !== undefined ? `${below})` : 'inf)';
  if (low === '(-inf' && high === 'inf)') return kind;
  return `${kind} in ${low}, ${high}`;
}

export function inRange(value: number, range: NumberRange): boolean {
  if (!Number.isFinite(value)) return false;
  if (range.integer && !Number.isInteger(value)) return false;
  if (range.min !== undefined && value < range.min) return false;
  if (range.above !== undefined && value <= range.above) return false;
  if (range.max !== undefined && value > range.max) return false;
  if (range.below !== undefined && value >= range.below) return false;
  return true;
}

/** The text given for `--flag` on the command line (`--flag X` or `--flag=X`), for messages. */
function givenText(flag: string, args: readonly string[]): string | undefined {
  const camel = flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
  for (const name of new Set([flag, camel])) {
    for (let i = 0; i < args.length; i++) {
      if (args[i] === `--${name}`) return args[i + 1];
      if (args[i].startsWith(`--${name}=`)) return args[i].slice(name.length + 3);
    }
  }
  return undefined;
}

/**
 * Throws a UserError for the first numeric flag in `argv` (yargs' parsed arguments) that is not a number
 * or is outside its FLAG_RANGES range. `args` are the command-line words, to quote what was typed.
 */
export function checkNumericFlags(argv: Record<string, unknown>, args: readonly string[]): void {
  for (const [key, value] of Object.entries(argv)) {
    if (key === '_' || key === '$0' || /[A-Z]/.test(key)) continue; // camelCase keys repeat the kebab-case ones
    for (const v of Array.isArray(value) ? value : [value]) {
      if (typeof v !== 'number') continue;
      if (Number.isNaN(v)) {
        const text = givenText(key, args);
        throw new UserError(`--${key} must be a number (got ${text === undefined ? 'nothing' : JSON.stringify(text)})`);
      }
      const range = FLAG_RANGES[key];
      if (range !== undefined && !inRange(v, range)) throw new UserError(`--${key} must be ${describeRange(range)} (got ${v})`);
    }
  }
}
