/** `arl augment` (ARL step 4: recap-augmented data) and `arl recap-data` (steps 1-4 in one resumable command). */
import chalk from 'chalk';
import { join, resolve } from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { AUGMENT_FILES, augmentDocuments, augmentOutDir, type AugmentOptions, type AugmentTotals, DEFAULT_AUGMENT, keyTokenTokenizerPath, validateAugmentOptions } from '../arl/augment.ts';
import { findKeyTokens, noKeyTokensReason } from '../arl/key-tokens.ts';
import { DEFAULT_MAX_RECAP_TOKENS, RECAP_FILES, RECAPPERS, type RecapperName, writeRecaps } from '../arl/recap.ts';
import { openRecapper } from '../arl/recappers.ts';
import { findRelevantSegments, segmentOptions, validateSegmentOptions } from '../arl/relevant-segment.ts';
import { type Shard, shardFolder, shardSize } from '../arl/shard.ts';
import { type ChatArgs, chatOptionsFromArgs, withChatOptions } from '../io/chat.ts';
import { readCheckpointConfig, resolveCheckpointDir } from '../io/checkpoint.ts';
import { UserError } from '../io/errors.ts';
import { lockFolder } from '../io/lock.ts';
import { BUNDLED_TOKENIZER_PATH, Tokenizer } from '../tokenizer/sentencepiece.ts';
import { answerCommand } from './answer.ts';
import { demoArlCommand } from './demo-arl.ts';
import { countDocuments, KEY_TOKEN_FLAGS, keyTokenOptionsFromArgs, type KeyTokensArgs, recapProgressText, shardOutput, shardSettings } from './arl.ts';
import { loadModelAndTokenizer, startBackend, withBackend } from './common.ts';
import { ProgressBar } from './progress.ts';

interface AugmentFlags {
  maxRecapsPerDoc: number;
  mix: number;
  seed: number;
  valFraction: number;
}

/** The flags of step 4 (shared by `arl augment` and `arl recap-data`). */
export function withAugmentFlags<T>(y: Argv<T>) {
  const d = DEFAULT_AUGMENT;
  return y
    .option('max-recaps-per-doc', { type: 'number', default: d.maxRecapsPerDoc, describe: 'recaps inserted per document at most, highest gain (summed over the key tokens sharing it) first' })
    .option('mix', { type: 'number', default: d.mix, describe: 'share of augmented documents in the shards: round(mix x documents) of those with recaps carry them, the rest go in unchanged' })
    .option('seed', { type: 'number', default: d.seed, describe: 'seeds which documents carry recaps and the train/val split' })
    .option('val-fraction', { type: 'number', default: d.valFraction, describe: 'share of documents in the val split (by document id, as arl prepare)' });
}

export function augmentOptionsFrom(args: AugmentFlags): AugmentOptions {
  return { maxRecapsPerDoc: args.maxRecapsPerDoc, mix: args.mix, seed: args.seed, valFraction: args.valFraction };
}

/** The lines `arl augment` and `arl recap-data` print about step 4. */
export function describeAugment(t: AugmentTotals, outDir: string): string[] {
  const percent = (x: number): string => `${(100 * x).toFixed(1)}%`;
  return [
    `${t.documents} documents, ${t.documents_with_recaps} with recaps; ${t.augmented_documents} written with them (${percent(t.augmented_share)}), ${t.documents - t.augmented_documents} unchanged`,
    `${t.recaps_inserted} recaps inserted of ${t.recaps_read} (dropped: ${t.recaps_dropped_over_cap} over the cap, ${t.recaps_dropped_no_boundary} with no sentence boundary after their segment, ${t.recaps_dropped_empty} empty); recap tokens ${t.recap_tokens} of ${t.tokens} (${percent(t.recap_tokens / Math.max(1, t.tokens))})`,
    `wrote ${join(outDir, AUGMENT_FILES.records)} and ${join(outDir, AUGMENT_FILES.prepared)} (train ${t.train.docs} docs / ${t.train.tokens} tokens, val ${t.val.docs} docs / ${t.val.tokens} tokens)`,
  ];
}

