/**
 * The experiment's arl-data stage split across worker processes (`arl experiment --workers N`): worker k runs
 * ARL steps 1-2 on shard k of N of the corpus (shard.ts: document i goes to shard i mod N), and step 3 too when
 * the recapper is the extractive one (it scores with the model); each loads the checkpoint itself and writes
 * <arl>/shard-k-of-N, resuming what an interrupted run left there. The parent makes the LLM recaps of every
 * shard itself (one recapper, one cache), then merges the shard folders in corpus order into step 4, whose
 * output is the same, byte for byte, as one process's. It logs progress across the workers as one stage.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { augmentRecapData, buildRecaps, buildScoringSteps, recapCounts, type RecapDataRun, type RecapDataStep, type RecapDataSummary, type RecapSteps, type ScoringSteps } from '../arl/pipeline.ts';
import { nextStep, type ProgressStep, progressText, recapDataCounts, recapDataProgressLog, STEP_NAMES, type StepCount, StepThrottle, stepDoneText } from '../arl/progress-log.ts';
import { RECAP_FILES, type RecapperName, type RecapTotals } from '../arl/recap.ts';
import { shardFolder, type ShardSettings, shardSize } from '../arl/shard.ts';
import { loadModel, weightsSha256 } from '../io/checkpoint.ts';
import { Tokenizer } from '../tokenizer/sentencepiece.ts';
import type { RecapWorkerMessage } from './worker-job.ts';
import { spawnWorkers, type WorkerPool, WORKERS_FOLDER } from './workers.ts';

/** What the parent hands worker k: its shard of the corpus and where its folder is. */
export interface RecapStepsJob {
  kind: 'recap-steps';
  checkpoint: string;
  tokenizer: string;
  corpus: string;
  /** The corpus's documents (all shards). */
  corpusDocuments: number;
  /** The shard folder. */
  outDir: string;
  shard: ShardSettings;
  recapper: RecapperName;
  /** Whether the worker makes the recaps (the extractive recapper); else the parent makes them. */
  recaps: boolean;
}

export function isRecapStepsJob(job: object): job is RecapStepsJob {
  return (job as { kind?: string }).kind === 'recap-steps';
}

/** In the worker: steps 1-2 (and 3) of the job's shard, sending progress, each finished step's line, and the totals. */
export async function runRecapStepsJob(job: RecapStepsJob, send: (message: RecapWorkerMessage) => void): Promise<void> {
  const tokenizer = await Tokenizer.load(job.tokenizer);
  const { model, ckpt } = loadModel(job.checkpoint);
  try {
    const documents = shardSize(job.corpusDocuments, { index: job.shard.shard_index, count: job.shard.shard_count });
    const progress = recapDataCounts(documents, {
      count: (step, count) => send({ type: 'recap-progress', step, count }),
      step: (d) => send({ type: 'recap-step', step: d.step, line: stepDoneText(d) }),
    });
    const run: RecapDataRun = { model, tokenizer, checkpoint: ckpt.dir, corpus: job.corpus, outDir: job.outDir, recapper: job.recapper, window: model.config.maxSeq, shard: job.shard, progress };
    const scoring = await buildScoringSteps(run);
    const recaps = job.recaps ? await buildRecaps(run) : null;
    send({ type: 'recap-steps', scoring, recaps });
  } finally {
    model.dispose();
  }
}

/** Progress lines across the workers: the earliest step any worker is still in, its counts summed over all of them. */
export class ShardProgress {
  private readonly current: { step: ProgressStep; counts: Partial<Record<ProgressStep, StepCount>> }[];
  private readonly throttle: StepThrottle;

  constructor(count: number, private readonly log: (message: string) => void, private readonly label: string, everyMs = 15_000) {
    this.current = Array.from({ length: count }, () => ({ step: 1 as ProgressStep, counts: {} }));
    this.throttle = new StepThrottle(everyMs);
    this.throttle.begin(1);
  }

  /**
   * Worker `worker` finished `step`: it is in the next step now, counted as nothing done of nothing until it counts
   * (a shard without documents or key tokens never does), and the next step's rate counts from the first such end.
   */
  stepDone(worker: number, step: RecapDataStep['step']): void {
    const next = nextStep(step);
    if (next === null) return;
    this.throttle.begin(next);
    const state = this.current[worker];
    if (next > state.step) state.step = next;
    state.counts[next] ??= { done: 0, doneNow: 0, total: 0, found: 0 };
  }

