/**
 * LIFT against truncated in-context answering on the same prompt: for each test document a fresh adapter is
 * trained on the context, then the greedy answer and the gold answer's log-probability are taken with and
 * without it. Resumable: each finished document is a line of predictions.jsonl. There is no LLM to write
 * auxiliary QA, so a variant either has none or has cloze pairs (src/lift/auxiliary-qa.ts) made from the
 * document's context alone: random sentences, never the test question or its answer.
 */
import { makeRng } from '../core/random.ts';
import { readJsonLines } from '../io/jsonl.ts';
import { clozeQaPairs } from '../lift/auxiliary-qa.ts';
import { LIFT_DEFAULTS, liftAnswer } from '../lift/lift.ts';
import type { LlamaModel } from '../model/llama.ts';
import type { Tokenizer } from '../tokenizer/sentencepiece.ts';
import type { LiftExample } from './experiment-claims.ts';
import { type Answerer, type PredictionWriter, windowPrompt, writePredictions } from './predict.ts';
import type { RulerSample } from './ruler.ts';
import { readRulerSamples, RULER_ANSWER_TOKENS, scoreRulerExample } from './ruler-score.ts';
import { splitRulerPrompt } from './ruler-eval.ts';

/**
 * The context of each sample mapped to its gold answer and a control: the next sample's answer, a value of the same
 * kind that this context does not hold. An adapter that stored the needle raises the gold answer's log-probability
 * more than the control's; one that only learned the kind of text raises both alike.
 */
export function liftGold(samples: readonly Pick<RulerSample, 'input' | 'outputs'>[]): Map<string, { gold: string; control: string }> {
  return new Map(
    samples.map((s, i) => {
      const gold = s.outputs[0]!;
      const other = [...samples.slice(i + 1), ...samples.slice(0, i)].find((o) => o.outputs[0] !== gold && !s.input.includes(o.outputs[0]!));
      return [splitRulerPrompt(s.input).context, { gold, control: other?.outputs[0] ?? gold }];
    }),
  );
}

/** Whether an auxiliary QA pair overlaps the test: its question or answer holds the test's gold answer (a cloze of the needle's sentence). */
export function holdsAnswer(pair: { question: string; answer: string }, gold: string): boolean {
  return pair.question.includes(gold) || pair.answer.includes(gold);
}

/** How a LIFT variant trains: its epochs (stage 1, stage 2), its cloze QA pairs per document, and how it steps. */
export interface LiftSchedule {
  epochs: readonly [number, number];
  /** Cloze QA pairs from the context in stage 2 (0 or absent: no auxiliary QA). */
  clozeQa?: number;
  /** One AdamW step per batch of this many examples; absent: one step per epoch on its whole gradient (the official code). */
  stepBatch?: number;
}

/**
 * LIFT's answer to one prompt (a fresh adapter on its context), with the truncated in-context answer and both gold
 * log-probabilities. With `clozeQa` > 0, stage 2 also trains on that many cloze pairs from the context (the same
 * pairs for the same context, whichever process answers it).
 */
