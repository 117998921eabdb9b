/** `arl eval`: loss and perplexity on a prepared split, or perplexity and LongPPL over documents (--corpus). */
import type { CommandModule } from 'yargs';
import { noKeyTokensReason, SELECTIONS, type Selection } from '../arl/key-tokens.ts';
import type { BackendName } from '../backend.ts';
import { readPrepareMeta, type Split } from '../data/format.ts';
import { checkSameTokenizer } from '../data/tokenizer-match.ts';
import { evaluateLongPpl } from '../eval/longppl.ts';
import { evaluateLoss } from '../eval/perplexity.ts';
import { loadModel, resolveCheckpointDir } from '../io/checkpoint.ts';
import { UserError } from '../io/errors.ts';
import type { LlamaModel } from '../model/llama.ts';
import { type KeyTokenFlags, keyTokenOptionsFromArgs } from './arl.ts';
import { DEFAULT_PREPARED_DIR } from './data.ts';
import { loadModelAndTokenizer, printJson, startBackend, withBackend } from './common.ts';
import { ProgressBar } from './progress.ts';

interface EvalArgs extends KeyTokenFlags {
  backend: BackendName;
  checkpoint: string;
  data: string;
  split: Split;
  batches: number;
  batch: number;
  seq?: number;
  corpus?: string;
  evaluator?: string;
  tokenizer?: string;
  select: Selection;
}

async function evaluateSplit(args: EvalArgs): Promise<void> {
  const { model, ckpt } = loadModel(args.checkpoint);
  try {
    checkSameTokenizer(ckpt.dir, { data: args.data, meta: readPrepareMeta(args.data) });
    const seq = args.seq ?? Math.min(model.config.maxSeq, 256);
    if (seq > model.config.maxSeq) throw new UserError(`--seq ${seq} exceeds the model's context window ${model.config.maxSeq}`);
    const report = await evaluateLoss(model, args.data, args.split, { batches: args.batches, batch: args.batch, seq });
    printJson({ checkpoint: ckpt.dir, data: args.data, split: args.split, seq, ...report });
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
      options,
      maxDocs: args.maxDocs,
      onDocument: (documents, r) => bar?.update(documents, `${r.tokens_scored} tokens, ${r.key_tokens} key tokens`),
    });
    const settings = { S: options.shortContext, W: options.chunk, long_stride: options.longStride, select: options.select, K: options.topK, alpha: options.alpha, beta: options.beta };
    const note = report.longppl === null ? { longppl_note: noKeyTokensReason(options) } : {};
    printJson({ checkpoint: checkpointDir, evaluator: evaluatorDir, corpus: args.corpus, ...settings, ...report, ...note });
    if (report.longppl === null) process.stderr.write(`LongPPL is null: ${noKeyTokensReason(options)}\n`);
  } finally {
    model.dispose();
    evaluator?.dispose();
  }
}

export const evalCommand: CommandModule = {
  command: 'eval',
  describe: 'Loss and perplexity on a prepared split; with --corpus, perplexity and LongPPL over documents (prints JSON)',
  builder: (y) =>
    withBackend(y)
      .option('checkpoint', { type: 'string', demandOption: true })
      .option('data', { type: 'string', default: DEFAULT_PREPARED_DIR })
      .option('split', { choices: ['train', 'val'] as const, default: 'val' as const })
      .option('batches', { type: 'number', default: 0, describe: 'number of batches (0 = the whole split once)' })
      .option('batch', { type: 'number', default: 8, describe: 'sequences per batch (with --corpus: windows per forward pass)' })
      .option('seq', { type: 'number', describe: "sequence length (default: the model's window, at most 256)" })
      .option('corpus', { type: 'string', describe: 'held-out documents ("brown", .txt, folder, .jsonl): report perplexity and LongPPL over them' })
      .option('evaluator', { type: 'string', describe: 'checkpoint that chooses the key tokens (default: --checkpoint itself)' })
      .option('tokenizer', { type: 'string', describe: "SentencePiece model (default: the checkpoint's, else the bundled one)" })
      .option('max-docs', { type: 'number', describe: 'only the first N documents of --corpus' })
      .option('short', { type: 'number', describe: "S, short context of the dual pass (default: a quarter of the evaluator's window)" })
      .option('chunk', { type: 'number', describe: 'W, targets per short-context forward (default: window - S)' })
      .option('long-stride', { type: 'number', describe: 'start-to-start distance of long-context windows (default: S)' })
      .option('select', { choices: SELECTIONS, default: 'threshold' as Selection, describe: 'key tokens: threshold (LongPPL: LSG > alpha and long log-prob > beta), topk or both' })
      .option('top-k', { type: 'number', describe: 'K key tokens per document for topk/both (default 8)' })
      .option('alpha', { type: 'number', describe: 'LSG threshold, nats (default 2)' })
      .option('beta', { type: 'number', describe: 'long log-prob threshold (default -2)' })
      .example('$0 eval --checkpoint checkpoints/demo', 'validation perplexity of the demo model')
      .example('$0 eval --checkpoint runs/cpt --corpus heldout.jsonl --evaluator runs/base', 'perplexity and LongPPL, key tokens chosen by runs/base'),
  handler: async (argv) => {
    const args = argv as unknown as EvalArgs;
    if (args.corpus === undefined && args.evaluator !== undefined) throw new UserError('--evaluator needs --corpus (LongPPL is computed over documents)');
    await startBackend(args.backend);
    if (args.corpus === undefined) await evaluateSplit(args);
    else await evaluateDocuments({ ...args, corpus: args.corpus });
  },
};