const augmentCommand: CommandModule = {
  command: 'augment',
  describe: 'ARL step 4: insert <recap> ... </recap> before key tokens; write augmented.jsonl and training shards mixed with the originals',
  builder: (y) =>
    withAugmentFlags(y)
      .option('keytokens', { type: 'string', array: true, demandOption: true, describe: 'folder of steps 1-3 (documents.jsonl, segments.jsonl, recaps.jsonl), or all N shard folders of a --shard i/N run, merged in corpus order' })
      .option('out', { type: 'string', describe: 'output folder (default: the --keytokens folder; for shard folders, the folder holding them)' })
      .option('tokenizer', { type: 'string', describe: "SentencePiece model step 1 used (default: its checkpoint's, else the bundled one)" })
      .example('$0 augment --keytokens arl/brown --mix 0.5', 'half of the documents with recaps; then: arl train --init CKPT --data arl/brown/augmented-data')
      .example('$0 augment --keytokens arl/brown/shard-0-of-2 arl/brown/shard-1-of-2', 'merge the 2 shards of a sharded run into arl/brown'),
  handler: async (argv) => {
    const args = argv as unknown as AugmentFlags & { keytokens: string[]; out?: string; tokenizer?: string };
    const dirs = args.keytokens.map(String);
    lockFolder(augmentOutDir(dirs, args.out));
    const tokenizer = await Tokenizer.load(keyTokenTokenizerPath(dirs[0], args.tokenizer) ?? BUNDLED_TOKENIZER_PATH);
    const totals = await augmentDocuments({ tokenizer, keyTokensDir: dirs, outDir: args.out, options: augmentOptionsFrom(args) });
    for (const line of describeAugment(totals, augmentOutDir(dirs, args.out))) console.log(line);
  },
};

export interface RecapDataArgs extends KeyTokensArgs, AugmentFlags, ChatArgs {
  margin?: number;
  segmentTokens?: number;
  segmentBatch?: number;
  recapper: RecapperName;
  prompt?: string;
  maxRecapTokens: number;
  cache?: string;
}

/** What `arl recap-data` did, step by step (seconds are this run's). */
export interface RecapDataResult {
  keyTokens: number;
  perplexity: number | null;
  longppl: number | null;
  segments: number;
  recaps: number;
  recapsFailed: number;
  augment: AugmentTotals;
  seconds: { keytokens: number; segments: number; recaps: number; augment: number };
}

/** Steps 1-3 of `arl recap-data`, into `outDir` (a shard's folder for --shard). */
type RecapSteps = Omit<RecapDataResult, 'augment'> & { outDir: string; shard: Shard | null; tokenizer: Tokenizer };

const done = (step: string, line: string, s: number): void => console.log(`${chalk.bold(step)} ${line} ${chalk.dim(`(${s.toFixed(1)} s)`)}`);

/**
 * ARL steps 1-4 into one folder with one model load. Each step resumes where an interrupted run
 * stopped (steps 1-3 skip what is on disk; step 4 is rebuilt whole, atomically, from it), so a rerun
 * after a crash or Ctrl-C ends with the same files as an uninterrupted run. Prints one line per step.
 */
export async function runRecapData(args: RecapDataArgs): Promise<RecapDataResult> {
  const augmentOptions = augmentOptionsFrom(args);
  validateAugmentOptions(augmentOptions);
  const steps = await runRecapSteps(args);
  const started = performance.now();
  const augment = await augmentDocuments({ tokenizer: steps.tokenizer, keyTokensDir: steps.outDir, options: augmentOptions });
  const seconds = { ...steps.seconds, augment: (performance.now() - started) / 1000 };
  const [first, ...rest] = describeAugment(augment, steps.outDir);
  done('4/4 augment', first, seconds.augment);
  for (const line of rest) console.log(`    ${line}`);
  const { outDir: _o, shard: _s, tokenizer: _t, ...result } = steps;
  return { ...result, augment, seconds };
}

