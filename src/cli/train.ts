/** `arl train`: train from scratch (--preset/config), continue pretraining (--init), or --resume a run. */
import chalk from 'chalk';
import { join } from 'node:path';
import type { BackendName } from '../backend.ts';
import { readPrepareMeta } from '../data/format.ts';
import { checkSameTokenizer, preparedTokenizerPath } from '../data/tokenizer-match.ts';
import { hasTrainingCheckpoint, resolveCheckpointDir } from '../io/checkpoint.ts';
import { UserError } from '../io/errors.ts';
import { lockFolder } from '../io/lock.ts';
import { type ConfigOverrides, makeConfig, parameterCount, PRESETS } from '../model/config.ts';
import { BUNDLED_TOKENIZER_PATH } from '../tokenizer/sentencepiece.ts';
import { DEFAULT_TASK_ROWS, validateTaskRowOptions } from '../data/task-rows.ts';
import { DEFAULT_TRAIN, type StepMetrics, train, type TrainOptions, type TrainResult } from '../train/trainer.ts';
import { DEFAULT_PREPARED_DIR } from './data.ts';
import { BACKEND_FLAGS, PRECISION_FLAGS, startBackend } from './common.ts';
import { type ArgsOf, defineCommand, defineOptions, valuesOf } from './options.ts';
import { KEY_WORDS, type KeyWords, RULER_TASKS } from '../eval/ruler-tasks.ts';
import { ProgressBar } from './progress.ts';

const MODEL_FLAGS = defineOptions({
  dim: { type: 'number', describe: 'model width (overrides the preset)' },
  layers: { type: 'number', describe: 'transformer blocks (overrides the preset)' },
  heads: { type: 'number', describe: 'query heads (overrides the preset)' },
  'kv-heads': { type: 'number', describe: 'key/value heads (grouped-query attention)' },
  'hidden-dim': { type: 'number', describe: 'SwiGLU hidden width' },
  'max-seq': { type: 'number', describe: 'context window of the model' },
  'rope-theta': { type: 'number', describe: 'rotary position base (default 10000)' },
  'tie-embeddings': { type: 'boolean', describe: 'share the input embedding with the output projection' },
  'attention-window': { type: 'number', describe: 'sliding attention window (tokens)' },
});

/** The flags that are TrainOptions fields of the same name. */
const TRAIN_OPTION_FLAGS = defineOptions({
  steps: { type: 'number', default: DEFAULT_TRAIN.steps, describe: 'optimizer steps (a resumed run may raise it)' },
  batch: { type: 'number', default: DEFAULT_TRAIN.batch, describe: 'sequences per micro-batch' },
  seq: { type: 'number', default: DEFAULT_TRAIN.seq, describe: 'training sequence length' },
  accum: { type: 'number', default: DEFAULT_TRAIN.accum, describe: 'gradient accumulation micro-batches per step' },
  lr: { type: 'number', default: DEFAULT_TRAIN.lr, describe: 'peak learning rate' },
  'min-lr': { type: 'number', default: DEFAULT_TRAIN.minLr, describe: 'learning rate at the end of the cosine decay' },
  warmup: { type: 'number', default: DEFAULT_TRAIN.warmup, describe: 'steps of linear learning-rate warmup' },
  'weight-decay': { type: 'number', default: DEFAULT_TRAIN.weightDecay, describe: 'AdamW decoupled weight decay' },
  beta1: { type: 'number', default: DEFAULT_TRAIN.beta1, describe: 'AdamW first-moment decay' },
  beta2: { type: 'number', default: DEFAULT_TRAIN.beta2, describe: 'AdamW second-moment decay' },
  clip: { type: 'number', default: DEFAULT_TRAIN.clip, describe: 'global gradient-norm clip (0 = off)' },
  'eval-every': { type: 'number', default: DEFAULT_TRAIN.evalEvery, describe: 'steps between validation losses (0 = never)' },
  'eval-batches': { type: 'number', default: DEFAULT_TRAIN.evalBatches, describe: 'validation batches per evaluation' },
  'save-every': { type: 'number', default: DEFAULT_TRAIN.saveEvery, describe: 'steps between checkpoints (the last step always saves)' },
  seed: { type: 'number', default: DEFAULT_TRAIN.seed, describe: 'seed of the weights, the data order and the task rows' },
  ...PRECISION_FLAGS,
});

