/**
 * Running a model on benchmark prompts: greedy answers from a prompt truncated to the window (head + tail, as
 * LongBench's pred.py and LIFT's inference do), written one example at a time to a resumable predictions file.
 */
import { DocumentJournal, type Settings } from '../arl/journal.ts';
import { releaseUnusedGpuMemory } from '../backend.ts';
import { continuationLogProb } from '../arl/scoring.ts';
import { continuationText, generate } from '../infer/generate.ts';
import type { LlamaModel } from '../model/llama.ts';
import type { Tokenizer } from '../tokenizer/sentencepiece.ts';

/** Prompt ids of at most `budget` tokens: all of `ids` when they fit, else the first and last halves. */
export function headTailIds(ids: readonly number[], budget: number): { ids: number[]; truncated: boolean } {
  if (ids.length <= budget) return { ids: [...ids], truncated: false };
  const head = Math.floor(budget / 2);
  return { ids: [...ids.slice(0, head), ...ids.slice(ids.length - (budget - head))], truncated: true };
}

/** A benchmark prompt split where the question starts, so methods that handle the context apart (recap agent, LIFT) can. */
export interface PromptParts {
  context: string;
  question: string;
}

/** The ids of the line-feed piece(s): RULER answers are one line, so decoding stops there. */
export function newlineIds(tokenizer: Tokenizer): number[] {
  return tokenizer.encode('\n').filter((id) => tokenizer.pieceOf(id) === '<0x0A>');
}

export interface AnswerOptions {
  maxNewTokens: number;
  /** Stop at the end of the first line as well as at EOS. */
  stopAtNewline: boolean;
  /** The expected answer: answerers that can also record its log-probability after their prompt (`gold_logprob`). */
  gold?: string;
}

export interface Answer {
  pred: string;
  /** Method-specific detail kept in the predictions file (recaps written, ...). */
  extra?: Record<string, unknown>;
}

/** A way of answering a prompt with a model: plain, the recap agent, LIFT. */
export type Answerer = (prompt: PromptParts, options: AnswerOptions) => Promise<Answer>;

/**
 * BOS + the prompt truncated head + tail so that it and the answer fit the window; an answer budget above half
 * the window reserves only half (decoding slides the window once it is full).
 */
export function windowPrompt(model: LlamaModel, tokenizer: Tokenizer, text: string, maxNewTokens: number): { ids: number[]; truncated: boolean } {
  const { maxSeq } = model.config;
  const budget = Math.max(1, maxSeq - 1 - Math.min(maxNewTokens, Math.floor(maxSeq / 2)));
  const { ids, truncated } = headTailIds(tokenizer.encode(text), budget);
  return { ids: [tokenizer.bosId, ...ids], truncated };
}

/** Greedy decoding of the whole prompt (context + question), truncated to the window. */
export function plainAnswerer(model: LlamaModel, tokenizer: Tokenizer): Answerer {
  const newlines = newlineIds(tokenizer);
  return async ({ context, question }, { maxNewTokens, stopAtNewline, gold }) => {
    const { ids } = windowPrompt(model, tokenizer, context + question, maxNewTokens);
    const stopIds = stopAtNewline ? [tokenizer.eosId, ...newlines] : [tokenizer.eosId];
    const produced = await generate(model, ids, { greedy: true, maxNewTokens, stopIds });
    const answer = stopIds.includes(produced.at(-1)!) ? produced.slice(0, -1) : produced;
    const pred = continuationText(tokenizer, ids, answer).trim();
    if (gold === undefined) return { pred };
    // The gold answer as it follows the prompt after a space, read in after the same window (room was kept for it).
    return { pred, extra: { gold_logprob: await continuationLogProb(model, ids, tokenizer.encode(gold.trim()).slice(0, maxNewTokens)) } };
  };
}

/** One example to answer: `key` names it in the predictions file; `fields` are copied into its line (task, index, _id). */
export interface PredictionItem {
  key: string;
  prompt: PromptParts;
  maxNewTokens: number;
  fields: Record<string, unknown>;
  /** The expected answer, handed to the answerer (AnswerOptions.gold). */
  gold?: string;
}

export const PREDICTION_FILES = { records: 'predictions.jsonl', documents: 'predictions-done.jsonl', summary: 'predictions.json' };

export interface PredictionRun {
  items: readonly PredictionItem[];
  answer: Answerer;
  outDir: string;
  settings: Settings;
  stopAtNewline: boolean;
  onItem?: (done: number, total: number) => void;
  /** Answers awaited at once (default 1). */
  concurrency?: number;
}

/** What writes a run's predictions file and returns its path: writePredictions, or the same split across worker processes. */
export type PredictionWriter = (run: PredictionRun) => Promise<string>;

/**
 * Answers every item into `outDir`/predictions.jsonl ({...fields, pred, ...extra}, one line per item, in item
 * order). Items answered by an earlier run with the same settings are skipped, so an interrupted run loses at
 * most the items in flight; other settings in the same folder are refused. With `concurrency` N, N answers are
 * awaited at once (an answerer that decodes in a DecodeBatch then shares decode steps between them); lines are
 * still written in item order, each once those before it are.
 */
export async function writePredictions(run: PredictionRun): Promise<string> {
  const { journal } = DocumentJournal.open<{ doc: string }>(run.outDir, PREDICTION_FILES, run.settings);
  try {
    const answered = new Map<number, object>();
    let next = 0;
    let written = 0;
    const writeReady = (): void => {
      for (; written < run.items.length && (journal.isDone(run.items[written]!.key) || answered.has(written)); written++) {
        const item = run.items[written]!;
        const line = answered.get(written);
        if (line) journal.append([line], { doc: item.key });
        answered.delete(written);
        run.onItem?.(written + 1, run.items.length);
      }
    };
    let failed = false;
    const answerNext = async (): Promise<void> => {
      for (let index = next++; index < run.items.length && !failed; index = next++) {
        const item = run.items[index]!;
        if (journal.isDone(item.key)) continue;
        const { pred, extra } = await run.answer(item.prompt, { maxNewTokens: item.maxNewTokens, stopAtNewline: run.stopAtNewline, gold: item.gold }).catch((error: unknown) => {
          failed = true;
          throw error;
        });
        answered.set(index, { ...item.fields, pred, ...extra, doc: item.key });
        writeReady();
        // Each prompt has its own length (and LIFT its own adapter): drop the GPU buffers pooled for it.
        releaseUnusedGpuMemory();
      }
    };
    const results = await Promise.allSettled(Array.from({ length: Math.max(1, run.concurrency ?? 1) }, answerNext));
    const rejected = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (rejected) throw rejected.reason;
    writeReady();
    journal.finish({ predictions: run.items.length });
  } finally {
    journal.close();
  }
  return `${run.outDir}/${PREDICTION_FILES.records}`;
}
