/** `arl keytokens`, `arl segments` and `arl recaps`: ARL steps 1-3 (key tokens, relevant segments, recaps). */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { CommandModule } from 'yargs';
import { findKeyTokens, KEY_TOKEN_FILES, type KeyTokenOptions, keyTokenOptions, noKeyTokensReason, SELECTIONS, validateKeyTokenOptions } from '../arl/key-tokens.ts';
import { DEFAULT_MAX_RECAP_TOKENS, RECAP_FILES, RECAPPERS, type Recapper, type RecapperName, type RecapProgress, writeRecaps } from '../arl/recap.ts';
import { openRecapper } from '../arl/recappers.ts';
import { findRelevantSegments, readKeyTokenSummary, SEGMENT_FILES, type SegmentOptions, segmentOptions, validateSegmentOptions } from '../arl/relevant-segment.ts';
import { parseShard, type Shard, shardFolder, type ShardSettings, shardSize } from '../arl/shard.ts';
import { readDocuments } from '../data/corpus.ts';
import { readCheckpointConfig, resolveCheckpointDir, weightsSha256 } from '../io/checkpoint.ts';
import type { ChatOptions } from '../io/chat.ts';
import { UserError } from '../io/errors.ts';
import { lockFolder } from '../io/lock.ts';
import type { LlamaModel } from '../model/llama.ts';
import { BUNDLED_TOKENIZER_PATH, Tokenizer } from '../tokenizer/sentencepiece.ts';
import { CHAT_FLAGS, type ChatArgs, chatOptionsFromArgs } from './chat-options.ts';
import { BACKEND_FLAGS, loadModelAndTokenizer, startBackend } from './common.ts';
import { type ArgsOf, defineCommand, defineOptions } from './options.ts';
import { ProgressBar } from './progress.ts';

export async function countDocuments(corpus: string, maxDocs: number | undefined): Promise<number> {
  let count = 0;
  for await (const _ of readDocuments(corpus)) {
    if (++count === maxDocs) break;
  }
  return count;
}

/** Per-second rate since `started` (a performance.now() time), formatted. */
export function rate(count: number, started: number, unit: string): string {
  const perSecond = count / Math.max(1e-3, (performance.now() - started) / 1000);
  return `${perSecond < 10 ? perSecond.toFixed(1) : Math.round(perSecond)} ${unit}/s`;
}

/** The progress line of ARL step 3: LLM calls per second, or recaps per second for the extractive recapper, which calls no LLM. */
export function recapProgressText(recapper: Pick<Recapper, 'name'>, p: RecapProgress, started: number): string {
  const made = recapper.name === 'extractive' ? `${rate(p.made, started, 'recaps')} (no LLM calls)` : rate(p.made, started, 'calls');
  return `${made} ${p.cached} cached ${p.failed} failed`;
}

/** The flags of ARL step 1 besides --checkpoint, --corpus and --out (shared with `arl recap-data`). */
export const KEY_TOKEN_FLAGS = defineOptions({
  short: { type: 'number', describe: "S, tokens of short context (default: a quarter of the model's window)" },
  chunk: { type: 'number', describe: 'W, targets per short-context forward (default: window - S)' },
  'long-stride': { type: 'number', describe: 'start-to-start distance of the long-context windows (default: the larger of S and half of W)' },
  'top-k': { type: 'number', describe: 'K, key tokens per document (default 8)' },
  alpha: { type: 'number', describe: 'threshold on LSG = l - s, nats (default 2, as LongPPL)' },
  beta: { type: 'number', describe: 'threshold on the long log-prob l (default -2, as LongPPL)' },
  select: { choices: SELECTIONS, describe: 'topk (ARL), threshold (LongPPL) or both (default topk)' },
  'per-sentence': { type: 'number', describe: 'at most this many key tokens per sentence, the highest LSG first; 0 for no limit (default 1: one recap site per sentence)' },
  batch: { type: 'number', describe: 'windows per forward pass (default 8)' },
  'max-docs': { type: 'number', describe: 'only the first N documents' },
  shard: { type: 'string', describe: 'i/N: only documents i, i+N, i+2N, ... (0-based), into <out>/shard-i-of-N; `arl augment` merges the N shard folders' },
});

type KeyTokenFlags = ArgsOf<typeof KEY_TOKEN_FLAGS>;

/** `--shard i/N` checked (before any weights load), and the folder the run writes into: --out, or its shard folder. */
export function shardOutput(args: { out: string; shard?: string }): { shard: Shard | null; outDir: string } {
  const shard = args.shard === undefined ? null : parseShard(String(args.shard));
  return { shard, outDir: resolve(shard ? shardFolder(args.out, shard) : args.out) };
}

