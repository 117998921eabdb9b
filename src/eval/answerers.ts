/** The ways of answering a long prompt that evaluation compares: plain (truncated window), the ARL recap agent, LIFT. */
import { DecodeBatch } from '../infer/decode-session.ts';
import { answerWithRecaps, DEFAULT_ANSWER } from '../infer/recap-agent.ts';
import { UserError } from '../io/errors.ts';
import { liftAnswer } from '../lift/lift.ts';
import type { LlamaModel } from '../model/llama.ts';
import type { Tokenizer } from '../tokenizer/sentencepiece.ts';
import { type Answerer, plainAnswerer } from './predict.ts';
import type { AgentWork } from './ruler-eval.ts';

export const ANSWER_MODES = ['plain', 'recap-agent', 'lift'] as const;
export type AnswerMode = (typeof ANSWER_MODES)[number];

/** The mode chosen by the --recap-agent / --lift flags (neither: plain). */
export function answerModeOf(flags: { recapAgent?: boolean; lift?: boolean }): AnswerMode {
  if (flags.recapAgent && flags.lift) throw new UserError('--recap-agent and --lift are two different methods; pass one of them');
  return flags.recapAgent ? 'recap-agent' : flags.lift ? 'lift' : 'plain';
}

export interface AnswererOptions {
  /** LIFT's epochs of stage 1 (segments) and stage 2 (segments + QA); default the paper's 3 and 5. */
  liftEpochs?: [number, number];
  /** The recap agent's threshold on P(`<recap>`) at paragraph ends (default DEFAULT_ANSWER's); above 1 it never recaps. */
  recapThreshold?: number;
  /** Answers the caller awaits at once (writePredictions' concurrency): the recap agent decodes them in one DecodeBatch. */
  concurrency?: number;
}

export function makeAnswerer(mode: AnswerMode, model: LlamaModel, tokenizer: Tokenizer, options: AnswererOptions = {}): Answerer {
  if (mode === 'plain') return plainAnswerer(model, tokenizer);
  if (mode === 'recap-agent') return recapAgentAnswerer(model, tokenizer, options.recapThreshold ?? DEFAULT_ANSWER.recapThreshold, options.concurrency ?? 1);
  return liftAnswerer(model, tokenizer, options);
}

/**
 * LIFT: a fresh adapter trained on the context, then a greedy answer to the question line appended as given
 * (context truncated head + tail); the same prompt without the adapter is kept as the truncated-ICL answer.
 */
function liftAnswerer(model: LlamaModel, tokenizer: Tokenizer, options: AnswererOptions): Answerer {
  const [stage1Epochs, stage2Epochs] = options.liftEpochs ?? [3, 5];
  return async ({ context, question }, { maxNewTokens }) => {
    const result = await liftAnswer(model, tokenizer, context, [question], {
      stage1Epochs,
      stage2Epochs,
      promptTemplate: '{context}{question}',
      maxNewTokens: Math.min(maxNewTokens, Math.floor(model.config.maxSeq / 4)),
      compareIcl: true,
    });
    return { pred: result.answers[0]!, extra: { icl_pred: result.iclAnswers![0]!, lift_train_seconds: Math.round(result.trainSeconds * 10) / 10 } };
  };
}

/**
 * The ARL recap agent: reads the context in runs, writing recaps where the model opens one, then answers the
 * question line as given (RULER and LongBench questions carry their own answer prefix).
 */
function recapAgentAnswerer(model: LlamaModel, tokenizer: Tokenizer, recapThreshold: number, concurrency: number): Answerer {
  // Freed when its last answer ends, opened again by the next.
  const batch = concurrency > 1 ? new DecodeBatch(model, concurrency, true) : undefined;
  return async ({ context, question }, { maxNewTokens, gold }) => {
    // The question, the answer budget and the agent's memory share the window: long budgets are capped.
    const maxAnswerTokens = Math.min(maxNewTokens, Math.floor(model.config.maxSeq / 4));
    const result = await answerWithRecaps(model, tokenizer, context, question, { ...DEFAULT_ANSWER, recapThreshold, maxAnswerTokens, rawQuestion: true, batch, goldAnswer: gold, tailOnly: recapThreshold > 1 });
    const { rebuilds, prefilledTokens, prefillSeconds, decodedTokens, decodeSeconds } = result.stats;
    const round = (seconds: number): number => Math.round(seconds * 1000) / 1000;
    // Where an answer's time went (awaited seconds overlap between answers decoded together).
    const agent: AgentWork = { rebuilds, prefilled_tokens: prefilledTokens, prefill_s: round(prefillSeconds), decoded_tokens: decodedTokens, decode_s: round(decodeSeconds) };
    return { pred: result.answer, extra: { recaps: result.recaps, agent, ...(result.goldLogProb === undefined ? {} : { gold_logprob: result.goldLogProb }) } };
  };
}
