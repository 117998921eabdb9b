/** `arl augment` (ARL step 4: recap-augmented data) and `arl recap-data` (steps 1-4 in one resumable command). */
import chalk from 'chalk';
import { join, resolve } from 'node:path';
import type { CommandModule } from 'yargs';
import { AUGMENT_FILES, augmentDocuments, augmentOutDir, type AugmentOptions, type AugmentTotals, DEFAULT_AUGMENT, keyTokenTokenizerPath, validateAugmentOptions } from '../arl/augment.ts';
import { type KeyTokenOptions, noKeyTokensReason } from '../arl/key-tokens.ts';
import { augmentRecapData, buildRecapSteps, recapCounts, type RecapDataProgress, type RecapDataRun, type RecapSteps } from '../arl/pipeline.ts';
import { DEFAULT_MAX_RECAP_TOKENS, RECAP_FILES, RECAPPERS } from '../arl/recap.ts';
import { type Shard, shardFolder, shardSize } from '../arl/shard.ts';
import { augmentedText, stepDone, type StepDoneExtras } from '../arl/progress-log.ts';
import type { BackendName } from '../backend.ts';
import { lockFolder } from '../io/lock.ts';
import type { Precision } from '../ops/matmul.ts';
import { BUNDLED_TOKENIZER_PATH, Tokenizer } from '../tokenizer/sentencepiece.ts';
import { usePrecision } from '../train/precision.ts';
import { answerCommand } from './answer.ts';
import { checkSegmentFlags, countDocuments, KEY_TOKEN_FLAGS, SEGMENT_FLAGS, segmentFlags, keyTokenOptionsFromArgs, recapperChat, recapProgressText, shardOutput, shardSettings } from './arl.ts';
import { CHAT_FLAGS } from './chat-options.ts';
import { BACKEND_FLAGS, loadModelAndTokenizer, PRECISION_FLAGS, startBackend } from './common.ts';
import { type ArgsOf, defineCommand, defineOptions, valuesOf } from './options.ts';
import { ProgressBar } from './progress.ts';

/** The flags of step 4 (shared by `arl augment` and `arl recap-data`), AugmentOptions fields of the same name. */
const AUGMENT_FLAGS = defineOptions({
  'max-recaps-per-doc': { type: 'number', default: DEFAULT_AUGMENT.maxRecapsPerDoc, describe: 'recaps inserted per document at most, highest gain (summed over the key tokens sharing it) first' },
  mix: { type: 'number', default: DEFAULT_AUGMENT.mix, describe: 'share of augmented documents in the shards: round(mix x documents) of those with recaps carry them, the rest go in unchanged' },
  seed: { type: 'number', default: DEFAULT_AUGMENT.seed, describe: 'seeds which documents carry recaps and the train/val split' },
  'val-fraction': { type: 'number', default: DEFAULT_AUGMENT.valFraction, describe: 'share of documents in the val split (by document id, as arl prepare)' },
});

/** The lines `arl augment` and `arl recap-data` print about step 4. */
export function describeAugment(t: AugmentTotals, outDir: string): string[] {
  const percent = (x: number): string => `${(100 * x).toFixed(1)}%`;
  return [
    augmentedText(t),
    `${t.recaps_inserted} recaps inserted of ${t.recaps_read} (dropped: ${t.recaps_dropped_over_cap} over the cap, ${t.recaps_dropped_no_boundary} with no sentence boundary after their segment, ${t.recaps_dropped_empty} empty); recap tokens ${t.recap_tokens} of ${t.tokens} (${percent(t.recap_tokens / Math.max(1, t.tokens))}); a recap reaches back ${t.recap_reach.median ?? '-'} tokens (median; max ${t.recap_reach.max ?? '-'}) and trains only in rows that long`,
    `wrote ${join(outDir, AUGMENT_FILES.records)} and ${join(outDir, AUGMENT_FILES.prepared)} (train ${t.train.docs} docs / ${t.train.tokens} tokens, val ${t.val.docs} docs / ${t.val.tokens} tokens)`,
  ];
}

const augmentCommand = defineCommand({
  command: 'augment',
  describe: 'ARL step 4: insert <recap> ... </recap> before key tokens; write augmented.jsonl and training shards mixed with the originals',
  options: {
    ...AUGMENT_FLAGS,
    keytokens: { type: 'string', array: true, demandOption: true, describe: 'folder of steps 1-3 (documents.jsonl, segments.jsonl, recaps.jsonl), or all N shard folders of a --shard i/N run, merged in corpus order' },
    out: { type: 'string', describe: 'output folder (default: the --keytokens folder; for shard folders, the folder holding them)' },
    tokenizer: { type: 'string', describe: "SentencePiece model step 1 used (default: its checkpoint's, else the bundled one)" },
  },
  examples: [
    ['$0 augment --keytokens arl/brown --mix 0.5', 'half of the documents with recaps; then: arl train --init CKPT --data arl/brown/augmented-data'],
    ['$0 augment --keytokens arl/brown/shard-0-of-2 arl/brown/shard-1-of-2', 'merge the 2 shards of a sharded run into arl/brown'],
  ],
  handler: async (args) => {
    const dirs = args.keytokens.map(String);
    lockFolder(augmentOutDir(dirs, args.out));
    const tokenizer = await Tokenizer.load(keyTokenTokenizerPath(dirs[0], args.tokenizer) ?? BUNDLED_TOKENIZER_PATH);
    const totals = await augmentDocuments({ tokenizer, keyTokensDir: dirs, outDir: args.out, options: valuesOf(AUGMENT_FLAGS, args) });
    for (const line of describeAugment(totals, augmentOutDir(dirs, args.out))) console.log(line);
  },
});