/** Steps 1-3 of `arl recap-data` with one model load, into --out or, for --shard i/N, its shard folder there. */
export async function runRecapSteps(args: RecapDataArgs): Promise<RecapSteps> {
  const { shard, outDir } = shardOutput(args);
  const keyTokenOptions = keyTokenOptionsFromArgs(args, args.checkpoint);
  const segmentGiven = { margin: args.margin, segmentTokens: args.segmentTokens, batch: args.segmentBatch };
  validateSegmentOptions(segmentOptions(keyTokenOptions.shortContext, segmentGiven), readCheckpointConfig(resolveCheckpointDir(args.checkpoint)).maxSeq);
  if (args.recapper === 'extractive' && args.prompt !== undefined) throw new UserError('--prompt is for the LLM recappers (openai, llama-cpp); the extractive recapper uses no prompt');
  const chat = args.recapper === 'extractive' ? undefined : chatOptionsFromArgs(args, args.recapper);
  const corpusDocuments = await countDocuments(args.corpus, args.maxDocs);
  lockFolder(outDir);

  await startBackend(args.backend);
  const { model, tokenizer: loaded, checkpointDir } = await loadModelAndTokenizer(args.checkpoint, { tokenizer: args.tokenizer, needTokenizer: true });
  const tokenizer = loaded!;
  const seconds = { keytokens: 0, segments: 0, recaps: 0, augment: 0 };
  const timed = async <T>(step: keyof typeof seconds, work: () => Promise<T>): Promise<T> => {
    const started = performance.now();
    const result = await work();
    seconds[step] = (performance.now() - started) / 1000;
    return result;
  };
  try {
    const bar1 = new ProgressBar(shard ? shardSize(corpusDocuments, shard) : corpusDocuments, '1/4 keytokens');
    const shardRecord = await shardSettings(shard, checkpointDir);
    const { summary } = await timed('keytokens', () =>
      findKeyTokens({ model, tokenizer, checkpoint: checkpointDir, corpus: args.corpus, outDir, options: keyTokenOptions, maxDocs: args.maxDocs, shard: shardRecord, onDocument: (p) => bar1.update(p.documents, `${p.keyTokens} key tokens`) }),
    );
    done('1/4 keytokens', `${summary.documents} documents, ${summary.key_tokens} key tokens; perplexity ${summary.perplexity?.toFixed(3) ?? 'n/a'}, LongPPL ${summary.longppl?.toFixed(3) ?? `n/a (${noKeyTokensReason(keyTokenOptions)})`}`, seconds.keytokens);

    const bar2 = new ProgressBar(Math.max(1, summary.key_tokens), '2/4 segments');
    const { totals: segments } = await timed('segments', () =>
      findRelevantSegments({ model, tokenizer, checkpoint: checkpointDir, checkpointSha256: shardRecord?.checkpoint_sha256, keyTokensDir: outDir, options: segmentGiven, onKeyToken: (p) => bar2.update(p.keyTokens, `${p.segments} kept`) }),
    );
    done('2/4 segments', `a segment kept for ${segments.segments} of ${segments.key_tokens} key tokens`, seconds.segments);

    const recaps = await timed('recaps', async () => {
      const recapper = await openRecapper({ name: args.recapper, tokenizer, maxRecapTokens: args.maxRecapTokens, promptFile: args.prompt, chat, model, checkpointDir });
      let bar3: ProgressBar | null = null;
      const started = performance.now();
      try {
        return await writeRecaps({
          recapper,
          tokenizer,
          keyTokensDir: outDir,
          cacheFile: args.cache,
          maxRecapTokens: args.maxRecapTokens,
          onProgress: (p) => {
            bar3 ??= new ProgressBar(p.total, '3/4 recaps');
            bar3.update(p.done, recapProgressText(recapper, p, started));
          },
        });
      } finally {
        await recapper.dispose();
      }
    });
    const failed = recaps.failed.length > 0 ? `; ${recaps.failed.length} failed (listed in ${RECAP_FILES.failed}; rerun to retry them)` : '';
    done('3/4 recaps', `${recaps.recaps} of ${recaps.items} segments have recaps (${args.recapper}: ${recaps.made} made now, ${recaps.cached} cached, ${recaps.resumed} done before)${failed}`, seconds.recaps);
    return { keyTokens: summary.key_tokens, perplexity: summary.perplexity, longppl: summary.longppl, segments: segments.segments, recaps: recaps.recaps, recapsFailed: recaps.failed.length, seconds, outDir, shard, tokenizer };
  } finally {
    model.dispose();
  }
}

