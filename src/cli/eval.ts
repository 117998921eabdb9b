/** `arl eval`: loss and perplexity on a prepared split, or perplexity and LongPPL over documents (--corpus). */
import { noKeyTokensReason, SELECTIONS, type Selection } from '../arl/key-tokens.ts';
import { readPrepareMeta, type Split } from '../data/format.ts';
import { checkSameTokenizer } from '../data/tokenizer-match.ts';
import { evaluateLongPpl, type LongPplReport } from '../eval/longppl.ts';
import { evaluateLoss } from '../eval/perplexity.ts';
import { loadModel, resolveCheckpointDir } from '../io/checkpoint.ts';
import { UserError } from '../io/errors.ts';
import type { LlamaModel } from '../model/llama.ts';
import { keyTokenOptionsFromArgs } from './arl.ts';
import { DEFAULT_PREPARED_DIR } from './data.ts';
import { BACKEND_FLAGS, loadModelAndTokenizer, printJson, startBackend, TEXT_FIELD_FLAGS } from './common.ts';
import { type ArgsOf, defineCommand, defineOptions } from './options.ts';
import { ProgressBar } from './progress.ts';

const EVAL_FLAGS = defineOptions({
  checkpoint: { type: 'string', demandOption: true, describe: 'checkpoint or run directory to evaluate' },
  data: { type: 'string', default: DEFAULT_PREPARED_DIR, describe: 'prepared data directory (arl prepare) for the loss over a split' },
  split: { choices: ['train', 'val'], default: 'val', describe: 'which prepared split to score' },
  batches: { type: 'number', default: 0, describe: 'number of batches (0 = the whole split once)' },
  batch: { type: 'number', default: 8, describe: 'sequences per batch (with --corpus: windows per forward pass)' },
  seq: { type: 'number', describe: "sequence length (default: the model's window, at most 256)" },
  corpus: { type: 'string', describe: 'held-out documents ("brown", .txt, folder, .jsonl): report perplexity and LongPPL over them' },
  ...TEXT_FIELD_FLAGS,
  evaluator: { type: 'string', describe: 'checkpoint that chooses the key tokens (default: --checkpoint itself)' },
  tokenizer: { type: 'string', describe: "SentencePiece model (default: the checkpoint's, else the bundled one)" },
  'max-docs': { type: 'number', describe: 'only the first N documents of --corpus' },
  short: { type: 'number', describe: "S, short context of the dual pass (default: a quarter of the evaluator's window)" },
  chunk: { type: 'number', describe: 'W, targets per short-context forward (default: window - S)' },
  'long-stride': { type: 'number', describe: 'start-to-start distance of long-context windows (default: the larger of S and half of W)' },
  select: { choices: SELECTIONS, default: 'threshold', describe: 'key tokens: threshold (LongPPL: LSG > alpha and long log-prob > beta), topk or both' },
  'top-k': { type: 'number', describe: 'K key tokens per document for topk/both (default 8)' },
  alpha: { type: 'number', describe: 'LSG threshold, nats (default 2)' },
  beta: { type: 'number', describe: 'long log-prob threshold (default -2)' },
  json: { type: 'boolean', default: false, describe: 'print the report as one JSON object (snake_case keys) instead of the summary' },
});

type EvalArgs = ArgsOf<typeof EVAL_FLAGS & typeof BACKEND_FLAGS>;

/** One fact a line, labels padded to one width: the readable form of eval's report. */
function table(rows: [string, string][]): string {
  const width = Math.max(...rows.map(([label]) => label.length));
  return rows.map(([label, value]) => `${label.padEnd(width)}  ${value}`).join('\n');
}

const fixed = (value: number | null, digits: number): string => (value === null ? 'n/a' : value.toFixed(digits));

/** The readable summary of `arl eval` on a prepared split (the fields --json prints). */
export function splitSummary(r: { checkpoint: string; data: string; split: Split; seq: number; loss: number; perplexity: number; tokens: number }): string {
  return table([
    ['model', r.checkpoint],
    ['data', `${r.data} (${r.split} split)`],
    ['tokens scored', `${r.tokens.toLocaleString('en-US')} in windows of ${r.seq}`],
    ['perplexity', `${fixed(r.perplexity, 2)} (loss ${fixed(r.loss, 4)} nats/token)`],
  ]);
}

