/** The ways of answering a long prompt that evaluation compares: plain (truncated window), the ARL recap agent, LIFT. */
import { UserError } from '../io/errors.ts';
import type { LlamaModel } from '../model/llama.ts';
import type { Tokenizer } from '../tokenizer/sentencepiece.ts';
import { type Answerer, plainAnswerer } from './predict.ts';

export const ANSWER_MODES = ['plain', 'recap-agent', 'lift'] as const;
export type AnswerMode = (typeof ANSWER_MODES)[number];

/** The mode chosen by the --recap-agent / --lift flags (neither: plain). */
export function answerModeOf(flags: { recapAgent?: boolean; lift?: boolean }): AnswerMode {
  if (flags.recapAgent && flags.lift) throw new UserError('--recap-agent and --lift are two different methods; pass one of them');
  return flags.recapAgent ? 'recap-agent' : flags.lift ? 'lift' : 'plain';
}

export function makeAnswerer(mode: AnswerMode, model: LlamaModel, tokenizer: Tokenizer): Answerer {
  if (mode === 'plain') return plainAnswerer(model, tokenizer);
  throw new UserError(`--${mode} is not available in this build yet; run without it for plain answers`);
}
