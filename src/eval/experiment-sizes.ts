/**
 * The experiment's sizes (nanoGPT-style presets: toy, tiny, small), what each field means, and how flags override
 * them (`arl experiment --cpt-steps 600` sets `cptSteps`).
 */
import type { ModelConfig } from '../model/config.ts';
import { UserError } from '../io/errors.ts';
import { DEFAULT_TASK_ROWS, validateTaskRowOptions } from '../data/task-rows.ts';
import type { KeyWords, RulerTask } from './ruler-tasks.ts';

/**
 * The task rows' mix in training: two 4-key samples to one single-needle sample. The single needle is learned first
 * and is the stepping stone (4-key rows alone teach neither task); key matching starts only after it.
 */
export const TRAINING_TASK_MIX: RulerTask[] = ['niah_single', 'niah_multikey', 'niah_multikey'];
export interface ExperimentSize {
  /** Model: a preset name and/or overrides; maxSeq is the window T. */
  preset: string | null;
  model: Partial<Pick<ModelConfig, 'dim' | 'layers' | 'heads' | 'kvHeads' | 'hiddenDim' | 'maxSeq'>>;
  /** Corpus documents for base pretraining, continued pretraining, development (threshold) and held out (tests, LongPPL). */
  baseDocs: number;
  cptDocs: number;
  devDocs: number;
  heldoutDocs: number;
  /** Recall documents added to the continued-pretraining corpus (both arms). */
  recallDocs: number;
  /** Share of each base training batch made of retrieval task rows. */
  taskFraction: number;
  /** Share of each base training batch made of copy rows (text written twice, loss on the repeat). */
  copyFraction: number;
  /**
   * The same shares in continued pretraining (both arms): fewer synthetic rows there leave more rows for the CPT
   * text, whose recall documents and recaps are what ARL learns from; the task rows keep retrieval from fading.
   */
  cptTaskFraction: number;
  cptCopyFraction: number;
  /** The tasks of the training task rows, in turn (a task named twice gets twice the rows). */
  trainingTasks: RulerTask[];
  /**
   * Where the training task rows' needle keys come from (the tests' keys are always the lists' test halves): the
   * haystack's words, thousands of them, so that the base learns to match and copy a key rather than know its words,
   * as the recap of a needle must copy its key (the recall documents' keys are corpus words too).
   */
  trainingKeyWords: KeyWords;
  baseSteps: number;
  cptSteps: number;
  batch: number;
  /** Continued-pretraining seeds per arm. */
  seeds: number;
  /** Test samples per task and length. */
  perLength: number;
  /** Recap-agent answers awaited at once in each process, their single tokens decoded in one step and their prompts run in shared forwards (webgpu; elsewhere they only interleave). */
  agentBatch: number;
  /** Development samples (4x T, half single needle, half 4 keys) the recap threshold is chosen on. */
  devSamples: number;
  /** LIFT: documents at 4x T, and the epochs (stage 1, stage 2) of the paper's schedule and of the more-steps variant (a step per batch of 4). */
  liftDocs: number;
  liftEpochs: [number, number];
  liftMoreEpochs: [number, number];
}

export const EXPERIMENT_SIZES: Record<string, ExperimentSize> = {
  /** Seconds on CPU: checks that everything runs, measures nothing. */
  toy: {
    preset: null,
    model: { dim: 32, layers: 1, heads: 2, kvHeads: 1, hiddenDim: 64, maxSeq: 256 },
    baseDocs: 3,
    cptDocs: 3,
    devDocs: 1,
    heldoutDocs: 2,
    recallDocs: 3,
    taskFraction: 0.5,
    copyFraction: 0.25,
    cptTaskFraction: 0.5,
    cptCopyFraction: 0.25,
    trainingTasks: TRAINING_TASK_MIX,
    trainingKeyWords: 'haystack',
    baseSteps: 2,
    cptSteps: 1,
    batch: 2,
    seeds: 1,
    perLength: 1,
    agentBatch: 2,
    devSamples: 1,
    liftDocs: 1,
    liftEpochs: [1, 1],
    liftMoreEpochs: [2, 2],
  },
  /** A 2-core CPU in well under an hour: the tiny preset, window 256; too small a budget to expect retrieval. */
  tiny: {
    preset: 'tiny',
    model: { maxSeq: 256 },
    baseDocs: 60,
    cptDocs: 16,
    devDocs: 4,
    heldoutDocs: 8,
    recallDocs: 40,
    taskFraction: 0.5,
    copyFraction: 0.25,
    cptTaskFraction: 0.25,
    cptCopyFraction: 0.125,
    trainingTasks: TRAINING_TASK_MIX,
    trainingKeyWords: 'haystack',
    baseSteps: 150,
    cptSteps: 40,
    batch: 8,
    seeds: 1,
    perLength: 20,
    agentBatch: 4,
    devSamples: 4,
    liftDocs: 4,
    liftEpochs: [2, 1],
    liftMoreEpochs: [4, 2],
  },
  /** The H200 run: the 29.4M shape of the GPU benchmarks (d 512, 8 layers, 8/8 heads, F 1368), window 512. */
  small: {
    preset: 'base',
    model: { maxSeq: 512, kvHeads: 8, hiddenDim: 1368 },
    baseDocs: 380,
    cptDocs: 60,
    devDocs: 20,
    heldoutDocs: 40,
    recallDocs: 400,
    taskFraction: 0.5,
    copyFraction: 0.25,
    // 4 text rows of 16 gave each recall document's needle recap about 0.3 trainings in 300 steps; 10 give 2.5x that.
    cptTaskFraction: 0.25,
    cptCopyFraction: 0.125,
    trainingTasks: TRAINING_TASK_MIX,
    trainingKeyWords: 'haystack',
    baseSteps: 3600,
    cptSteps: 300,
    batch: 16,
    seeds: 2,
    perLength: 300,
    agentBatch: 32,
    devSamples: 24,
    liftDocs: 40,
    liftEpochs: [3, 5],
    liftMoreEpochs: [6, 10],
  },
};

/** The size with overrides applied and checked. */
export function resolveSize(name: string, overrides: Partial<ExperimentSize> = {}): ExperimentSize {
  const base = EXPERIMENT_SIZES[name];
  if (!base) throw new UserError(`unknown --size "${name}"; choose one of ${Object.keys(EXPERIMENT_SIZES).join(', ')}`);
  const size = { ...base, ...Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined)) } as ExperimentSize;
  for (const key of ['baseDocs', 'cptDocs', 'devDocs', 'heldoutDocs', 'baseSteps', 'cptSteps', 'batch', 'seeds', 'perLength', 'devSamples', 'liftDocs'] as const) {
    if (!Number.isInteger(size[key]) || size[key] <= 0) throw new UserError(`experiment --${kebab(key)} must be a positive integer (got ${size[key]})`);
  }
  if (!Number.isInteger(size.recallDocs) || size.recallDocs < 0) throw new UserError(`experiment --recall-docs must be a non-negative integer (got ${size.recallDocs})`);
  validateTaskRowOptions({ ...DEFAULT_TASK_ROWS, tasks: size.trainingTasks, fraction: size.taskFraction, copyFraction: size.copyFraction, keyWords: size.trainingKeyWords });
  if (!(size.cptTaskFraction >= 0 && size.cptCopyFraction >= 0 && size.cptTaskFraction + size.cptCopyFraction <= 1)) {
    throw new UserError(`experiment --cpt-task-fraction and --cpt-copy-fraction must be at least 0 and add up to at most 1 (got ${size.cptTaskFraction} + ${size.cptCopyFraction})`);
  }
  return size;
}

export const kebab = (name: string): string => name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
