/**
 * LIFT (long input fine-tuning, arXiv 2502.14644): store one long input in a fresh adapter, then
 * answer questions with a short (head + tail) context. The schedule follows the official code:
 * stage 1 trains on the input's segments, stage 2 on segments plus auxiliary QA, one AdamW
 * (lr 1e-3 constant, wd 1e-4, betas 0.9/0.98, clip 1.0) over the adapter weights only.
 */
import * as tf from '@tensorflow/tfjs';
import { continuationText, generate } from '../infer/generate.ts';
import { inBatches } from '../core/batches.ts';
import { makeRng, shuffleInPlace } from '../core/random.ts';
import { UserError } from '../io/errors.ts';
import type { LlamaModel } from '../model/llama.ts';
import type { Tokenizer } from '../tokenizer/sentencepiece.ts';
import { continuationLogProb } from '../arl/scoring.ts';
import { maskedCrossEntropy } from '../ops/cross-entropy.ts';
import { AdamW, stepOnMeanGradient } from '../train/optimizer.ts';
import { type AdapterKind, adapterVariables, attachAdapter, detachAdapter, type ModelAdapter } from './adapter.ts';
import { createAdapter } from './adapter-file.ts';
import { DEFAULT_PROMPT_TEMPLATE, type QaPair, qaExample, questionPrompt } from './auxiliary-qa.ts';
import { contextualizedExample, type LiftExample, plainSegmentExample, type PromptPieces, promptPieces } from './contextualized-training.ts';
import { defaultSegmentSizes, segmentRanges } from './segmentation.ts';
import { withSentenceOrders } from './sentence-orders.ts';

export interface LiftOptions {
  adapter: AdapterKind;
  loraRank: number;
  loraAlpha: number;
  /** Segment length, stride and head + tail context; null = the paper's scaled to the model window. */
  segmentLength: number | null;
  segmentStride: number | null;
  contextTokens: number | null;
  /** Contextualized training (head + tail + recite prompt before each segment); false = plain segments. */
  contextualized: boolean;
  stage1Epochs: number;
  stage2Epochs: number;
  lr: number;
  weightDecay: number;
  beta1: number;
  beta2: number;
  clip: number;
  /** One optimizer step per epoch with the gradients of the whole epoch (the official code); else one per batch. */
  accumulateEpoch: boolean;
  batch: number;
  seed: number;
  /** Auxiliary QA pairs (stage 2). */
  qa: QaPair[];
  /** liftAnswer trains on the input plus this many minus one copies in other sentence orders (sentence-orders.ts). */
  sentenceOrders: number;
  promptTemplate: string;
  maxNewTokens: number;
  onProgress?: (p: { step: number; total: number; stage: 1 | 2; loss: number }) => void;
  onNote?: (message: string) => void;
}

export const LIFT_DEFAULTS: LiftOptions = {
  adapter: 'gated-memory',
  loraRank: 8,
  loraAlpha: 16,
  segmentLength: null,
  segmentStride: null,
  contextTokens: null,
  contextualized: true,
  stage1Epochs: 3,
  stage2Epochs: 5,
  lr: 1e-3,
  weightDecay: 1e-4,
  beta1: 0.9,
  beta2: 0.98,
  clip: 1.0,
  accumulateEpoch: false,
  batch: 1,
  seed: 0,
  qa: [],
  sentenceOrders: 1,
  promptTemplate: DEFAULT_PROMPT_TEMPLATE,
  maxNewTokens: 16,
};

/** Next-token loss of a padded batch of examples, on each example's loss span only. Call inside tf.tidy. */
function examplesLoss(model: LlamaModel, batch: LiftExample[]): tf.Scalar {
  const seq = Math.max(...batch.map((e) => e.ids.length)) - 1;
  const x = new Int32Array(batch.length * seq);
  const y = new Int32Array(batch.length * seq);
  const mask = new Float32Array(batch.length * seq);
  batch.forEach((e, b) => {
    for (let j = 0; j + 1 < e.ids.length; j++) {
      x[b * seq + j] = e.ids[j];
      y[b * seq + j] = e.ids[j + 1];
      mask[b * seq + j] = j + 1 >= e.lossFrom ? 1 : 0;
    }
  });
  const logits = model.logits(tf.tensor2d(x, [batch.length, seq], 'int32'));
  return maskedCrossEntropy(tf.reshape(logits, [batch.length * seq, -1]) as tf.Tensor2D, tf.tensor1d(y, 'int32'), tf.tensor1d(mask));
}

