/**
 * The training loop, flat in the nanoGPT manner: for each step, accumulate gradients over
 * micro-batches, clip by global norm, AdamW update, log; validate and checkpoint periodically.
 * A run directory holds checkpoints, metrics.jsonl and plots/ (curves redrawn at each save); resuming restores weights, optimizer
 * moments, step and data position, so the resumed run reproduces the uninterrupted one.
 */
import * as tf from '@tensorflow/tfjs';
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Batch, type LoaderPosition, TokenLoader } from '../data/loader.ts';
import { copyRow, DEFAULT_TASK_ROWS, syntheticRowsPerBatch, type TaskRowOptions, TaskRows, validateTaskRowOptions, type WeightedRow } from '../data/task-rows.ts';
import { Tokenizer } from '../tokenizer/sentencepiece.ts';
import {
  hasTrainingCheckpoint,
  loadCheckpoint,
  modelFromCheckpoint,
  restoreOptimizer,
  saveTrainingCheckpoint,
  type TrainState,
} from '../io/checkpoint.ts';
import { writeFileAtomic } from '../io/atomic.ts';
import { UserError } from '../io/errors.ts';
import type { ModelConfig } from '../model/config.ts';
import { LlamaModel } from '../model/llama.ts';
import { overlapSteps } from '../switches.ts';
import { evaluateLoss } from '../eval/perplexity.ts';
import { APPENDED_MARKERS, growVocabulary } from '../arl/continued-pretraining.ts';
import { languageModelLoss } from './loss.ts';
import { AdamW, learningRate, stepOnMeanGradient } from './optimizer.ts';
import { DEFAULT_LOSS_SCALE, LossScaler, MIN_LOSS_SCALE, type ScaledStepResult, scaledStep } from './loss-scale.ts';
import { usePrecision } from './precision.ts';
import { type Precision, setMatmulPrecision } from '../ops/matmul.ts';
import { writeTrainingCurves } from './curves.ts';

export interface TrainOptions {
  /** Prepared data directory (from `arl prepare`). */
  data: string;
  /** Run directory: checkpoints, metrics.jsonl. */
  out: string;
  steps: number;
  batch: number;
  seq: number;
  accum: number;
  lr: number;
  minLr: number;
  warmup: number;
  weightDecay: number;
  beta1: number;
  beta2: number;
  clip: number;
  evalEvery: number;
  evalBatches: number;
  saveEvery: number;
  seed: number;
  /** Synthetic task rows mixed into each batch, weighted on their answers (off at fraction 0). */
  taskRows: TaskRowOptions;
  /** fp32, or mixed: f16 operands for the large products, dynamic loss scaling (default fp32; a resumed run takes the one given now). */
  precision?: Precision;
}

export const DEFAULT_TRAIN: Omit<TrainOptions, 'data' | 'out'> = {
  steps: 200,
  batch: 8,
  seq: 128,
  accum: 1,
  lr: 3e-3,
  minLr: 3e-4,
  warmup: 20,
  weightDecay: 0.1,
  beta1: 0.9,
  beta2: 0.95,
  clip: 1.0,
  evalEvery: 50,
  evalBatches: 4,
  saveEvery: 100,
  seed: 1234,
  taskRows: DEFAULT_TASK_ROWS,
  precision: 'fp32',
};

/** Where the data of a run stands: the loader's position and the task rows used so far. */
type DataPosition = LoaderPosition & { taskRows?: number };

export interface StepMetrics {
  step: number;
  loss: number;
  lr: number;
  grad_norm: number;
  tokens_per_s: number;
  /** Live tensors, counting those of the step in flight (webgpu) if one is: one more then than at a pause. */
  tensors: number;
  elapsed_s: number;
  val_loss?: number;
  /** Mixed precision: the loss scale the step ran at, and whether its gradients overflowed (update skipped). */
  loss_scale?: number;
  skipped?: boolean;
}

export interface TrainCallbacks {
  onStep?: (m: StepMetrics, totalSteps: number) => void;
  onEval?: (step: number, valLoss: number) => void;
  onSave?: (dir: string) => void;
  /** Polled after every step; true stops the run after saving a checkpoint (Ctrl-C). */
  shouldStop?: () => boolean;
  /** Mixed precision: what the start-up self-check found. */
  onPrecision?: (detail: string) => void;
}

export interface TrainSetup {
  /** A fresh model config; ignored when resuming or initialising from a checkpoint. */
  modelConfig?: ModelConfig;
  /** Continue pretraining from these weights (fresh optimizer, step 0). */
  init?: string;
  /** Tokenizer model copied into each checkpoint. */
  tokenizerPath: string | null;
}

