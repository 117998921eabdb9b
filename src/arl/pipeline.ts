/**
 * ARL's data steps 1-4 in one call: key tokens (dual forward), each one's relevant segment, a recap of it
 * (extractive or by an LLM), and the augmented, prepared training data, all written under `outDir`. Each step
 * resumes from what an interrupted run left there.
 */
import { resolve } from 'node:path';
import type { ChatOptions } from '../io/chat.ts';
import type { LlamaModel } from '../model/llama.ts';
import type { Tokenizer } from '../tokenizer/sentencepiece.ts';
import { type AugmentOptions, augmentDocuments, type AugmentTotals, DEFAULT_AUGMENT } from './augment.ts';
import { findKeyTokens, type KeyTokenOptions, keyTokenOptions, type KeyTokenRun, type KeyTokenSummary } from './key-tokens.ts';
import { DEFAULT_MAX_RECAP_TOKENS, type Recapper, type RecapperName, type RecapProgress, type RecapTotals, writeRecaps } from './recap.ts';
import { openRecapper } from './recappers.ts';
import { findRelevantSegments, type SegmentOptions, type SegmentRun, type SegmentTotals } from './relevant-segment.ts';
import type { ShardSettings } from './shard.ts';

export interface RecapDataRun {
  model: LlamaModel;
  tokenizer: Tokenizer;
  /** The model's checkpoint folder (recorded, and the extractive recapper's identity). */
  checkpoint: string;
  corpus: string;
  outDir: string;
  recapper: RecapperName;
  chat?: Omit<ChatOptions, 'backend'>;
  /** The recap prompt template (LLM recappers; default data/prompts/recap.txt). */
  promptFile?: string;
  /** The recap cache (default: recap-cache.jsonl in outDir). */
  cacheFile?: string;
  /** The model's window: the key-token options not given in `keyTokens` derive from it. */
  window: number;
  keyTokens?: Partial<KeyTokenOptions>;
  /** Step 1 takes only the first N documents of the corpus. */
  maxDocs?: number;
  /** Steps 1 and 2 of one shard of a sharded run (`arl augment` merges the shards' folders). */
  shard?: ShardSettings;
  segments?: Partial<Omit<SegmentOptions, 'shortContext'>>;
  augment?: Partial<AugmentOptions>;
  maxRecapTokens?: number;
  log?: (message: string) => void;
  /** Called as each step makes progress, and once each step is done. */
  progress?: RecapDataProgress;
}

/** One finished step of the pipeline, with its seconds in this call. */
export type RecapDataStep =
  | { step: 'keytokens'; seconds: number; summary: KeyTokenSummary }
  | { step: 'segments'; seconds: number; totals: SegmentTotals }
  | { step: 'recaps'; seconds: number; totals: RecapTotals }
  | { step: 'augment'; seconds: number; totals: AugmentTotals };

export interface RecapDataProgress {
  onDocument?: KeyTokenRun['onDocument'];
  onKeyToken?: SegmentRun['onKeyToken'];
  /** Called once the recapper is open; returns the handler of step 3's progress. */
  onRecapper?: (recapper: Recapper) => (p: RecapProgress) => void;
  onStep?: (done: RecapDataStep) => void;
}

export interface RecapDataSummary {
  key_tokens: number;
  segments: number;
  recaps: number;
  augmented_documents: number;
  recap_tokens: number;
  tokens: number;
}

/** What steps 1-3 wrote. */
export interface RecapSteps {
  keyTokens: KeyTokenSummary;
  segments: SegmentTotals;
  recaps: RecapTotals;
}

async function timed<T>(work: () => Promise<T>): Promise<{ result: T; seconds: number }> {
  const started = performance.now();
  const result = await work();
  return { result, seconds: (performance.now() - started) / 1000 };
}

/** What steps 1-2 wrote: the model-bound steps, run per shard by `arl experiment --workers N`. */
export type ScoringSteps = Omit<RecapSteps, 'recaps'>;