/** The readable summary of `arl eval --corpus` (the fields --json prints); says why LongPPL is missing when it is. */
export function documentsSummary(r: LongPplReport & { checkpoint: string; evaluator: string; corpus: string; select: Selection; longppl_note?: string }): string {
  const longppl = r.longppl === null ? `n/a (${r.key_tokens} key tokens): ${r.longppl_note ?? 'no key tokens'}` : `${fixed(r.longppl, 2)} over ${r.key_tokens.toLocaleString('en-US')} key tokens (--select ${r.select})`;
  return table([
    ['model', r.checkpoint],
    ...(r.evaluator === r.checkpoint ? [] : [['key tokens by', r.evaluator] as [string, string]]),
    ['data', `${r.corpus} (${r.documents} documents)`],
    ['tokens scored', r.tokens_scored.toLocaleString('en-US')],
    ['perplexity', `${fixed(r.perplexity, 2)} (loss ${fixed(r.loss, 4)} nats/token)`],
    ['LongPPL', longppl],
  ]);
}

async function evaluateSplit(args: EvalArgs): Promise<void> {
  const { model, ckpt } = loadModel(args.checkpoint);
  try {
    checkSameTokenizer(ckpt.dir, { data: args.data, meta: readPrepareMeta(args.data) });
    const seq = args.seq ?? Math.min(model.config.maxSeq, 256);
    if (seq > model.config.maxSeq) throw new UserError(`--seq ${seq} exceeds the model's context window ${model.config.maxSeq}`);
    const report = await evaluateLoss(model, args.data, args.split, { batches: args.batches, batch: args.batch, seq });
    const result = { checkpoint: ckpt.dir, data: args.data, split: args.split, seq, ...report };
    if (args.json) printJson(result);
    else console.log(splitSummary(result));
  } finally {
    model.dispose();
  }
}

async function evaluateDocuments(args: EvalArgs & { corpus: string }): Promise<void> {
  // Flags are checked against the evaluator's window (it picks the key tokens) before any weights load.
  const options = keyTokenOptionsFromArgs(args, args.evaluator ?? args.checkpoint);
  const { model, tokenizer, checkpointDir } = await loadModelAndTokenizer(args.checkpoint, { tokenizer: args.tokenizer, needTokenizer: true });
  let evaluator: LlamaModel | undefined;
  try {
    const evaluatorDir = args.evaluator === undefined ? checkpointDir : resolveCheckpointDir(args.evaluator);
    if (args.evaluator !== undefined) evaluator = loadModel(args.evaluator).model;
    const bar = args.maxDocs === undefined ? null : new ProgressBar(args.maxDocs, 'longppl');
    const report = await evaluateLongPpl({
      model,
      evaluator,
      tokenizer: tokenizer!,
      corpus: args.corpus,
      textField: args.textField,
      options,
      maxDocs: args.maxDocs,
      onDocument: (documents, r) => bar?.update(documents, `${r.tokens_scored} tokens, ${r.key_tokens} key tokens`),
    });
    const settings = { S: options.shortContext, W: options.chunk, long_stride: options.longStride, select: options.select, K: options.topK, alpha: options.alpha, beta: options.beta };
    const note = report.longppl === null ? { longppl_note: noKeyTokensReason(options) } : {};
    const result = { checkpoint: checkpointDir, evaluator: evaluatorDir, corpus: args.corpus, ...settings, ...report, ...note };
    if (!args.json) {
      console.log(documentsSummary(result));
      return;
    }
    printJson(result);
    if (report.longppl === null) process.stderr.write(`LongPPL is null: ${noKeyTokensReason(options)}\n`);
  } finally {
    model.dispose();
    evaluator?.dispose();
  }
}

export const evalCommand = defineCommand({
  command: 'eval',
  describe: 'Loss and perplexity on a prepared split; with --corpus, perplexity and LongPPL over documents (a summary, or JSON with --json)',
  options: EVAL_FLAGS,
  shared: BACKEND_FLAGS,
  examples: [
    ['$0 eval --checkpoint checkpoints/demo', 'validation perplexity of the demo model'],
    ['$0 eval --checkpoint runs/cpt --corpus heldout.jsonl --evaluator runs/base', 'perplexity and LongPPL, key tokens chosen by runs/base'],
  ],
  handler: async (args) => {
    if (args.corpus === undefined && args.evaluator !== undefined) throw new UserError('--evaluator needs --corpus (LongPPL is computed over documents)');
    await startBackend(args.backend);
    if (args.corpus === undefined) await evaluateSplit(args);
    else await evaluateDocuments({ ...args, corpus: args.corpus });
  },
});