const TASK_ROW_FLAGS = defineOptions({
  'task-fraction': { type: 'number', default: DEFAULT_TASK_ROWS.fraction, describe: 'share of each batch made of synthetic retrieval rows (RULER-style, made on the fly, loss on the answer)' },
  'copy-fraction': { type: 'number', default: DEFAULT_TASK_ROWS.copyFraction, describe: 'share of each batch made of copy rows (a span of training text written twice, loss on the repeat), which teach the model to copy what it has seen' },
  'task-names': { type: 'string', array: true, choices: RULER_TASKS, default: DEFAULT_TASK_ROWS.tasks, describe: 'RULER tasks of the synthetic rows' },
  'answer-weight': { type: 'number', default: DEFAULT_TASK_ROWS.answerWeight, describe: "loss weight of a synthetic row's answer tokens (a text token weighs 1)" },
  'haystack-weight': { type: 'number', default: DEFAULT_TASK_ROWS.haystackWeight, describe: "loss weight of a synthetic row's prompt tokens" },
  'task-haystack': { type: 'string', default: DEFAULT_TASK_ROWS.haystack, describe: "documents the synthetic rows' haystacks come from (keep test documents out)" },
  'task-key-words': { type: 'string', choices: KEY_WORDS, default: DEFAULT_TASK_ROWS.keyWords, describe: "where the synthetic rows' needle keys come from: RULER's adjective-noun word lists (their training half), or any two words of the haystack (training pool), far more varied" },
});

/** The flags of `arl train` (and `arl demo`, with its own defaults). */
export const TRAIN_FLAGS = defineOptions({
  data: { type: 'string', default: DEFAULT_PREPARED_DIR, describe: 'prepared data directory (arl prepare)' },
  out: { type: 'string', default: 'checkpoints/run', describe: 'run directory for checkpoints and metrics.jsonl' },
  preset: { type: 'string', default: 'tiny', describe: `model preset: ${Object.keys(PRESETS).join(', ')}` },
  ...MODEL_FLAGS,
  init: { type: 'string', describe: 'continue pretraining from this checkpoint (fresh optimizer)' },
  resume: { type: 'boolean', default: false, describe: 'continue the run in --out from its latest checkpoint' },
  ...TRAIN_OPTION_FLAGS,
  ...TASK_ROW_FLAGS,
});

type TrainArgs = ArgsOf<typeof TRAIN_FLAGS & typeof BACKEND_FLAGS>;

/** A training run: where the model comes from, and the trainer's options. */
export interface TrainRun {
  backend: BackendName;
  preset: string;
  /** Overrides of the preset's model settings. */
  model: ConfigOverrides;
  /** Continue pretraining from this checkpoint. */
  init?: string;
  /** Continue the run in options.out. */
  resume: boolean;
  options: TrainOptions;
}

/** The run the flags of `arl train` describe. */
export function trainRunOf(args: TrainArgs): TrainRun {
  return {
    backend: args.backend,
    preset: args.preset,
    model: valuesOf(MODEL_FLAGS, args),
    init: args.init,
    resume: args.resume,
    options: {
      data: args.data,
      out: args.out,
      ...valuesOf(TRAIN_OPTION_FLAGS, args),
      taskRows: {
        fraction: args.taskFraction,
        copyFraction: args.copyFraction,
        tasks: args.taskNames,
        answerWeight: args.answerWeight,
        haystackWeight: args.haystackWeight,
        haystack: args.taskHaystack,
        keyWords: args.taskKeyWords as KeyWords,
      },
    },
  };
}