/** Steps 1-2 (key tokens, segments) into `outDir`. */
export async function buildScoringSteps(run: RecapDataRun): Promise<ScoringSteps> {
  const { model, tokenizer, progress } = run;
  const options = keyTokenOptions(run.window, run.keyTokens);
  const step1 = await timed(() =>
    findKeyTokens({ model, tokenizer, checkpoint: run.checkpoint, corpus: run.corpus, outDir: run.outDir, options, maxDocs: run.maxDocs, shard: run.shard, onDocument: progress?.onDocument }),
  );
  progress?.onStep?.({ step: 'keytokens', seconds: step1.seconds, summary: step1.result.summary });
  const step2 = await timed(() =>
    findRelevantSegments({
      model,
      tokenizer,
      checkpoint: run.checkpoint,
      checkpointSha256: run.shard?.checkpoint_sha256,
      keyTokensDir: run.outDir,
      options: run.segments ?? {},
      onKeyToken: progress?.onKeyToken,
    }),
  );
  progress?.onStep?.({ step: 'segments', seconds: step2.seconds, totals: step2.result.totals });
  return { keyTokens: step1.result.summary, segments: step2.result.totals };
}

/** Step 3 (recaps) on what steps 1-2 wrote into `outDir`; the model is needed only by the extractive recapper. */
export async function buildRecaps(run: Omit<RecapDataRun, 'model'> & { model?: LlamaModel }): Promise<RecapTotals> {
  const { tokenizer, progress } = run;
  const maxRecapTokens = run.maxRecapTokens ?? DEFAULT_MAX_RECAP_TOKENS;
  const step3 = await timed(async () => {
    const recapper = await openRecapper({ name: run.recapper, tokenizer, maxRecapTokens, promptFile: run.promptFile, chat: run.chat, model: run.model, checkpointDir: run.checkpoint });
    try {
      return await writeRecaps({ recapper, tokenizer, keyTokensDir: run.outDir, cacheFile: run.cacheFile, maxRecapTokens, onProgress: progress?.onRecapper?.(recapper) });
    } finally {
      await recapper.dispose();
    }
  });
  progress?.onStep?.({ step: 'recaps', seconds: step3.seconds, totals: step3.result });
  return step3.result;
}

/** Steps 1-3 (key tokens, segments, recaps) into `outDir`, for a shard of a sharded run or before step 4. */
export async function buildRecapSteps(run: RecapDataRun): Promise<RecapSteps> {
  const scoring = await buildScoringSteps(run);
  return { ...scoring, recaps: await buildRecaps(run) };
}

export async function buildRecapData(run: RecapDataRun): Promise<RecapDataSummary> {
  return augmentRecapData(run, recapCounts(await buildRecapSteps(run)));
}

/** What step 4's summary reports of steps 1-3. */
export interface RecapCounts {
  key_tokens: number;
  segments: number;
  /** Distinct segments recapped (step 3's items). */
  recaps: number;
}

/** The counts of steps 1-3, of one run or summed over the shards of one (which hold disjoint documents). */
export function recapCounts(steps: RecapSteps | readonly RecapSteps[]): RecapCounts {
  const all = Array.isArray(steps) ? (steps as readonly RecapSteps[]) : [steps as RecapSteps];
  const sum = (pick: (s: RecapSteps) => number): number => all.reduce((acc, s) => acc + pick(s), 0);
  return { key_tokens: sum((s) => s.keyTokens.key_tokens), segments: sum((s) => s.segments.segments), recaps: sum((s) => s.recaps.items) };
}

/**
 * Step 4 (augment) on what `buildRecapSteps` wrote into `outDir`, or into the shard folders `shardDirs` (merged
 * in corpus order into `outDir`); the model is no longer needed.
 */
export async function augmentRecapData(run: Omit<RecapDataRun, 'model'>, counts: RecapCounts, shardDirs?: readonly string[]): Promise<RecapDataSummary> {
  const inputs = shardDirs ? { keyTokensDir: shardDirs, outDir: run.outDir, source: resolve(run.outDir) } : { keyTokensDir: run.outDir };
  const step4 = await timed(() => augmentDocuments({ tokenizer: run.tokenizer, ...inputs, options: { ...DEFAULT_AUGMENT, ...run.augment } }));
  const augment = step4.result;
  run.progress?.onStep?.({ step: 'augment', seconds: step4.seconds, totals: augment });
  const summary = {
    key_tokens: counts.key_tokens,
    segments: counts.segments,
    recaps: counts.recaps,
    augmented_documents: augment.augmented_documents,
    recap_tokens: augment.recap_tokens,
    tokens: augment.tokens,
  };
  run.log?.(`  ARL data: ${JSON.stringify(summary)}`);
  return summary;
}
