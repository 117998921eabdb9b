/** Flags and set-up shared by the commands that run a model on benchmark prompts (arl ruler eval, arl longbench). */
import { type AnswerMode, answerModeOf, makeAnswerer } from '../eval/answerers.ts';
import type { Answerer } from '../eval/predict.ts';
import type { Settings } from '../arl/journal.ts';
import type { LlamaModel } from '../model/llama.ts';
import type { Tokenizer } from '../tokenizer/sentencepiece.ts';
import { BACKEND_FLAGS, loadModelAndTokenizer, startBackend } from './common.ts';
import { type ArgsOf, defineOptions } from './options.ts';

/** Besides --backend; the commands add their own --data. */
export const ANSWER_FLAGS = defineOptions({
  checkpoint: { type: 'string', describe: 'run this model on the prompts (greedy, prompt truncated head + tail to its window)' },
  tokenizer: { type: 'string', describe: "SentencePiece model (default: the checkpoint's, else the bundled one)" },
  'recap-agent': { type: 'boolean', default: false, describe: 'answer with the ARL recap agent (recaps as memory over a long input)' },
  lift: { type: 'boolean', default: false, describe: 'answer with LIFT (a fresh adapter trained on each input)' },
  'pred-dir': { type: 'string', describe: 'folder for predictions.jsonl and scores.json of a model run (a rerun resumes it)' },
});

type AnswerArgs = ArgsOf<typeof ANSWER_FLAGS & typeof BACKEND_FLAGS>;

export interface OpenAnswerer {
  model: LlamaModel;
  tokenizer: Tokenizer;
  answer: Answerer;
  mode: AnswerMode;
  /** What a predictions folder records, so a rerun with another model or mode is refused rather than mixed in. */
  settings: Settings;
}

/** Starts the backend and loads the checkpoint with the answerer the flags choose; the caller disposes the model. */
export async function openAnswerer(args: AnswerArgs & { checkpoint: string }): Promise<OpenAnswerer> {
  const mode = answerModeOf(args);
  await startBackend(args.backend);
  const { model, tokenizer, checkpointDir } = await loadModelAndTokenizer(args.checkpoint, { tokenizer: args.tokenizer, needTokenizer: true });
  return { model, tokenizer: tokenizer!, answer: makeAnswerer(mode, model, tokenizer!), mode, settings: { checkpoint: checkpointDir, mode } };
}