export interface TrainResult {
  model: LlamaModel;
  finalStep: number;
  stoppedEarly: boolean;
  lastCheckpoint: string | null;
  losses: number[];
}

export class DivergedError extends UserError {}

/** Rewrites metrics.jsonl keeping only steps up to `step` (a resumed run re-logs what followed). */
function truncateMetrics(file: string, step: number): void {
  if (!existsSync(file)) return;
  const kept = readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line.trim() && (JSON.parse(line) as StepMetrics).step <= step);
  writeFileAtomic(file, kept.map((l) => `${l}\n`).join(''));
}

/**
 * One optimizer step: gradients summed over `accum` micro-batches and averaged, clipped by global
 * norm, then AdamW. The update is skipped when the loss or gradient norm is not finite.
 * Values are read back asynchronously: the webgpu backend cannot read synchronously under Node.
 */
export async function trainStep(
  model: LlamaModel,
  optimizer: AdamW,
  nextBatch: () => Batch,
  o: { batch: number; seq: number; accum: number; clip: number; lr: number; lossScale?: number },
): Promise<{ loss: number; gradNorm: number }> {
  const microLosses = Array.from({ length: o.accum }, () => {
    const { x, y, w } = nextBatch();
    return () => languageModelLoss(model, x, y, o.batch, o.seq, w);
  });
  return stepOnMeanGradient(optimizer, microLosses, o);
}

/**
 * Runs training steps `from`..`to`-1 and hands each one's result to `onDone`, in order. With
 * `overlap` (the whole step, update included, is recorded before its loss is read back:
 * AdamW.gated) step i+1 is recorded before step i is read, so the GPU works while the CPU records;
 * elsewhere (wasm, cpu: recording is running, and the update follows the readback) one at a time.
 * No step is in flight after `pauseAfter(i)` (work that needs step i's weights: an evaluation, a
 * save). When `onDone` returns false no further step starts; the one in flight is still finished
 * and handed over (`inFlight` tells onDone whether one is). ARL_OVERLAP_STEPS=0 turns overlap off,
 * for measurements.
 */
export async function runSteps<R>(o: {
  from: number;
  to: number;
  overlap: boolean;
  pauseAfter: (index: number) => boolean;
  record: (index: number) => Promise<R>;
  onDone: (result: R, inFlight: boolean) => Promise<boolean>;
}): Promise<void> {
  const overlap = o.overlap && overlapSteps();
  let inFlight: Promise<R> | null = null;
  let stopping = false;
  try {
    for (let index = o.from; index < o.to; index++) {
      const current: Promise<R> = inFlight ?? o.record(index);
      inFlight = overlap && !stopping && index + 1 < o.to && !o.pauseAfter(index) ? o.record(index + 1) : null;
      if (!(await o.onDone(await current, inFlight !== null))) stopping = true;
      if (stopping && !inFlight) return;
    }
  } catch (err) {
    inFlight?.catch(() => {}); // the step in flight is abandoned with the run
    throw err;
  }
}

/**
 * Training tokens per second over the last (up to) 10 steps. A window, not the last step alone:
 * with steps overlapped (runSteps) completions arrive unevenly. Evaluation and save time is excluded.
 */
class StepRate {
  private times: number[];

  constructor(start: number) {
    this.times = [start];
  }

  step(now: number, tokensPerStep: number): number {
    this.times.push(now);
    if (this.times.length > 11) this.times.shift();
    return (tokensPerStep * (this.times.length - 1)) / ((now - this.times[0]) / 1000);
  }

  exclude(ms: number): void {
    this.times = this.times.map((t) => t + ms);
  }
}

export async function train(options: TrainOptions, setup: TrainSetup, callbacks: TrainCallbacks = {}): Promise<TrainResult> {
  // Refused before anything is written when mixed precision cannot run here.
  const precisionDetail = await usePrecision(options.precision ?? 'fp32');
  if (precisionDetail) callbacks.onPrecision?.(precisionDetail);
  try {
    return await trainIn(options, setup, callbacks);
  } finally {
    setMatmulPrecision('fp32');
  }
}