const recapDataCommand: CommandModule = {
  command: 'recap-data',
  describe: 'ARL steps 1-4 in one resumable command: key tokens, segments, recaps, augmented training shards',
  builder: (y) =>
    withAugmentFlags(withChatOptions(withBackend(y)))
      .option('checkpoint', { type: 'string', demandOption: true, describe: 'checkpoint or run directory (scores key tokens and segments; the extractive recapper uses it too)' })
      .option('tokenizer', { type: 'string', describe: "SentencePiece model (default: the checkpoint's, else the bundled one)" })
      .option('corpus', { type: 'string', demandOption: true, describe: '"brown", a .txt file, a folder of .txt files, or a .jsonl file' })
      .option('out', { type: 'string', demandOption: true, describe: 'output folder of all four steps; a rerun resumes it' })
      .options(KEY_TOKEN_FLAGS)
      .option('margin', { type: 'number', describe: 'step 2: minimum gain in log-prob of the key token, nats (default 0.5)' })
      .option('segment-tokens', { type: 'number', describe: 'step 2: candidate length in tokens, whole sentences (default S/2)' })
      .option('segment-batch', { type: 'number', describe: 'step 2: candidates per forward pass (default: as many as fill 32k tokens)' })
      .option('recapper', { choices: RECAPPERS, demandOption: true, describe: 'step 3: extractive (no LLM), openai (--llm-url, --llm-model) or llama-cpp (--llm-gguf)' })
      .option('prompt', { type: 'string', describe: 'step 3: recap prompt template (LLM recappers; default data/prompts/recap.txt)' })
      .option('max-recap-tokens', { type: 'number', default: DEFAULT_MAX_RECAP_TOKENS, describe: 'step 3: recap length cap in tokens of our tokenizer' })
      .option('cache', { type: 'string', describe: `step 3: recap cache (default: ${RECAP_FILES.cache} in --out)` })
      .example('$0 recap-data --checkpoint checkpoints/demo --corpus brown --max-docs 40 --out arl/brown --recapper extractive', 'the demo data, no LLM')
      .example('$0 recap-data --checkpoint ckpt --corpus docs/ --out arl/docs --recapper openai --llm-url http://localhost:8000 --llm-model qwen', 'recaps by a local vLLM server'),
  handler: async (argv) => {
    const args = argv as unknown as RecapDataArgs;
    if (args.shard !== undefined) {
      const steps = await runRecapSteps(args);
      const { count } = steps.shard!;
      const folders = Array.from({ length: count }, (_, index) => shardFolder(resolve(args.out), { index, count }));
      console.log(`${chalk.bold('4/4 augment')} merges all the shards: once the ${count} shard folders are side by side, run arl augment --keytokens ${folders.join(' ')}`);
      if (steps.recapsFailed > 0) process.exitCode = 1;
      return;
    }
    const result = await runRecapData(args);
    console.log(chalk.dim(`next: arl train --init CHECKPOINT --data ${join(resolve(args.out), AUGMENT_FILES.prepared)} --out RUN --lr 1e-3 --warmup 10`));
    if (result.recapsFailed > 0) process.exitCode = 1;
  },
};

/** The ARL commands for step 4, steps 1-4 in one, and the recap agent's `answer`, registered in main.ts. */
export const recapDataCommands: CommandModule[] = [augmentCommand, recapDataCommand, answerCommand, demoArlCommand];
