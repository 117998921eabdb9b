/** Running a model on RULER-style samples: predictions (resumable), scores per task, and which answers the truncated window still holds. */
import { join } from 'node:path';
import type { Settings } from '../arl/journal.ts';
import { readJsonLines } from '../io/jsonl.ts';
import { writeFileAtomic } from '../io/atomic.ts';
import type { LlamaModel } from '../model/llama.ts';
import type { Tokenizer } from '../tokenizer/sentencepiece.ts';
import { pythonRound } from './metrics.ts';
import { type Answerer, type PredictionWriter, type PromptParts, windowPrompt, writePredictions } from './predict.ts';
import { readRulerSamples, RULER_ANSWER_TOKENS, type RulerTaskScore, scoreRuler, scoreRulerExample } from './ruler-score.ts';
import { needlesIn, type RulerTask } from './ruler-tasks.ts';

/** RULER prompts end with one line holding the question and the answer prefix; the context is everything before it. */
export function splitRulerPrompt(input: string): PromptParts {
  const cut = input.lastIndexOf('\n') + 1;
  return { context: input.slice(0, cut), question: input.slice(cut) };
}

export interface RulerExampleResult {
  task: RulerTask;
  index: number;
  length: number;
  depth: number | null;
  /** 0..1 by the task's metric. */
  score: number;
  /** Every expected string is still in the prompt after head + tail truncation to the model's window. */
  in_context: boolean;
  pred: string;
  /** Score of the same prompt answered in context only, where the method records that answer (LIFT's icl_pred). */
  icl_score?: number;
  /** Recaps the recap agent wrote, and whether they hold every expected string (recap-agent answers only). */
  recaps_written?: number;
  recaps_hold_answer?: boolean;
  /** Whether one recap holds each expected string together with the key its needle gives it (needle tasks only). */
  recaps_pair_key?: boolean;
  /**
   * A wrong answer that gives the value of a needle other than the one asked for (needle tasks only): the model
   * copied a value but matched the wrong key, as against making one up.
   */
  answered_other_needle?: boolean;
  /** The recap agent's work for this answer (recap-agent answers only): tokens prefilled and decoded, seconds awaited. */
  agent?: AgentWork;
  /** log P(the expected answer | the method's prompt), for one-answer tasks where the method records it (plain, recap agent). */
  gold_logprob?: number;
}

export interface AgentWork {
  rebuilds: number;
  prefilled_tokens: number;
  prefill_s: number;
  decoded_tokens: number;
  decode_s: number;
}

export interface RulerEvalResult {
  tasks: Record<string, RulerTaskScore>;
  /** Mean of the task scores (0..100), as RULER averages. */
  average: number;
  examples: RulerExampleResult[];
}

/**
 * What the recaps of one answer held: every expected string, and each with its needle's key in one recap. A recap
 * can hold the value under a key it made up; only one that pairs them can tell the answer which value is asked for.
 */
export function recapFields(input: string, outputs: readonly string[], recaps: readonly string[]): Pick<RulerExampleResult, 'recaps_written' | 'recaps_hold_answer' | 'recaps_pair_key'> {
  const needles = needlesIn(input);
  const keys = outputs.map((o) => needles.find((n) => n.value === o)?.key);
  return {
    recaps_written: recaps.length,
    recaps_hold_answer: outputs.every((o) => recaps.some((r) => r.includes(o))),
    ...(keys.every((k) => k !== undefined) ? { recaps_pair_key: outputs.every((o, i) => recaps.some((r) => r.includes(o) && r.includes(keys[i]!))) } : {}),
  };
}

/** answered_other_needle for a prompt with needles and a wrong answer; nothing otherwise. */
export function otherNeedleField(input: string, outputs: readonly string[], pred: string, score: number): Pick<RulerExampleResult, 'answered_other_needle'> {
  const needles = needlesIn(input);
  if (needles.length === 0 || score === 1) return {};
  return { answered_other_needle: needles.some((n) => !outputs.includes(n.value) && pred.includes(n.value)) };
}

/** Answers every sample of `dataPath` into `outDir` (predictions.jsonl, scores.json) and scores them. */
export async function evaluateRulerModel(run: {
  model: LlamaModel;
  tokenizer: Tokenizer;
  dataPath: string;
  outDir: string;
  answer: Answerer;
  settings: Settings;
  onItem?: (done: number, total: number) => void;
  /** Default writePredictions, in this process. */
  predict?: PredictionWriter;
  /** Answers awaited at once (PredictionRun.concurrency). */
  concurrency?: number;
}): Promise<RulerEvalResult> {
  const samples = (await readRulerSamples(run.dataPath)).map((entry) => entry.sample);
  const keyOf = (task: string, index: number): string => `${task}#${index}`;
  const predictionsFile = await (run.predict ?? writePredictions)({
    items: samples.map((s) => ({
      key: keyOf(s.task, s.index),
      prompt: splitRulerPrompt(s.input),
      maxNewTokens: RULER_ANSWER_TOKENS[s.task],
      fields: { task: s.task, index: s.index },
      ...(s.outputs.length === 1 ? { gold: s.outputs[0] } : {}),
    })),
    answer: run.answer,
    outDir: run.outDir,
    settings: run.settings,
    stopAtNewline: true,
    onItem: run.onItem,
    concurrency: run.concurrency,
  });
  const lines = new Map(readJsonLines<{ doc: string; pred: string; icl_pred?: string; recaps?: string[]; agent?: AgentWork; gold_logprob?: number }>(predictionsFile).map((p) => [p.doc, p]));
  const predictions = new Map([...lines].map(([key, line]) => [key, line.pred]));
  const examples = samples.map((s): RulerExampleResult => {
    const pred = predictions.get(keyOf(s.task, s.index))!;
    const { icl_pred: iclPred, recaps, agent, gold_logprob: goldLogProb } = lines.get(keyOf(s.task, s.index))!;
    const window = run.tokenizer.decode(windowPrompt(run.model, run.tokenizer, s.input, RULER_ANSWER_TOKENS[s.task]).ids);
    const score = scoreRulerExample(s.task, pred, s.outputs);
    return {
      task: s.task,
      index: s.index,
      length: s.length,
      depth: s.depth,
      score,
      in_context: s.outputs.every((output) => window.includes(output)),
      pred,
      ...otherNeedleField(s.input, s.outputs, pred, score),
      ...(iclPred === undefined ? {} : { icl_score: scoreRulerExample(s.task, iclPred, s.outputs) }),
      ...(recaps === undefined ? {} : recapFields(s.input, s.outputs, recaps)),
      ...(agent === undefined ? {} : { agent }),
      ...(goldLogProb === undefined ? {} : { gold_logprob: goldLogProb }),
    };
  });
  const tasks = scoreRuler(samples.map((s) => ({ task: s.task, pred: predictions.get(keyOf(s.task, s.index))!, outputs: s.outputs })));
  const scores = Object.values(tasks).map((t) => t.score);
  const average = pythonRound(scores.reduce((a, b) => a + b, 0) / scores.length, 2);
  const result = { tasks, average, examples };
  writeFileAtomic(join(run.outDir, 'scores.json'), `${JSON.stringify({ data: run.dataPath, ...run.settings, ...result }, null, 2)}\n`);
  return result;
}
