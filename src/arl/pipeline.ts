/**
 * ARL's data steps 1-4 in one call: key tokens (dual forward), each one's relevant segment, a recap of it
 * (extractive or by an LLM), and the augmented, prepared training data, all written under `outDir`. Each step
 * resumes from what an interrupted run left there.
 */
import type { ChatOptions } from '../io/chat.ts';
import type { LlamaModel } from '../model/llama.ts';
import type { Tokenizer } from '../tokenizer/sentencepiece.ts';
import { type AugmentOptions, augmentDocuments, DEFAULT_AUGMENT } from './augment.ts';
import { findKeyTokens, type KeyTokenOptions, keyTokenOptions } from './key-tokens.ts';
import { type RecapperName, writeRecaps } from './recap.ts';
import { openRecapper } from './recappers.ts';
import { findRelevantSegments } from './relevant-segment.ts';

export interface RecapDataRun {
  model: LlamaModel;
  tokenizer: Tokenizer;
  /** The model's checkpoint folder (recorded, and the extractive recapper's identity). */
  checkpoint: string;
  corpus: string;
  outDir: string;
  recapper: RecapperName;
  chat?: Omit<ChatOptions, 'backend'>;
  window: number;
  keyTokens?: Partial<KeyTokenOptions>;
  augment?: Partial<AugmentOptions>;
  maxRecapTokens?: number;
  log?: (message: string) => void;
}

export interface RecapDataSummary {
  key_tokens: number;
  segments: number;
  recaps: number;
  augmented_documents: number;
  recap_tokens: number;
  tokens: number;
}

export async function buildRecapData(run: RecapDataRun): Promise<RecapDataSummary> {
  const { model, tokenizer } = run;
  const maxRecapTokens = run.maxRecapTokens ?? 48;
  const options = keyTokenOptions(run.window, run.keyTokens);
  const keyTokens = await findKeyTokens({ model, tokenizer, checkpoint: run.checkpoint, corpus: run.corpus, outDir: run.outDir, options });
  const segments = await findRelevantSegments({ model, tokenizer, checkpoint: run.checkpoint, keyTokensDir: run.outDir, options: {} });
  const recapper = await openRecapper({ name: run.recapper, tokenizer, maxRecapTokens, model, checkpointDir: run.checkpoint, chat: run.chat });
  let recaps;
  try {
    recaps = await writeRecaps({ recapper, tokenizer, keyTokensDir: run.outDir, maxRecapTokens });
  } finally {
    await recapper.dispose();
  }
  const augment = await augmentDocuments({ tokenizer, keyTokensDir: run.outDir, options: { ...DEFAULT_AUGMENT, ...run.augment } });
  const summary = {
    key_tokens: keyTokens.summary.key_tokens,
    segments: segments.totals.segments,
    recaps: recaps.items,
    augmented_documents: augment.augmented_documents,
    recap_tokens: augment.recap_tokens,
    tokens: augment.tokens,
  };
  run.log?.(`  ARL data: ${JSON.stringify(summary)}`);
  return summary;
}