  update(worker: number, step: ProgressStep, count: StepCount): void {
    const state = this.current[worker];
    if (step > state.step) state.step = step;
    state.counts[step] = count;
    const earliest = Math.min(...this.current.map((s) => s.step)) as ProgressStep;
    if (this.current.some((s) => s.step === earliest && s.counts[earliest] === undefined)) return;
    const seconds = this.throttle.due(earliest);
    if (seconds === null) return;
    const sum = (pick: (c: StepCount) => number): number => this.current.reduce((acc, s) => acc + (s.counts[earliest] ? pick(s.counts[earliest]) : 0), 0);
    const total: StepCount = { done: sum((c) => c.done), doneNow: sum((c) => c.doneNow), total: sum((c) => c.total), found: sum((c) => c.found) };
    const behind = this.current.filter((s) => s.step === earliest).length;
    this.log(`  ${this.label} ${STEP_NAMES[earliest]}: ${progressText(earliest, total, seconds)} (${this.current.length} workers, ${behind} still in this step)`);
  }
}

/** The arl-data stage's run, less the model (each worker loads its own). */
export type ShardedRecapDataRun = Omit<RecapDataRun, 'model' | 'shard' | 'progress'>;

/** ARL steps 1-4 with steps 1-2 (and the extractive recaps) in `pool.count` workers; see the file comment. */
export async function workerRecapData(pool: WorkerPool, run: ShardedRecapDataRun, corpusDocuments: number): Promise<RecapDataSummary> {
  const count = pool.count;
  const shards = Array.from({ length: count }, (_, index) => ({ index, count }));
  const dirs = shards.map((shard) => shardFolder(run.outDir, shard));
  const checkpointSha256 = weightsSha256(run.checkpoint);
  const recapsInWorkers = run.recapper === 'extractive';
  const label = 'arl-data';
  const progress = new ShardProgress(count, pool.log, label);
  const results: { scoring: ScoringSteps; recaps: RecapTotals | null }[] = [];
  const workersDir = join(run.outDir, WORKERS_FOLDER);
  await spawnWorkers(pool, label, workersDir, shards.map((shard) => ({
    index: shard.index,
    name: `worker-${shard.index + 1}-of-${count}`,
    job: {
      kind: 'recap-steps',
      checkpoint: run.checkpoint,
      tokenizer: run.tokenizer.modelPath,
      corpus: run.corpus,
      corpusDocuments,
      outDir: dirs[shard.index],
      shard: { shard_index: shard.index, shard_count: count, checkpoint_sha256: checkpointSha256 },
      recapper: run.recapper,
      recaps: recapsInWorkers,
    } satisfies RecapStepsJob,
    onMessage: (message) => {
      if (message.type === 'recap-progress') {
        progress.update(shard.index, message.step, message.count);
      } else if (message.type === 'recap-step') {
        progress.stepDone(shard.index, message.step);
        pool.log(`  ${label} worker ${shard.index + 1} of ${count}: ${message.line}`);
      } else if (message.type === 'recap-steps') {
        results[shard.index] = { scoring: message.scoring, recaps: message.recaps };
      }
    },
  })));
  const steps: RecapSteps[] = [];
  for (const [k, dir] of dirs.entries()) {
    const result = results[k];
    if (!result) throw new Error(`${label}: worker ${k + 1} of ${count} finished without its totals`);
    // The LLM recappers run here, shard after shard, with one cache beside the shards, as one process has in the run folder.
    const cacheFile = run.cacheFile ?? join(run.outDir, RECAP_FILES.cache);
    const recaps = result.recaps ?? (await buildRecaps({ ...run, outDir: dir, cacheFile, progress: recapDataProgressLog(pool.log, { documents: 0, label: `${label} shard ${k + 1} of ${count}` }) }));
    steps.push({ ...result.scoring, recaps });
  }
  const summary = await augmentRecapData({ ...run, progress: { onStep: (d) => pool.log(`  ${label} ${stepDoneText(d)}`) } }, recapCounts(steps), dirs);
  // The jobs and logs go; the shard folders stay (a rerun resumes from them, and they are what step 4 read).
  rmSync(workersDir, { recursive: true, force: true });
  return summary;
}