const RECAP_DATA_FLAGS = defineOptions({
  ...AUGMENT_FLAGS,
  checkpoint: { type: 'string', demandOption: true, describe: 'checkpoint or run directory (scores key tokens and segments; the extractive recapper uses it too)' },
  tokenizer: { type: 'string', describe: "SentencePiece model (default: the checkpoint's, else the bundled one)" },
  corpus: { type: 'string', demandOption: true, describe: '"brown", a .txt file, a folder of .txt files, or a .jsonl file' },
  out: { type: 'string', demandOption: true, describe: 'output folder of all four steps; a rerun resumes it' },
  ...KEY_TOKEN_FLAGS,
  ...SEGMENT_FLAGS,
  'segment-batch': { type: 'number', describe: 'step 2: candidates per forward pass (default: as many as fill 32k tokens)' },
  recapper: { choices: RECAPPERS, demandOption: true, describe: 'step 3: extractive (no LLM), openai (--llm-url, --llm-model) or llama-cpp (--llm-gguf)' },
  prompt: { type: 'string', describe: 'step 3: recap prompt template (LLM recappers; default data/prompts/recap.txt)' },
  'max-recap-tokens': { type: 'number', default: DEFAULT_MAX_RECAP_TOKENS, describe: 'step 3: recap length cap in tokens of our tokenizer' },
  cache: { type: 'string', describe: `step 3: recap cache (default: ${RECAP_FILES.cache} in --out)` },
});

const RECAP_DATA_SHARED_FLAGS = { ...BACKEND_FLAGS, ...PRECISION_FLAGS, ...CHAT_FLAGS };

type RecapDataArgs = ArgsOf<typeof RECAP_DATA_FLAGS & typeof RECAP_DATA_SHARED_FLAGS>;

/** What `arl recap-data` runs, its flags checked: the pipeline's settings besides the model, and where the model comes from. */
export interface RecapDataJob extends Omit<RecapDataRun, 'model' | 'tokenizer' | 'checkpoint' | 'window' | 'keyTokens' | 'shard' | 'augment' | 'log' | 'progress'> {
  backend: BackendName;
  /** The scoring forwards' products (default fp32). */
  precision?: Precision;
  keyTokens: KeyTokenOptions;
  checkpoint: string;
  tokenizer?: string;
  shard: Shard | null;
  /** Step 4's options; null for a shard (whose step 4 merges all the shards). */
  augment: AugmentOptions | null;
}

/** What `arl recap-data` did, step by step (seconds are this run's; step 4's are 0 and its totals null for a shard). */
export interface RecapDataResult {
  keyTokens: number;
  perplexity: number | null;
  longppl: number | null;
  segments: number;
  recaps: number;
  recapsFailed: number;
  augment: AugmentTotals | null;
  seconds: { keytokens: number; segments: number; recaps: number; augment: number };
}

/** The job of `arl recap-data`'s flags, checked before any weights load. */
function recapDataJob(args: RecapDataArgs): RecapDataJob {
  const { shard, outDir } = shardOutput(args);
  const augment = shard ? null : valuesOf(AUGMENT_FLAGS, args);
  if (augment) validateAugmentOptions(augment);
  const keyTokens = keyTokenOptionsFromArgs(args, args.checkpoint);
  const segments = segmentFlags(args, args.segmentBatch);
  checkSegmentFlags(keyTokens.shortContext, segments, args.checkpoint);
  const chat = recapperChat(args);
  return {
    backend: args.backend,
    precision: args.precision,
    checkpoint: args.checkpoint,
    tokenizer: args.tokenizer,
    corpus: args.corpus,
    outDir,
    shard,
    keyTokens,
    maxDocs: args.maxDocs,
    segments,
    recapper: args.recapper,
    chat,
    promptFile: args.prompt,
    cacheFile: args.cache,
    maxRecapTokens: args.maxRecapTokens,
    augment,
  };
}

/**
 * ARL steps 1-4 (steps 1-3 for a shard) into one folder with one model load. Each step resumes where an
 * interrupted run stopped (steps 1-3 skip what is on disk; step 4 is rebuilt whole, atomically, from it), so a
 * rerun after a crash or Ctrl-C ends with the same files as an uninterrupted run. Prints one line per step.
 */
