/** `arl keytokens` and `arl segments`: ARL steps 1 and 2 (key tokens, relevant segments). */
import { join, resolve } from 'node:path';
import type { CommandModule } from 'yargs';
import { findKeyTokens, KEY_TOKEN_FILES, keyTokenOptions, SELECTIONS, type Selection, validateKeyTokenOptions } from '../arl/key-tokens.ts';
import { findRelevantSegments, readKeyTokenSummary, SEGMENT_FILES, segmentOptions, validateSegmentOptions } from '../arl/relevant-segment.ts';
import type { BackendName } from '../backend.ts';
import { readDocuments } from '../data/corpus.ts';
import { readCheckpointConfig, resolveCheckpointDir } from '../io/checkpoint.ts';
import { checkPositiveIntegers } from '../io/errors.ts';
import { loadModelAndTokenizer, startBackend, withBackend } from './common.ts';
import { ProgressBar } from './progress.ts';

interface KeyTokensArgs {
  backend: BackendName;
  checkpoint: string;
  tokenizer?: string;
  corpus: string;
  out: string;
  short?: number;
  chunk?: number;
  longStride?: number;
  topK?: number;
  alpha?: number;
  beta?: number;
  select?: Selection;
  batch?: number;
  maxDocs?: number;
}

interface SegmentsArgs {
  backend: BackendName;
  checkpoint: string;
  tokenizer?: string;
  keytokens: string;
  out?: string;
  margin?: number;
  segmentTokens?: number;
  batch?: number;
}

async function countDocuments(corpus: string, maxDocs: number | undefined): Promise<number> {
  let count = 0;
  for await (const _ of readDocuments(corpus)) {
    if (++count === maxDocs) break;
  }
  return count;
}

/** Per-second rate since `started` (a performance.now() time), formatted. */
function rate(count: number, started: number, unit: string): string {
  const perSecond = count / Math.max(1e-3, (performance.now() - started) / 1000);
  return `${perSecond < 10 ? perSecond.toFixed(1) : Math.round(perSecond)} ${unit}/s`;
}

const keyTokensCommand: CommandModule = {
  command: 'keytokens',
  describe: 'ARL step 1: key tokens by the long/short dual forward pass, with perplexity and LongPPL',
  builder: (y) =>
    withBackend(y)
      .option('checkpoint', { type: 'string', demandOption: true, describe: 'checkpoint or run directory' })
      .option('tokenizer', { type: 'string', describe: "SentencePiece model (default: the checkpoint's, else the bundled one)" })
      .option('corpus', { type: 'string', demandOption: true, describe: '"brown", a .txt file, a folder of .txt files, or a .jsonl file' })
      .option('out', { type: 'string', demandOption: true, describe: 'output folder; a rerun into it skips documents already done' })
      .option('short', { type: 'number', describe: "S, tokens of short context (default: a quarter of the model's window)" })
      .option('chunk', { type: 'number', describe: 'W, targets per short-context forward (default: window - S)' })
      .option('long-stride', { type: 'number', describe: 'start-to-start distance of the long-context windows (default: S)' })
      .option('top-k', { type: 'number', describe: 'K, key tokens per document (default 8)' })
      .option('alpha', { type: 'number', describe: 'threshold on LSG = l - s, nats (default 2, as LongPPL)' })
      .option('beta', { type: 'number', describe: 'threshold on the long log-prob l (default -2, as LongPPL)' })
      .option('select', { choices: SELECTIONS, describe: 'topk (ARL), threshold (LongPPL) or both (default topk)' })
      .option('batch', { type: 'number', describe: 'windows per forward pass (default 8)' })
      .option('max-docs', { type: 'number', describe: 'only the first N documents' })
      .example('$0 keytokens --checkpoint checkpoints/demo --corpus brown --out arl/brown --max-docs 50', 'key tokens of 50 Brown documents')
      .example('$0 keytokens --checkpoint ckpt --corpus docs.jsonl --out arl/docs --select both --top-k 16', 'Top-16 among tokens passing the LongPPL thresholds'),
  handler: async (argv) => {
    const args = argv as unknown as KeyTokensArgs;
    if (args.maxDocs !== undefined) checkPositiveIntegers({ '--max-docs': args.maxDocs });
    // Check the flags against the checkpoint's window and read the corpus once (for the ETA) before loading weights.
    const maxSeq = readCheckpointConfig(resolveCheckpointDir(args.checkpoint)).maxSeq;
    const options = keyTokenOptions(maxSeq, {
      shortContext: args.short,
      chunk: args.chunk,
      longStride: args.longStride,
      topK: args.topK,
      alpha: args.alpha,
      beta: args.beta,
      select: args.select,
      batch: args.batch,
    });
    validateKeyTokenOptions(options, maxSeq);
    const total = await countDocuments(args.corpus, args.maxDocs);
    await startBackend(args.backend);
    const { model, tokenizer, checkpointDir } = await loadModelAndTokenizer(args.checkpoint, { tokenizer: args.tokenizer, needTokenizer: true });
    try {
      const bar = new ProgressBar(total, 'keytokens');
      const started = performance.now();
      const { summary } = await findKeyTokens({
        model,
        tokenizer: tokenizer!,
        checkpoint: checkpointDir,
        corpus: args.corpus,
        outDir: args.out,
        options,
        maxDocs: args.maxDocs,
        onDocument: (p) => bar.update(p.documents, `${rate(p.tokensScoredNow, started, 'tok')} ${p.keyTokens} key tokens`),
      });
      const skipped = summary.documents_skipped_short > 0 ? `; ${summary.documents_skipped_short} skipped, shorter than S+1 = ${options.shortContext + 1} tokens` : '';
      console.log(`${summary.documents} documents, ${summary.tokens_scored} tokens scored, ${summary.key_tokens} key tokens${skipped}`);
      console.log(`perplexity ${summary.perplexity?.toFixed(3) ?? 'n/a'}  LongPPL ${summary.longppl?.toFixed(3) ?? 'n/a'}`);
      if (summary.key_tokens === 0) {
        // The first chunk's short context is the whole prefix, so only tokens after S+W can gain from more context.
        const thresholds = options.select === 'topk' ? '' : `, and --select ${options.select} needs LSG > ${options.alpha} with long log-prob > ${options.beta} (try --select topk or a lower --alpha)`;
        console.log(`no key tokens: only tokens past S+W = ${options.shortContext + options.chunk} have more long than short context${thresholds}`);
      }
      console.log(`wrote ${join(resolve(args.out), KEY_TOKEN_FILES.records)} and ${KEY_TOKEN_FILES.summary}`);
    } finally {
      model.dispose();
    }
  },
};