/** One AdamW step on the mean gradient over `batches` (one batch, or a whole epoch); returns the mean loss. */
async function adapterStep(model: LlamaModel, optimizer: AdamW, batches: LiftExample[][], o: { clip: number; lr: number }): Promise<number> {
  const { loss } = await stepOnMeanGradient(optimizer, batches.map((batch) => () => examplesLoss(model, batch)), o);
  return loss;
}

/** The segment sizes in effect for a model window: flags, else the paper's scaled; the context shrinks to fit. */
export function resolveSegmentSizes(window: number, o: Pick<LiftOptions, 'segmentLength' | 'segmentStride' | 'contextTokens'>, reciteTokens: number) {
  const d = defaultSegmentSizes(window);
  const length = o.segmentLength ?? d.length;
  const stride = o.segmentStride ?? d.stride;
  if (length + 1 > window) throw new UserError(`--segment-length ${length} does not fit the model's window of ${window} tokens`);
  const context = Math.max(0, Math.min(o.contextTokens ?? d.context, window - 1 - reciteTokens - length));
  return { length, stride, context };
}

export interface LiftTraining {
  adapter: ModelAdapter;
  losses: number[];
  segments: number;
  seconds: number;
}

/**
 * Trains a fresh adapter on `input` (token ids, no bos) and leaves it attached to `model`. The
 * base weights are never updated: only the adapter's variables are given to the optimizer.
 */
export async function trainLiftAdapter(model: LlamaModel, tokenizer: Tokenizer, input: number[], options: Partial<LiftOptions> = {}): Promise<LiftTraining> {
  const o = { ...LIFT_DEFAULTS, ...options };
  if (input.length === 0) throw new UserError('the input is empty: nothing to train on');
  const started = performance.now();
  const window = model.config.maxSeq;
  const pieces = promptPieces(tokenizer);
  const sizes = resolveSegmentSizes(window, o, pieces.recite.length);
  const ranges = segmentRanges(input.length, sizes.length, sizes.stride);
  if (input.length < sizes.length) o.onNote?.(`the input has ${input.length} tokens, shorter than one segment (${sizes.length}): training on it as a single segment`);
  const rng = makeRng(o.seed);
  const segmentExamples = (): LiftExample[] =>
    ranges.map(([s, e]) => (o.contextualized ? contextualizedExample(input, input.slice(s, e), sizes.context, pieces, rng) : plainSegmentExample(input.slice(s, e), pieces)));
  const qaExamples = o.qa.map((qa) => qaExample(tokenizer, input, qa, o.promptTemplate, pieces, window));

  const adapter = createAdapter(o.adapter, model.config, { rank: o.loraRank, alpha: o.loraAlpha }, o.seed);
  attachAdapter(model, adapter);
  const optimizer = new AdamW(adapterVariables(adapter), { beta1: o.beta1, beta2: o.beta2, eps: 1e-8, weightDecay: o.weightDecay });
  const epochs: (1 | 2)[] = [...Array(o.stage1Epochs).fill(1), ...Array(o.stage2Epochs).fill(2)];
  const perEpoch = (stage: 1 | 2) => Math.ceil((ranges.length + (stage === 2 ? qaExamples.length : 0)) / o.batch);
  const total = o.accumulateEpoch ? epochs.length : epochs.reduce((sum, stage) => sum + perEpoch(stage), 0);
  const losses: number[] = [];
  try {
    for (const stage of epochs) {
      const examples = shuffleInPlace(rng, [...segmentExamples(), ...(stage === 2 ? qaExamples : [])]);
      const batches = inBatches(examples, o.batch);
      for (const group of o.accumulateEpoch ? [batches] : batches.map((b) => [b])) {
        const loss = await adapterStep(model, optimizer, group, { clip: o.clip, lr: o.lr });
        losses.push(loss);
        o.onProgress?.({ step: losses.length, total, stage, loss });
      }
    }
  } catch (err) {
    detachAdapter(model);
    adapter.dispose();
    throw err;
  } finally {
    optimizer.dispose();
  }
  return { adapter, losses, segments: ranges.length, seconds: (performance.now() - started) / 1000 };
}