export async function runRecapData(job: RecapDataJob): Promise<RecapDataResult> {
  const { shard, outDir } = job;
  const corpusDocuments = await countDocuments(job.corpus, job.maxDocs);
  lockFolder(outDir);

  await startBackend(job.backend, job.precision);
  await usePrecision(job.precision ?? 'fp32');
  const { model, tokenizer: loaded, checkpointDir } = await loadModelAndTokenizer(job.checkpoint, { tokenizer: job.tokenizer, needTokenizer: true });
  const tokenizer = loaded!;
  const seconds = { keytokens: 0, segments: 0, recaps: 0, augment: 0 };
  const bar1 = new ProgressBar(shard ? shardSize(corpusDocuments, shard) : corpusDocuments, '1/4 keytokens');
  let bar2: ProgressBar | null = null;
  let augment: AugmentTotals | null = null;
  const progress: RecapDataProgress = {
    onDocument: (p) => bar1.update(p.documents, `${p.keyTokens} key tokens`),
    onKeyToken: (p) => bar2!.update(p.keyTokens, `${p.segments} kept`),
    onRecapper: (recapper) => {
      let bar3: ProgressBar | null = null;
      const started = performance.now();
      return (p) => {
        bar3 ??= new ProgressBar(p.total, '3/4 recaps');
        bar3.update(p.done, recapProgressText(recapper, p, started));
      };
    },
    onStep: (d) => {
      seconds[d.step] = d.seconds;
      const extras: StepDoneExtras = {};
      if (d.step === 'keytokens') {
        const s = d.summary;
        extras.keyTokens = `perplexity ${s.perplexity?.toFixed(3) ?? 'n/a'}, LongPPL ${s.longppl?.toFixed(3) ?? `n/a (${noKeyTokensReason(job.keyTokens)})`}`;
        bar2 = new ProgressBar(Math.max(1, s.key_tokens), '2/4 segments');
      } else if (d.step === 'recaps') {
        extras.recapper = job.recapper;
        if (d.totals.failed.length > 0) extras.failed = `; ${d.totals.failed.length} failed (listed in ${RECAP_FILES.failed}; rerun to retry them)`;
      } else if (d.step === 'augment') {
        augment = d.totals;
      }
      const { label, text } = stepDone(d, extras);
      console.log(`${chalk.bold(label)} ${text} ${chalk.dim(`(${d.seconds.toFixed(1)} s)`)}`);
      if (d.step === 'augment') for (const line of describeAugment(d.totals, outDir).slice(1)) console.log(`    ${line}`);
    },
  };
  const run: RecapDataRun = { ...job, model, tokenizer, checkpoint: checkpointDir, window: model.config.maxSeq, shard: shardSettings(shard, checkpointDir), augment: job.augment ?? undefined, progress };
  let steps: RecapSteps;
  try {
    steps = await buildRecapSteps(run);
  } finally {
    model.dispose();
  }
  if (job.augment) await augmentRecapData(run, recapCounts(steps));
  const { keyTokens, segments, recaps } = steps;
  return { keyTokens: keyTokens.key_tokens, perplexity: keyTokens.perplexity, longppl: keyTokens.longppl, segments: segments.segments, recaps: recaps.recaps, recapsFailed: recaps.failed.length, augment, seconds };
}

const recapDataCommand = defineCommand({
  command: 'recap-data',
  describe: 'ARL steps 1-4 in one resumable command: key tokens, segments, recaps, augmented training shards',
  options: RECAP_DATA_FLAGS,
  shared: RECAP_DATA_SHARED_FLAGS,
  examples: [
    ['$0 recap-data --checkpoint checkpoints/demo --corpus brown --max-docs 40 --out arl/brown --recapper extractive', 'the demo data, no LLM'],
    ['$0 recap-data --checkpoint ckpt --corpus docs/ --out arl/docs --recapper openai --llm-url http://localhost:8000 --llm-model qwen', 'recaps by a local vLLM server'],
  ],
  handler: async (args) => {
    const job = recapDataJob(args);
    const result = await runRecapData(job);
    if (job.shard) {
      const { count } = job.shard;
      const folders = Array.from({ length: count }, (_, index) => shardFolder(resolve(args.out), { index, count }));
      console.log(`${chalk.bold('4/4 augment')} merges all the shards: once the ${count} shard folders are side by side, run arl augment --keytokens ${folders.join(' ')}`);
    } else {
      console.log(chalk.dim(`next: arl train --init CHECKPOINT --data ${join(resolve(args.out), AUGMENT_FILES.prepared)} --out RUN --lr 1e-3 --warmup 10`));
    }
    if (result.recapsFailed > 0) process.exitCode = 1;
  },
});

/** The ARL commands for step 4, steps 1-4 in one, and the recap agent's `answer`, registered in main.ts. */
export const recapDataCommands: CommandModule[] = [augmentCommand, recapDataCommand, answerCommand];
