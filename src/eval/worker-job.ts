/**
 * One worker's share of an evaluation stage (`arl experiment --workers N`): the job the parent writes, and
 * running it in the child. The child loads the checkpoint itself and writes only into its own shard folder.
 */
import { readFileSync } from 'node:fs';
import type { Settings } from '../arl/journal.ts';
import type { RecapDataStep, ScoringSteps } from '../arl/pipeline.ts';
import type { ProgressStep, StepCount } from '../arl/progress-log.ts';
import type { RecapTotals } from '../arl/recap.ts';
import { loadModel } from '../io/checkpoint.ts';
import { Tokenizer } from '../tokenizer/sentencepiece.ts';
import { type AnswerMode, makeAnswerer } from './answerers.ts';
import { liftExperimentAnswerer, liftGold, type LiftSchedule } from './experiment-lift.ts';
import { type Answerer, type PredictionItem, writePredictions } from './predict.ts';
import { readRulerSamples } from './ruler-score.ts';

/** How a worker answers: what it cannot be handed as a function, so it rebuilds it from these. */
export type WorkerAnswerer =
  | { kind: 'answerer'; mode: AnswerMode; recapThreshold?: number; concurrency?: number }
  | { kind: 'lift'; schedule: LiftSchedule; dataPath: string };

/** What the parent hands a worker besides the items: the checkpoint and tokenizer to load, and the answerer. */
export interface WorkerModel {
  checkpoint: string;
  tokenizer: string;
  answerer: WorkerAnswerer;
}

export interface WorkerJob extends WorkerModel {
  /** The worker's shard folder: a predictions journal of its own. */
  outDir: string;
  settings: Settings;
  stopAtNewline: boolean;
  items: PredictionItem[];
}

/** Messages a worker of the arl-data stage sends its parent (arl-data-workers.ts): progress, each step's line as it ends, and the totals. */
export type RecapWorkerMessage =
  | { type: 'recap-progress'; step: ProgressStep; count: StepCount }
  | { type: 'recap-step'; step: RecapDataStep['step']; line: string }
  | { type: 'recap-steps'; scoring: ScoringSteps; recaps: RecapTotals | null };

/** Messages a worker sends its parent. */
export type WorkerMessage = { type: 'progress'; done: number; answered: number } | { type: 'error'; message: string } | RecapWorkerMessage;

export function readWorkerJob(path: string): WorkerJob {
  return JSON.parse(readFileSync(path, 'utf8')) as WorkerJob;
}

/**
 * Answers the job's items into its shard folder; items done by an earlier run of the same shard are skipped.
 * `onItem` gets the items done so far (skipped ones included) and those answered in this run.
 */
export async function runWorkerJob(job: WorkerJob, onItem: (done: number, answered: number) => void): Promise<void> {
  const tokenizer = await Tokenizer.load(job.tokenizer);
  const { model } = loadModel(job.checkpoint);
  try {
    const spec = job.answerer;
    const inner = spec.kind === 'lift'
      ? liftExperimentAnswerer(model, tokenizer, liftGold((await readRulerSamples(spec.dataPath)).map((e) => e.sample)), spec.schedule)
      : makeAnswerer(spec.mode, model, tokenizer, { recapThreshold: spec.recapThreshold, concurrency: spec.concurrency });
    let answered = 0;
    const answer: Answerer = async (prompt, options) => {
      // A turn of the event loop before each example: on the cpu backend the work awaits only microtasks, and
      // without one the closing of the parent's channel (the parent was killed) would go unnoticed to the end.
      await new Promise((resolve) => setImmediate(resolve));
      const result = await inner(prompt, options);
      answered++;
      return result;
    };
    const concurrency = spec.kind === 'answerer' ? spec.concurrency : 1;
    await writePredictions({ items: job.items, answer, outDir: job.outDir, settings: job.settings, stopAtNewline: job.stopAtNewline, onItem: (done) => onItem(done, answered), concurrency });
  } finally {
    model.dispose();
  }
}