const segmentsCommand: CommandModule = {
  command: 'segments',
  describe: 'ARL step 2: the earlier sentence-aligned segment that best predicts each key token',
  builder: (y) =>
    withBackend(y)
      .option('checkpoint', { type: 'string', demandOption: true, describe: 'checkpoint or run directory' })
      .option('tokenizer', { type: 'string', describe: "SentencePiece model (default: the checkpoint's, else the bundled one)" })
      .option('keytokens', { type: 'string', demandOption: true, describe: 'output folder of `arl keytokens`' })
      .option('out', { type: 'string', describe: 'output folder (default: the --keytokens folder)' })
      .option('margin', { type: 'number', describe: 'minimum gain in log-prob of the key token, nats (default 0.5)' })
      .option('segment-tokens', { type: 'number', describe: 'candidate length in tokens, whole sentences (default S/2)' })
      .option('batch', { type: 'number', describe: 'candidates per forward pass (default: as many as fill 32k tokens)' })
      .example('$0 segments --checkpoint checkpoints/demo --keytokens arl/brown', 'relevant segments for the key tokens of arl/brown'),
  handler: async (argv) => {
    const args = argv as unknown as SegmentsArgs;
    const keyTokens = readKeyTokenSummary(resolve(args.keytokens));
    const given = { margin: args.margin, segmentTokens: args.segmentTokens, batch: args.batch };
    validateSegmentOptions(segmentOptions(Number(keyTokens.S), given), readCheckpointConfig(resolveCheckpointDir(args.checkpoint)).maxSeq);
    await startBackend(args.backend);
    const { model, tokenizer, checkpointDir } = await loadModelAndTokenizer(args.checkpoint, { tokenizer: args.tokenizer, needTokenizer: true });
    try {
      const bar = new ProgressBar(Math.max(1, Number(keyTokens.key_tokens)), 'segments');
      const started = performance.now();
      let scoredNow = 0;
      const { totals } = await findRelevantSegments({
        model,
        tokenizer: tokenizer!,
        checkpoint: checkpointDir,
        keyTokensDir: args.keytokens,
        outDir: args.out,
        options: given,
        onKeyToken: (p) => bar.update(p.keyTokens, `${rate(++scoredNow, started, 'key tok')} ${p.segments} kept`),
      });
      const meanGain = totals.mean_gain === null ? '' : `, mean gain ${totals.mean_gain.toFixed(3)} nats`;
      console.log(`kept a segment for ${totals.segments} of ${totals.key_tokens} key tokens (${totals.candidates_scored} candidates scored${meanGain})`);
      console.log(`wrote ${join(resolve(args.out ?? args.keytokens), SEGMENT_FILES.records)}`);
    } finally {
      model.dispose();
    }
  },
};

export const arlCommands: CommandModule[] = [keyTokensCommand, segmentsCommand];