/** Greedy answers with the model as it is (adapter attached or not); prompts are cut head + tail to the window. */
export async function answerQuestions(model: LlamaModel, tokenizer: Tokenizer, input: number[], questions: string[], options: Partial<Pick<LiftOptions, 'promptTemplate' | 'maxNewTokens'>> = {}): Promise<string[]> {
  const { promptTemplate, maxNewTokens } = { ...LIFT_DEFAULTS, ...options };
  const pieces: PromptPieces = promptPieces(tokenizer);
  const answers: string[] = [];
  for (const question of questions) {
    const prompt = questionPrompt(tokenizer, input, question, promptTemplate, pieces, model.config.maxSeq, maxNewTokens);
    const ids = await generate(model, prompt, { greedy: true, maxNewTokens, stopIds: [tokenizer.eosId] });
    answers.push(continuationText(tokenizer, prompt, ids).split('\n')[0].trim());
  }
  return answers;
}

/**
 * log p(answer | the question's prompt) for each question and its given answer, summed over the answer's
 * tokens, with the model as it is: the same head + tail prompt the greedy answers see.
 */
export async function answerLogProbs(
  model: LlamaModel,
  tokenizer: Tokenizer,
  input: number[],
  questions: string[],
  answers: string[],
  options: Partial<Pick<LiftOptions, 'promptTemplate' | 'maxNewTokens'>> = {},
): Promise<number[]> {
  const { promptTemplate, maxNewTokens } = { ...LIFT_DEFAULTS, ...options };
  const pieces: PromptPieces = promptPieces(tokenizer);
  const out: number[] = [];
  for (const [k, question] of questions.entries()) {
    const prompt = questionPrompt(tokenizer, input, question, promptTemplate, pieces, model.config.maxSeq, maxNewTokens);
    // The answer as it follows the prompt after a space: its own encoding (pieces never span a space).
    out.push(await continuationLogProb(model, prompt, tokenizer.encode(answers[k]!.trim())));
  }
  return out;
}

/**
 * The tokens LIFT trains on: the input's own `tokens`, or with `sentenceOrders` > 1 the input plus copies in
 * other sentence orders (ours, sentence-orders.ts). Answering prompts are always cut from the input as given.
 */
export function liftTrainingTokens(tokenizer: Tokenizer, input: string, tokens: number[], opts: Partial<Pick<LiftOptions, 'sentenceOrders' | 'seed'>>): number[] {
  const orders = opts.sentenceOrders ?? LIFT_DEFAULTS.sentenceOrders;
  return orders > 1 ? tokenizer.encode(withSentenceOrders(input, orders, makeRng(opts.seed ?? LIFT_DEFAULTS.seed))) : tokens;
}

/**
 * The evaluation entry point (contracts.md): trains a fresh adapter on `input`, answers each
 * question, removes and frees the adapter, leaving `model` as it was. With `compareIcl`, also the
 * answers of the model without the adapter (in-context only, same truncated prompt).
 */
export async function liftAnswer(
  model: LlamaModel,
  tokenizer: Tokenizer,
  input: string,
  questions: string[],
  opts: Partial<LiftOptions> & { compareIcl?: boolean; goldAnswers?: string[]; controlAnswers?: string[] } = {},
): Promise<{
  answers: string[];
  iclAnswers?: string[];
  goldLogProbs?: number[];
  iclGoldLogProbs?: number[];
  controlLogProbs?: number[];
  iclControlLogProbs?: number[];
  trainSeconds: number;
  inputTokens: number;
}> {
  const tokens = tokenizer.encode(input);
  const { goldAnswers: gold, controlAnswers: control } = opts;
  const logProbs = (answers: string[] | undefined) => (answers ? answerLogProbs(model, tokenizer, tokens, questions, answers, opts) : undefined);
  const iclAnswers = opts.compareIcl ? await answerQuestions(model, tokenizer, tokens, questions, opts) : undefined;
  const iclGoldLogProbs = opts.compareIcl ? await logProbs(gold) : undefined;
  const iclControlLogProbs = opts.compareIcl ? await logProbs(control) : undefined;
  const { adapter, seconds } = await trainLiftAdapter(model, tokenizer, liftTrainingTokens(tokenizer, input, tokens, opts), opts);
  try {
    const answers = await answerQuestions(model, tokenizer, tokens, questions, opts);
    const goldLogProbs = await logProbs(gold);
    const controlLogProbs = await logProbs(control);
    return {
      answers,
      ...(iclAnswers ? { iclAnswers } : {}),
      ...(goldLogProbs ? { goldLogProbs, iclGoldLogProbs } : {}),
      ...(controlLogProbs ? { controlLogProbs, iclControlLogProbs } : {}),
      trainSeconds: seconds,
      inputTokens: tokens.length,
    };
  } finally {
    detachAdapter(model);
    adapter.dispose();
  }
}