/** What step 1 records about a shard: the shard and the checkpoint's weights hash (its path may differ between machines). */
export function shardSettings(shard: Shard | null, checkpointDir: string): ShardSettings | undefined {
  if (!shard) return undefined;
  return { shard_index: shard.index, shard_count: shard.count, checkpoint_sha256: weightsSha256(checkpointDir) };
}

/** Step 2's flags shared by `arl segments` and `arl recap-data` (each names its own batch flag). */
export const SEGMENT_FLAGS = defineOptions({
  margin: { type: 'number', describe: 'step 2: minimum gain in log-prob of the key token, nats (default 0.5)' },
  'segment-tokens': { type: 'number', describe: 'step 2: candidate length in tokens, whole sentences (default S/2)' },
  'segment-reach': { type: 'number', describe: "step 2: candidates start at most this many tokens before the key token (default: the model's window, all a recap written there can see)" },
});

/** Step 2's options given on the command line (the rest take segmentOptions' defaults). */
export function segmentFlags(args: { margin?: number; segmentTokens?: number; segmentReach?: number }, batch: number | undefined): Partial<Omit<SegmentOptions, 'shortContext'>> {
  return { margin: args.margin, segmentTokens: args.segmentTokens, reach: args.segmentReach, batch };
}

/** Step 2's flags checked against step 1's short context and the window of the model that scores (read without loading weights). */
export function checkSegmentFlags(shortContext: number, given: Partial<Omit<SegmentOptions, 'shortContext'>>, scoringCheckpoint: string): void {
  const { maxSeq } = readCheckpointConfig(resolveCheckpointDir(scoringCheckpoint));
  validateSegmentOptions(segmentOptions(shortContext, maxSeq, given), maxSeq);
}

/** The client settings of step 3's recapper: none for the extractive one, which takes no --prompt either. */
export function recapperChat(args: ChatArgs & { recapper: RecapperName; prompt?: string }): ChatOptions | undefined {
  if (args.recapper === 'extractive' && args.prompt !== undefined) throw new UserError('--prompt is for the LLM recappers (openai, llama-cpp); the extractive recapper uses no prompt');
  return args.recapper === 'extractive' ? undefined : chatOptionsFromArgs(args, args.recapper);
}

/** Step 1's options from its flags, checked against the window of the model that scores (read without loading weights). */
export function keyTokenOptionsFromArgs(args: KeyTokenFlags, scoringCheckpoint: string): KeyTokenOptions {
  const maxSeq = readCheckpointConfig(resolveCheckpointDir(scoringCheckpoint)).maxSeq;
  const options = keyTokenOptions(maxSeq, {
    shortContext: args.short,
    chunk: args.chunk,
    longStride: args.longStride,
    topK: args.topK,
    alpha: args.alpha,
    beta: args.beta,
    select: args.select,
    perSentence: args.perSentence,
    batch: args.batch,
  });
  validateKeyTokenOptions(options, maxSeq);
  return options;
}