/** Runs training with a progress bar and Ctrl-C handling; returns the result (the caller disposes the model). */
export async function runTrain(run: TrainRun): Promise<TrainResult> {
  const { options } = run;
  validateTaskRowOptions(options.taskRows);
  const resumable = hasTrainingCheckpoint(options.out);
  if (run.resume && !resumable) throw new UserError(`${options.out}: nothing to resume (no checkpoint); drop --resume to start a new run`);
  if (!run.resume && resumable) throw new UserError(`${options.out}: already holds a training run; pass --resume to continue it, or choose another --out`);
  const meta = readPrepareMeta(options.data);
  // Checkpoints carry this file as their tokenizer: it must be the one the data was tokenized with.
  // The model comes from --init, or from the run's latest checkpoint with --resume.
  const modelDir = run.init !== undefined ? resolveCheckpointDir(run.init) : run.resume ? resolveCheckpointDir(options.out) : undefined;
  if (modelDir !== undefined) checkSameTokenizer(modelDir, { data: options.data, meta });
  const tokenizerPath = preparedTokenizerPath(options.data, meta, [...(modelDir === undefined ? [] : [join(modelDir, 'tokenizer.model')]), BUNDLED_TOKENIZER_PATH]);
  const modelConfig = makeConfig(run.preset, { ...run.model, vocabSize: meta.vocabSize });
  const releaseLock = lockFolder(options.out);
  await startBackend(run.backend, options.precision);
  if (!run.resume && !run.init) {
    console.log(chalk.dim(`model: ${run.preset} preset, ${(parameterCount(modelConfig) / 1e6).toFixed(2)}M parameters, dim ${modelConfig.dim}, ${modelConfig.layers} layers, ${modelConfig.heads}/${modelConfig.kvHeads} heads, window ${modelConfig.maxSeq}`));
  }

  let stopRequested = false;
  const onSigint = (): void => {
    if (stopRequested) process.exit(130);
    stopRequested = true;
    process.stderr.write(chalk.yellow('\nCtrl-C: saving a checkpoint after this step (press again to quit without saving)\n'));
  };
  process.on('SIGINT', onSigint);
  let bar: ProgressBar | null = null;
  try {
    const result = await train(options, { modelConfig, init: run.init, tokenizerPath }, {
      onStep: (m: StepMetrics, total: number) => {
        bar ??= new ProgressBar(total, 'train');
        const scale = m.loss_scale === undefined ? '' : ` scale ${m.loss_scale}${m.skipped ? ' (overflow: skipped)' : ''}`;
        bar.update(m.step, `loss ${m.loss.toFixed(4)} lr ${m.lr.toExponential(2)} ${Math.round(m.tokens_per_s)} tok/s${scale}`);
      },
      onEval: (step, valLoss) => bar?.log(`step ${step}: val loss ${valLoss.toFixed(4)} (ppl ${Math.exp(valLoss).toFixed(1)})`),
      onSave: (dir) => bar?.log(chalk.dim(`saved ${dir}`)),
      onPrecision: (detail) => console.log(chalk.dim(`precision: mixed (${detail})`)),
      shouldStop: () => stopRequested,
    });
    if (result.stoppedEarly) console.log(chalk.yellow(`stopped at step ${result.finalStep}; continue with: arl train --out ${options.out} --resume`));
    return result;
  } finally {
    process.off('SIGINT', onSigint);
    releaseLock();
  }
}

export const trainCommand = defineCommand({
  command: 'train',
  describe: 'Train a model on prepared shards (from scratch, --init from a checkpoint, or --resume)',
  options: TRAIN_FLAGS,
  shared: BACKEND_FLAGS,
  examples: [
    ['$0 train --preset tiny --steps 300 --out checkpoints/tiny', 'train the tiny preset on the bundled corpus'],
    ['$0 train --out checkpoints/tiny --resume --steps 600', 'continue that run to step 600'],
    ['$0 train --init checkpoints/imported --data data/prepared/mine --out checkpoints/cpt', 'continue pretraining an imported model'],
  ],
  handler: async (args) => {
    const result = await runTrain(trainRunOf(args));
    const first = result.losses[0];
    const last = result.losses[result.losses.length - 1];
    if (first !== undefined) console.log(`loss ${first.toFixed(4)} -> ${last.toFixed(4)} over ${result.losses.length} steps; checkpoint ${result.lastCheckpoint}`);
    result.model.dispose();
  },
});
