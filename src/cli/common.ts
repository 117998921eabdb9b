/** Options and helpers shared by the CLI commands. */
import chalk from 'chalk';
import { type BackendChoice, BACKENDS, type BackendName, selectBackend } from '../backend.ts';
import { DEFAULT_TEXT_FIELD } from '../data/corpus.ts';
import { checkSameTokenizer } from '../data/tokenizer-match.ts';
import { loadModel } from '../io/checkpoint.ts';
import { UserError } from '../io/errors.ts';
import type { LlamaModel } from '../model/llama.ts';
import { type Precision, PRECISIONS } from '../ops/matmul.ts';
import { BUNDLED_TOKENIZER_PATH, Tokenizer } from '../tokenizer/sentencepiece.ts';
import { defineOptions } from './options.ts';

/** The flag of every command that runs a model. */
export const BACKEND_FLAGS = defineOptions({
  backend: { choices: BACKENDS, default: 'auto', describe: 'tfjs backend (auto takes the fastest that loads)' },
});

/** The precision of the large products (arl train, arl bench, arl recap-data's scoring). */
export const PRECISION_FLAGS = defineOptions({
  precision: {
    choices: PRECISIONS,
    default: 'fp32',
    describe: 'mixed: f16 operands with f32 accumulation on the tensor cores for the projections and the LM head, f32 master weights, dynamic loss scaling (webgpu with subgroup matrices; checked at start-up, refused otherwise)',
  },
});

/** The field of each JSON line that holds a document's text (.jsonl corpora), as HF scripts' --text_column. */
export const TEXT_FIELD_FLAGS = defineOptions({
  'text-field': { type: 'string', default: DEFAULT_TEXT_FIELD, describe: 'field of each JSON line holding the document text (.jsonl corpora)' },
});

/** Set from the global --verbose flag (main.ts) before a command runs. */
let verbose = false;

export function setVerbose(on: boolean): void {
  verbose = on;
}

/** `backend: wasm (2 threads)`; with `verbose` a second line says why it was taken and what failed to load. */
export function backendLines(choice: BackendChoice, verbose: boolean): string {
  const line = `backend: ${choice.name} (${choice.detail})`;
  return verbose ? `${line}\nbackend: ${choice.reason}` : line;
}

/**
 * Initialises the backend and says which one was taken, and with --verbose why (on stderr, so --json output stays
 * clean). Mixed precision needs Dawn's f16 toggles and features, which can only be asked for when the device is made.
 */
export async function startBackend(name: BackendName, precision: Precision = 'fp32'): Promise<BackendChoice> {
  const choice = await selectBackend(name, precision === 'mixed' ? { f16: true } : {});
  process.stderr.write(chalk.dim(`${backendLines(choice, verbose)}\n`));
  return choice;
}

/**
 * Loads a checkpoint and its tokenizer: --tokenizer, else the checkpoint's own, else (when text
 * must be encoded) the bundled one. Without a tokenizer to hand and none needed, tokenizer is null.
 * A --tokenizer that differs from the checkpoint's own is refused.
 */
export async function loadModelAndTokenizer(
  checkpoint: string,
  opts: { tokenizer?: string; needTokenizer: boolean },
): Promise<{ model: LlamaModel; tokenizer: Tokenizer | null; checkpointDir: string }> {
  const { model, ckpt } = loadModel(checkpoint);
  const tokenizerPath = opts.tokenizer ?? ckpt.tokenizerPath ?? (opts.needTokenizer ? BUNDLED_TOKENIZER_PATH : null);
  if (tokenizerPath === null) return { model, tokenizer: null, checkpointDir: ckpt.dir };
  let tokenizer: Tokenizer;
  try {
    tokenizer = await Tokenizer.load(tokenizerPath);
    if (opts.tokenizer !== undefined) checkSameTokenizer(ckpt.dir, { tokenizer: opts.tokenizer, sha256: tokenizer.sha256 });
  } catch (err) {
    model.dispose();
    throw err;
  }
  if (tokenizer.vocabSize > model.config.vocabSize) {
    model.dispose();
    throw new UserError(
      `${tokenizerPath}: tokenizer has ${tokenizer.vocabSize} tokens but the model in ${ckpt.dir} has a vocabulary of ${model.config.vocabSize}; pass --tokenizer with the tokenizer the model was trained with`,
    );
  }
  return { model, tokenizer, checkpointDir: ckpt.dir };
}

/**
 * `value` with every camelCase object key in snake_case (maxContext -> max_context), recursively: the style
 * of all JSON the CLI prints. Keys that are a paper's symbols (S, W, K) stay as they are.
 */
export function snakeCaseKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(snakeCaseKeys);
  if (value === null || typeof value !== 'object' || Object.getPrototypeOf(value) !== Object.prototype) return value;
  return Object.fromEntries(Object.entries(value).map(([key, v]) => [key.replace(/([a-z0-9])([A-Z])/g, (_, before: string, capital: string) => `${before}_${capital.toLowerCase()}`), snakeCaseKeys(v)]));
}

/** Prints `value` as one line of JSON on stdout, keys in snake_case. */
export function printJson(value: unknown): void {
  console.log(JSON.stringify(snakeCaseKeys(value)));
}

export function parseIdList(text: string, flag: string): number[] {
  const ids = text.split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  if (ids.length === 0 || ids.some((n) => !Number.isInteger(n) || n < 0)) throw new UserError(`${flag}: expected comma-separated non-negative integers, got "${text}"`);
  return ids;
}