const keyTokensCommand = defineCommand({
  command: 'keytokens',
  describe: 'ARL step 1: key tokens by the long/short dual forward pass, with perplexity and LongPPL',
  options: {
    checkpoint: { type: 'string', demandOption: true, describe: 'checkpoint or run directory' },
    tokenizer: { type: 'string', describe: "SentencePiece model (default: the checkpoint's, else the bundled one)" },
    corpus: { type: 'string', demandOption: true, describe: '"brown", a .txt file, a folder of .txt files, or a .jsonl file' },
    out: { type: 'string', demandOption: true, describe: 'output folder; a rerun into it skips documents already done' },
    ...KEY_TOKEN_FLAGS,
  },
  shared: BACKEND_FLAGS,
  examples: [
    ['$0 keytokens --checkpoint checkpoints/demo --corpus brown --out arl/brown --max-docs 50', 'key tokens of 50 Brown documents'],
    ['$0 keytokens --checkpoint ckpt --corpus docs.jsonl --out arl/docs --select both --top-k 16', 'Top-16 among tokens passing the LongPPL thresholds'],
    ['$0 keytokens --checkpoint ckpt --corpus docs.jsonl --out arl/docs --shard 0/2', 'the first of 2 machines: every other document, into arl/docs/shard-0-of-2'],
  ],
  handler: async (args) => {
    // Check the flags and read the corpus once (for the ETA) before loading weights.
    const { shard, outDir } = shardOutput(args);
    const options = keyTokenOptionsFromArgs(args, args.checkpoint);
    const corpusDocuments = await countDocuments(args.corpus, args.maxDocs);
    lockFolder(outDir);
    await startBackend(args.backend);
    const { model, tokenizer, checkpointDir } = await loadModelAndTokenizer(args.checkpoint, { tokenizer: args.tokenizer, needTokenizer: true });
    try {
      const bar = new ProgressBar(shard ? shardSize(corpusDocuments, shard) : corpusDocuments, 'keytokens');
      const started = performance.now();
      const { summary } = await findKeyTokens({
        model,
        tokenizer: tokenizer!,
        checkpoint: checkpointDir,
        corpus: args.corpus,
        outDir,
        options,
        maxDocs: args.maxDocs,
        shard: shardSettings(shard, checkpointDir),
        onDocument: (p) => bar.update(p.documents, `${rate(p.tokensScoredNow, started, 'tok')} ${p.keyTokens} key tokens`),
      });
      const skipped = summary.documents_skipped_short > 0 ? `; ${summary.documents_skipped_short} skipped, shorter than S+1 = ${options.shortContext + 1} tokens` : '';
      console.log(`${summary.documents} documents, ${summary.tokens_scored} tokens scored, ${summary.key_tokens} key tokens${skipped}`);
      console.log(`perplexity ${summary.perplexity?.toFixed(3) ?? 'n/a'}  LongPPL ${summary.longppl?.toFixed(3) ?? 'n/a'}`);
      if (summary.key_tokens === 0) console.log(noKeyTokensReason(options));
      console.log(`wrote ${join(outDir, KEY_TOKEN_FILES.records)} and ${KEY_TOKEN_FILES.summary}`);
    } finally {
      model.dispose();
    }
  },
});