export function liftExperimentAnswerer(model: LlamaModel, tokenizer: Tokenizer, gold: ReadonlyMap<string, { gold: string; control: string }>, schedule: LiftSchedule): Answerer {
  const { epochs, clozeQa = 0, stepBatch } = schedule;
  return async ({ context, question }, { maxNewTokens }) => {
    const answers = gold.get(context)!;
    const qa = clozeQa > 0 ? clozeQaPairs(context, tokenizer, makeRng(LIFT_DEFAULTS.seed), { count: clozeQa }) : [];
    const result = await liftAnswer(model, tokenizer, context, [question], {
      stage1Epochs: epochs[0],
      stage2Epochs: epochs[1],
      qa,
      // The official code's schedule: one AdamW step per epoch on the whole epoch's gradient. Segments go 16 to a
      // forward pass: one per pass took about 40 s per 4x document on an H200, 300 small dispatch-bound steps.
      ...(stepBatch === undefined ? { accumulateEpoch: true, batch: 16 } : { accumulateEpoch: false, batch: stepBatch }),
      promptTemplate: '{context}{question}',
      maxNewTokens: Math.min(maxNewTokens, Math.floor(model.config.maxSeq / 4)),
      compareIcl: true,
      goldAnswers: [answers.gold],
      controlAnswers: [answers.control],
    });
    return {
      pred: result.answers[0]!,
      extra: {
        icl_pred: result.iclAnswers![0]!,
        gold_logprob: result.goldLogProbs![0]!,
        icl_gold_logprob: result.iclGoldLogProbs![0]!,
        control: answers.control,
        control_logprob: result.controlLogProbs![0]!,
        icl_control_logprob: result.iclControlLogProbs![0]!,
        ...(clozeQa > 0 ? { qa_pairs: qa.length, qa_pairs_with_answer: qa.filter((pair) => holdsAnswer(pair, answers.gold)).length } : {}),
        lift_train_seconds: Math.round(result.trainSeconds * 10) / 10,
      },
    };
  };
}

export async function evaluateLift(run: {
  model: LlamaModel;
  tokenizer: Tokenizer;
  dataPath: string;
  outDir: string;
  schedule: LiftSchedule;
  variant: string;
  log?: (message: string) => void;
  /** Default writePredictions, in this process (which then logs progress per document). */
  predict?: PredictionWriter;
}): Promise<LiftExample[]> {
  const { model, tokenizer } = run;
  const samples = (await readRulerSamples(run.dataPath)).map((entry) => entry.sample);
  const started = performance.now();
  const file = await (run.predict ?? writePredictions)({
    items: samples.map((s) => ({ key: String(s.index), prompt: splitRulerPrompt(s.input), maxNewTokens: RULER_ANSWER_TOKENS[s.task], fields: { index: s.index } })),
    answer: liftExperimentAnswerer(model, tokenizer, liftGold(samples), run.schedule),
    outDir: run.outDir,
    settings: { variant: run.variant, epochs: run.schedule.epochs.join(' '), data: run.dataPath, ...(run.schedule.clozeQa ? { cloze_qa: run.schedule.clozeQa } : {}), ...(run.schedule.stepBatch ? { step_batch: run.schedule.stepBatch } : {}) },
    stopAtNewline: true,
    onItem: (done, total) => {
      const rate = done / ((performance.now() - started) / 1000);
      run.log?.(`  LIFT ${run.variant}: ${done}/${total} documents, ${rate.toFixed(2)}/s, ETA ${Math.round((total - done) / rate)} s`);
    },
  });
  type Line = { doc: string; pred: string; icl_pred: string; gold_logprob: number; icl_gold_logprob: number; control_logprob?: number; icl_control_logprob?: number; qa_pairs_with_answer?: number };
  const lines = new Map(readJsonLines<Line>(file).map((l) => [l.doc, l]));
  return samples.map((s) => {
    const line = lines.get(String(s.index))!;
    const window = tokenizer.decode(windowPrompt(model, tokenizer, s.input, RULER_ANSWER_TOKENS[s.task]).ids);
    return {
      variant: run.variant,
      index: s.index,
      depth: s.depth,
      pred: line.pred,
      icl_pred: line.icl_pred,
      score: scoreRulerExample(s.task, line.pred, s.outputs),
      icl_score: scoreRulerExample(s.task, line.icl_pred, s.outputs),
      gold_logprob: line.gold_logprob,
      icl_gold_logprob: line.icl_gold_logprob,
      // Absent from predictions made before the control was recorded.
      control_logprob: line.control_logprob ?? null,
      icl_control_logprob: line.icl_control_logprob ?? null,
      in_context: s.outputs.every((o) => window.includes(o)),
      qa_pairs_with_answer: line.qa_pairs_with_answer ?? null,
    };
  });
}