async function trainIn(options: TrainOptions, setup: TrainSetup, callbacks: TrainCallbacks): Promise<TrainResult> {
  mkdirSync(options.out, { recursive: true });
  const metricsFile = join(options.out, 'metrics.jsonl');
  const resumeFrom = hasTrainingCheckpoint(options.out) ? loadCheckpoint(options.out) : null;
  if (resumeFrom && (!resumeFrom.state || !resumeFrom.optimizer)) {
    throw new UserError(`${resumeFrom.dir}: not a training checkpoint (no state.json/optimizer.safetensors); use --init to start a new run from it`);
  }
  // A resumed run keeps the hyperparameters (and data order) it started with; only the step budget may be extended.
  const opts: TrainOptions = resumeFrom
    ? ({ ...resumeFrom.state!.options, taskRows: { ...DEFAULT_TASK_ROWS, ...(resumeFrom.state!.options.taskRows as Partial<TaskRowOptions>) }, data: options.data, out: options.out, steps: options.steps } as TrainOptions)
    : options;
  const loader = TokenLoader.open(options.data, 'train', { shuffleSeed: opts.seed });
  validateTaskRowOptions(opts.taskRows);
  let taskRows: TaskRows | null = null;
  if (opts.taskRows.fraction > 0) {
    if (!setup.tokenizerPath) throw new UserError('task rows need the tokenizer the data was prepared with, and none was given; prepare the data with `arl prepare` (it records its tokenizer)');
    taskRows = await TaskRows.open(opts.taskRows, await Tokenizer.load(setup.tokenizerPath), opts.seq, opts.seed);
  }

  let model: LlamaModel;
  let state: TrainState;
  let taskRowsUsed = 0;
  const dataPosition = (): DataPosition => ({ ...loader.position, ...(taskRows ? { taskRows: taskRowsUsed } : {}) });
  if (resumeFrom) {
    model = modelFromCheckpoint(resumeFrom);
    state = resumeFrom.state!;
    loader.seek(state.dataPosition as LoaderPosition);
    taskRowsUsed = (state.dataPosition as DataPosition).taskRows ?? 0;
    truncateMetrics(metricsFile, state.step);
  } else {
    if (setup.init) model = modelFromCheckpoint(loadCheckpoint(setup.init));
    else if (setup.modelConfig) model = new LlamaModel(setup.modelConfig, options.seed);
    else throw new UserError('train needs a model: a --preset/config, --init CKPT, or a run directory to resume');
    state = { step: 0, tokensSeen: 0, optimizerStep: 0, dataPosition: dataPosition(), options: { ...options }, bestValLoss: null };
  }
  // Continued pretraining of an imported model whose tokenizer got the recap markers appended.
  if (setup.init && !resumeFrom && loader.vocabSize > model.config.vocabSize && loader.vocabSize - model.config.vocabSize <= APPENDED_MARKERS) {
    model = growVocabulary(model, loader.vocabSize);
  }
  if (loader.vocabSize > model.config.vocabSize) {
    model.dispose();
    throw new UserError(`${options.data}: data was tokenized with a vocabulary of ${loader.vocabSize} but the model has ${model.config.vocabSize}; prepare the data with the model's tokenizer`);
  }
  if (opts.seq > model.config.maxSeq) {
    model.dispose();
    throw new UserError(`--seq ${opts.seq} exceeds the model's context window (maxSeq ${model.config.maxSeq})`);
  }

  const optimizer = new AdamW(model.variables(), { beta1: opts.beta1, beta2: opts.beta2, eps: 1e-8, weightDecay: opts.weightDecay });
  if (resumeFrom) restoreOptimizer(model, optimizer, resumeFrom.optimizer!, state.optimizerStep, options.out);

  const { batch, seq, accum } = opts;
  const scaler = (options.precision ?? 'fp32') === 'mixed' ? new LossScaler(DEFAULT_LOSS_SCALE, state.lossScale ?? DEFAULT_LOSS_SCALE.initial) : null;
  const tokensPerStep = batch * seq * accum;
  /** This batch's task rows (with their weights), then its copy rows, then the loader's text rows. */
  const { task: taskCount, copy: copyCount } = syntheticRowsPerBatch(opts.taskRows, batch);
  const nextBatch = (): Batch => {
    if (taskCount === 0 && copyCount === 0) return loader.nextBatch(batch, seq);
    const x = new Int32Array(batch * seq);
    const y = new Int32Array(batch * seq);
    const w = new Float32Array(batch * seq).fill(1);
    const put = (r: number, { tokens, weights }: WeightedRow): void => {
      x.set(tokens.subarray(0, seq), r * seq);
      y.set(tokens.subarray(1), r * seq);
      w.set(weights, r * seq);
    };
    for (let r = 0; r < taskCount; r++) put(r, taskRows!.row(taskRowsUsed++));
    const plain = loader.nextBatch(batch - taskCount, seq);
    // Copy rows repeat the start of a text row.
    for (let r = 0; r < copyCount; r++) put(taskCount + r, copyRow(plain.x.subarray(r * seq, (r + 1) * seq), seq));
    const textStart = (taskCount + copyCount) * seq;
    x.set(plain.x.subarray(copyCount * seq), textStart);
    y.set(plain.y.subarray(copyCount * seq), textStart);
    if (plain.w) w.set(plain.w.subarray(copyCount * seq), textStart);
    return { x, y, w };
  };
  const losses: number[] = [];
  let lastCheckpoint: string | null = resumeFrom?.dir ?? null;
  let lastSavedStep = state.step;
  let stoppedEarly = false;
  const started = Date.now();

  const save = async (): Promise<void> => {
    lastCheckpoint = await saveTrainingCheckpoint(options.out, model, setup.tokenizerPath, optimizer, state);
    writeTrainingCurves(options.out);
    lastSavedStep = state.step;
    callbacks.onSave?.(lastCheckpoint);
  };

  const evaluatesAt = (step: number): boolean => opts.evalEvery > 0 && (step % opts.evalEvery === 0 || step === opts.steps);
  const savesAt = (step: number): boolean => step % opts.saveEvery === 0 || step === opts.steps;
  const rate = new StepRate(performance.now());
  let stopRequested = false;
  try {
    await runSteps({
      from: state.step,
      to: opts.steps,
      overlap: optimizer.gated,
      // A step ends in work that must see exactly its weights: an evaluation or a save (the end is one).
      pauseAfter: (index) => evaluatesAt(index + 1) || savesAt(index + 1),
      record: (index) => {
        const lr = learningRate(index, { lr: opts.lr, minLr: opts.minLr, warmup: opts.warmup, totalSteps: opts.steps });
        const step = (lossScale: number) => trainStep(model, optimizer, nextBatch, { batch, seq, accum, clip: opts.clip, lr, lossScale });
        // The batches are drawn synchronously by trainStep, so the position below follows them either way.
        const result: Promise<ScaledStepResult | { loss: number; gradNorm: number; lossScale?: undefined; skipped?: undefined }> = scaler ? scaledStep(scaler, step) : step(1);
        const position = dataPosition(); // after this step's batches, before the next step's
        return result.then((r) => ({ ...r, lr, position }));
      },
      onDone: async ({ loss, gradNorm, lr, position, lossScale, skipped }, inFlight) => {
        // Under loss scaling an overflowed gradient is a skipped step, unless the scale has collapsed.
        const overflowTolerated = skipped === true && scaler !== null && scaler.scale >= MIN_LOSS_SCALE;
        if (!Number.isFinite(loss) || (!Number.isFinite(gradNorm) && !overflowTolerated)) {
          const kept = lastCheckpoint ? `the last good checkpoint (${lastCheckpoint}, step ${lastSavedStep}) was kept` : 'no checkpoint had been saved yet';
          const scale = scaler ? ` at loss scale ${lossScale}` : '';
          throw new DivergedError(`step ${state.step + 1}: loss is ${loss} (grad norm ${gradNorm}${scale}); training stopped and ${kept}; lower --lr or raise --warmup`);
        }
        state.step += 1;
        state.tokensSeen += tokensPerStep;
        state.optimizerStep = optimizer.step - (inFlight ? 1 : 0);
        state.dataPosition = position;
        losses.push(loss);
        const metrics: StepMetrics = {
          step: state.step,
          loss,
          lr,
          grad_norm: gradNorm,
          tokens_per_s: rate.step(performance.now(), tokensPerStep),
          tensors: tf.memory().numTensors,
          elapsed_s: (Date.now() - started) / 1000,
          ...(lossScale === undefined ? {} : { loss_scale: lossScale, skipped: skipped === true }),
        };
        if (scaler) state.lossScale = scaler.scale;
        if (evaluatesAt(state.step)) {
          const evalStart = performance.now();
          metrics.val_loss = (await evaluateLoss(model, options.data, 'val', { batches: opts.evalBatches, batch, seq })).loss;
          rate.exclude(performance.now() - evalStart);
          state.bestValLoss = Math.min(state.bestValLoss ?? Infinity, metrics.val_loss);
          callbacks.onEval?.(state.step, metrics.val_loss);
        }
        appendFileSync(metricsFile, `${JSON.stringify(metrics)}\n`);
        callbacks.onStep?.(metrics, opts.steps);

        await new Promise((resolve) => setImmediate(resolve)); // let signal handlers (Ctrl-C) run between steps
        stopRequested ||= callbacks.shouldStop?.() ?? false;
        // With a step in flight its update is already queued, so a stop saves after that step instead.
        if (!inFlight && (savesAt(state.step) || stopRequested)) {
          const saveStart = performance.now();
          await save();
          rate.exclude(performance.now() - saveStart);
        }
        if (stopRequested) stoppedEarly = state.step < opts.steps;
        return !stopRequested;
      },
    });
  } catch (err) {
    optimizer.dispose();
    model.dispose();
    throw err;
  }
  optimizer.dispose();
  return { model, finalStep: state.step, stoppedEarly, lastCheckpoint, losses };
}