const segmentsCommand = defineCommand({
  command: 'segments',
  describe: 'ARL step 2: the earlier sentence-aligned segment that best predicts each key token',
  options: {
    checkpoint: { type: 'string', demandOption: true, describe: 'checkpoint or run directory' },
    tokenizer: { type: 'string', describe: "SentencePiece model (default: the checkpoint's, else the bundled one)" },
    keytokens: { type: 'string', demandOption: true, describe: 'output folder of `arl keytokens`' },
    out: { type: 'string', describe: 'output folder (default: the --keytokens folder)' },
    ...SEGMENT_FLAGS,
    batch: { type: 'number', describe: 'candidates per forward pass (default: as many as fill 32k tokens)' },
  },
  shared: BACKEND_FLAGS,
  examples: [['$0 segments --checkpoint checkpoints/demo --keytokens arl/brown', 'relevant segments for the key tokens of arl/brown']],
  handler: async (args) => {
    const keyTokens = readKeyTokenSummary(resolve(args.keytokens));
    const given = segmentFlags(args, args.batch);
    checkSegmentFlags(Number(keyTokens.S), given, args.checkpoint);
    lockFolder(resolve(args.out ?? args.keytokens));
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
        // A shard's segments record the weights hash too, so the merge can check all shards used one checkpoint.
        checkpointSha256: keyTokens.checkpoint_sha256 === undefined ? undefined : weightsSha256(checkpointDir),
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
});

const RECAPPER_NOTES: Record<RecapperName, string> = {
  extractive: 'extractive: sentences copied from each segment, chosen by our model, no LLM',
  openai: 'openai: written by the LLM server',
  'llama-cpp': 'llama-cpp: written by the local GGUF model',
};

const recapsCommand = defineCommand({
  command: 'recaps',
  describe: 'ARL step 3: a short recap of each relevant segment, by an LLM (server or local GGUF) or extractively',
  options: {
    keytokens: { type: 'string', demandOption: true, describe: 'output folder of `arl keytokens`' },
    segments: { type: 'string', describe: 'output folder of `arl segments` (default: the --keytokens folder)' },
    out: { type: 'string', describe: 'output folder (default: the --segments folder); a rerun into it skips recaps already made' },
    recapper: { choices: RECAPPERS, demandOption: true, describe: 'extractive (no LLM; needs --checkpoint), openai (--llm-url, --llm-model) or llama-cpp (--llm-gguf)' },
    checkpoint: { type: 'string', describe: 'our checkpoint (extractive scores sentences with it; else only its tokenizer is used)' },
    tokenizer: { type: 'string', describe: "SentencePiece model step 1 used (default: the checkpoint's, else the bundled one)" },
    prompt: { type: 'string', describe: 'recap prompt template with {{segment}}, {{following}} and optionally {{max_words}} (default data/prompts/recap.txt)' },
    'max-recap-tokens': { type: 'number', default: DEFAULT_MAX_RECAP_TOKENS, describe: 'recap length cap in tokens of our tokenizer' },
    cache: { type: 'string', describe: `recap cache shared by reruns and other output folders (default: ${RECAP_FILES.cache} in the --keytokens folder)` },
  },
  shared: { ...BACKEND_FLAGS, ...CHAT_FLAGS },
  examples: [
    ['$0 recaps --keytokens arl/brown --recapper extractive --checkpoint checkpoints/demo', 'recaps with no LLM'],
    ['OPENAI_API_KEY=... $0 recaps --keytokens arl/brown --recapper openai --llm-url https://api.openai.com --llm-model gpt-4o-mini', 'recaps by an OpenAI-compatible server'],
    ['$0 recaps --keytokens arl/brown --recapper llama-cpp --llm-gguf models/qwen2.5-1.5b-instruct-q4_k_m.gguf', 'recaps by a local GGUF model'],
  ],
  handler: async (args) => {
    readKeyTokenSummary(resolve(args.keytokens));
    if (args.recapper === 'extractive' && args.checkpoint === undefined) throw new UserError('--recapper extractive needs --checkpoint: it scores the sentences of each segment with our model');
    const chat = recapperChat(args);
    lockFolder(resolve(args.out ?? args.segments ?? args.keytokens));
    let model: LlamaModel | null = null;
    let tokenizer: Tokenizer;
    let checkpointDir: string | undefined;
    if (args.recapper === 'extractive') {
      await startBackend(args.backend);
      const loaded = await loadModelAndTokenizer(args.checkpoint!, { tokenizer: args.tokenizer, needTokenizer: true });
      model = loaded.model;
      tokenizer = loaded.tokenizer!;
      checkpointDir = loaded.checkpointDir;
    } else {
      const own = args.checkpoint === undefined ? null : join(resolveCheckpointDir(args.checkpoint), 'tokenizer.model');
      tokenizer = await Tokenizer.load(args.tokenizer ?? (own !== null && existsSync(own) ? own : BUNDLED_TOKENIZER_PATH));
    }
    let bar: ProgressBar | null = null;
    const log = (message: string): void => (bar ? bar.log(message) : void process.stderr.write(`${message}\n`));
    try {
      const recapper = await openRecapper({
        name: args.recapper,
        tokenizer,
        maxRecapTokens: args.maxRecapTokens,
        promptFile: args.prompt,
        chat: chat && { ...chat, onRetry: (r) => log(`retry ${r.attempt} in ${(r.delayMs / 1000).toFixed(1)} s: ${r.error.message}`) },
        model: model ?? undefined,
        checkpointDir,
      });
      const started = performance.now();
      try {
        const totals = await writeRecaps({
          recapper,
          tokenizer,
          keyTokensDir: args.keytokens,
          segmentsDir: args.segments,
          outDir: args.out,
          cacheFile: args.cache,
          maxRecapTokens: args.maxRecapTokens,
          onProgress: (p) => {
            bar ??= new ProgressBar(p.total, 'recaps');
            bar.update(p.done, recapProgressText(recapper, p, started));
          },
          onFailure: (f) => log(`failed: doc ${f.doc} tokens ${f.segment_start}-${f.segment_end}: ${f.error}`),
        });
        const outDir = resolve(args.out ?? args.segments ?? args.keytokens);
        console.log(`${totals.recaps} of ${totals.items} segments (${totals.key_tokens} key tokens) have recaps: ${totals.made} made now, ${totals.cached} from the cache, ${totals.resumed} done before`);
        if (totals.blank_segments > 0) console.log(`${totals.blank_segments} segments hold only whitespace: no recap`);
        console.log(`recapper ${RECAPPER_NOTES[args.recapper]} (model ${recapper.model})`);
        console.log(`wrote ${join(outDir, RECAP_FILES.records)}`);
        if (totals.failed.length > 0) {
          for (const f of totals.failed) console.log(`failed: doc ${f.doc} tokens ${f.segment_start}-${f.segment_end}: ${f.error}`);
          console.log(`${totals.failed.length} segments failed after retries (listed in ${join(outDir, RECAP_FILES.failed)}); rerun the same command to retry them`);
          process.exitCode = 1;
        }
      } finally {
        await recapper.dispose();
      }
    } finally {
      model?.dispose();
    }
  },
});

export const arlCommands: CommandModule[] = [keyTokensCommand, segmentsCommand, recapsCommand];
