/** `arl train`: train from scratch (--preset/config), continue pretraining (--init), or --resume a run. */
import chalk from 'chalk';
import { join } from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import type { BackendName } from '../backend.ts';
import { readPrepareMeta } from '../data/format.ts';
import { checkSameTokenizer, preparedTokenizerPath } from '../data/tokenizer-match.ts';
import { hasTrainingCheckpoint, resolveCheckpointDir } from '../io/checkpoint.ts';
import { UserError } from '../io/errors.ts';
import { lockFolder } from '../io/lock.ts';
import { makeConfig, parameterCount, PRESETS } from '../model/config.ts';
import { BUNDLED_TOKENIZER_PATH } from '../tokenizer/sentencepiece.ts';
import { DEFAULT_TASK_ROWS, type TaskRowOptions, validateTaskRowOptions } from '../data/task-rows.ts';
import { DEFAULT_TRAIN, type StepMetrics, train, type TrainOptions, type TrainResult } from '../train/trainer.ts';
import { DEFAULT_PREPARED_DIR } from './data.ts';
import { startBackend, withBackend } from './common.ts';
import { RULER_TASKS, type RulerTask } from '../eval/ruler-tasks.ts';
import { ProgressBar } from './progress.ts';

export interface TrainArgs extends TrainOptions {
  backend: BackendName;
  preset: string;
  dim?: number;
  layers?: number;
  heads?: number;
  kvHeads?: number;
  hiddenDim?: number;
  maxSeq?: number;
  ropeTheta?: number;
  tieEmbeddings?: boolean;
  attentionWindow?: number;
  init?: string;
  resume: boolean;
  taskFraction?: number;
  copyFraction?: number;
  taskNames?: RulerTask[];
  answerWeight?: number;
  haystackWeight?: number;
  taskHaystack?: string;
}

export function trainOptions<T>(y: Argv<T>) {
  const d = DEFAULT_TRAIN;
  return withBackend(y)
    .option('data', { type: 'string', default: DEFAULT_PREPARED_DIR, describe: 'prepared data directory (arl prepare)' })
    .option('out', { type: 'string', default: 'checkpoints/run', describe: 'run directory for checkpoints and metrics.jsonl' })
    .option('preset', { type: 'string', default: 'tiny', describe: `model preset: ${Object.keys(PRESETS).join(', ')}` })
    .option('dim', { type: 'number', describe: 'model width (overrides the preset)' })
    .option('layers', { type: 'number', describe: 'transformer blocks (overrides the preset)' })
    .option('heads', { type: 'number', describe: 'query heads (overrides the preset)' })
    .option('kv-heads', { type: 'number', describe: 'key/value heads (grouped-query attention)' })
    .option('hidden-dim', { type: 'number', describe: 'SwiGLU hidden width' })
    .option('max-seq', { type: 'number', describe: 'context window of the model' })
    .option('rope-theta', { type: 'number', describe: 'rotary position base (default 10000)' })
    .option('tie-embeddings', { type: 'boolean', describe: 'share the input embedding with the output projection' })
    .option('attention-window', { type: 'number', describe: 'sliding attention window (tokens)' })
    .option('init', { type: 'string', describe: 'continue pretraining from this checkpoint (fresh optimizer)' })
    .option('resume', { type: 'boolean', default: false, describe: 'continue the run in --out from its latest checkpoint' })
    .option('steps', { type: 'number', default: d.steps, describe: 'optimizer steps (a resumed run may raise it)' })
    .option('batch', { type: 'number', default: d.batch, describe: 'sequences per micro-batch' })
    .option('seq', { type: 'number', default: d.seq, describe: 'training sequence length' })
    .option('accum', { type: 'number', default: d.accum, describe: 'gradient accumulation micro-batches per step' })
    .option('lr', { type: 'number', default: d.lr, describe: 'peak learning rate' })
    .option('min-lr', { type: 'number', default: d.minLr, describe: 'learning rate at the end of the cosine decay' })
    .option('warmup', { type: 'number', default: d.warmup, describe: 'steps of linear learning-rate warmup' })
    .option('weight-decay', { type: 'number', default: d.weightDecay, describe: 'AdamW decoupled weight decay' })
    .option('beta1', { type: 'number', default: d.beta1, describe: 'AdamW first-moment decay' })
    .option('beta2', { type: 'number', default: d.beta2, describe: 'AdamW second-moment decay' })
    .option('clip', { type: 'number', default: d.clip, describe: 'global gradient-norm clip (0 = off)' })
    .option('eval-every', { type: 'number', default: d.evalEvery, describe: 'steps between validation losses (0 = never)' })
    .option('eval-batches', { type: 'number', default: d.evalBatches, describe: 'validation batches per evaluation' })
    .option('save-every', { type: 'number', default: d.saveEvery, describe: 'steps between checkpoints (the last step always saves)' })
    .option('seed', { type: 'number', default: d.seed, describe: 'seed of the weights, the data order and the task rows' })
    .option('task-fraction', { type: 'number', default: d.taskRows.fraction, describe: 'share of each batch made of synthetic retrieval rows (RULER-style, made on the fly, loss on the answer)' })
    .option('copy-fraction', { type: 'number', default: d.taskRows.copyFraction, describe: 'share of each batch made of copy rows (a span of training text written twice, loss on the repeat), which teach the model to copy what it has seen' })
    .option('task-names', { type: 'string', array: true, choices: RULER_TASKS, default: d.taskRows.tasks, describe: 'RULER tasks of the synthetic rows' })
    .option('answer-weight', { type: 'number', default: d.taskRows.answerWeight, describe: 'loss weight of a synthetic row\'s answer tokens (a text token weighs 1)' })
    .option('haystack-weight', { type: 'number', default: d.taskRows.haystackWeight, describe: 'loss weight of a synthetic row\'s prompt tokens' })
    .option('task-haystack', { type: 'string', default: d.taskRows.haystack, describe: 'documents the synthetic rows\' haystacks come from (keep test documents out)' });
}

/** The task-row flags (callers that pass TrainOptions instead of flags keep their taskRows). */
function taskRowsOf(args: TrainArgs): TaskRowOptions {
  const d = args.taskRows ?? DEFAULT_TASK_ROWS;
  return {
    fraction: args.taskFraction ?? d.fraction,
    copyFraction: args.copyFraction ?? d.copyFraction,
    tasks: args.taskNames ?? d.tasks,
    answerWeight: args.answerWeight ?? d.answerWeight,
    haystackWeight: args.haystackWeight ?? d.haystackWeight,
    haystack: args.taskHaystack ?? d.haystack,
  };
}

/** Runs training with a progress bar and Ctrl-C handling; returns the result (the caller disposes the model). */
export async function runTrain(args: TrainArgs): Promise<TrainResult> {
  validateTaskRowOptions(taskRowsOf(args));
  const resumable = hasTrainingCheckpoint(args.out);
  if (args.resume && !resumable) throw new UserError(`${args.out}: nothing to resume (no checkpoint); drop --resume to start a new run`);
  if (!args.resume && resumable) throw new UserError(`${args.out}: already holds a training run; pass --resume to continue it, or choose another --out`);
  const meta = readPrepareMeta(args.data);
  // Checkpoints carry this file as their tokenizer: it must be the one the data was tokenized with.
  // The model comes from --init, or from the run's latest checkpoint with --resume.
  const modelDir = args.init !== undefined ? resolveCheckpointDir(args.init) : args.resume ? resolveCheckpointDir(args.out) : undefined;
  if (modelDir !== undefined) checkSameTokenizer(modelDir, { data: args.data, meta });
  const tokenizerPath = preparedTokenizerPath(args.data, meta, [...(modelDir === undefined ? [] : [join(modelDir, 'tokenizer.model')]), BUNDLED_TOKENIZER_PATH]);
  const modelConfig = makeConfig(args.preset, {
    vocabSize: meta.vocabSize,
    dim: args.dim,
    layers: args.layers,
    heads: args.heads,
    kvHeads: args.kvHeads,
    hiddenDim: args.hiddenDim,
    maxSeq: args.maxSeq,
    ropeTheta: args.ropeTheta,
    tieEmbeddings: args.tieEmbeddings,
    attentionWindow: args.attentionWindow,
  });
  const releaseLock = lockFolder(args.out);
  await startBackend(args.backend);
  if (!args.resume && !args.init) {
    console.log(chalk.dim(`model: ${args.preset} preset, ${(parameterCount(modelConfig) / 1e6).toFixed(2)}M parameters, dim ${modelConfig.dim}, ${modelConfig.layers} layers, ${modelConfig.heads}/${modelConfig.kvHeads} heads, window ${modelConfig.maxSeq}`));
  }

  let stopRequested = false;
  const onSigint = (): void => {
    if (stopRequested) process.exit(130);
    stopRequested = true;
    process.stderr.write(chalk.yellow('\nCtrl-C: saving a checkpoint after this step (press again to quit without saving)\n'));
  };
  process.on('SIGINT', onSigint);
  let bar: ProgressBar | null = null;
  const options: TrainOptions = {
    ...DEFAULT_TRAIN,
    ...Object.fromEntries(Object.keys(DEFAULT_TRAIN).map((k) => [k, (args as unknown as Record<string, unknown>)[k]])),
    data: args.data,
    out: args.out,
    taskRows: taskRowsOf(args),
  } as TrainOptions;
  try {
    const result = await train(options, { modelConfig, init: args.init, tokenizerPath }, {
      onStep: (m: StepMetrics, total: number) => {
        bar ??= new ProgressBar(total, 'train');
        bar.update(m.step, `loss ${m.loss.toFixed(4)} lr ${m.lr.toExponential(2)} ${Math.round(m.tokens_per_s)} tok/s`);
      },
      onEval: (step, valLoss) => bar?.log(`step ${step}: val loss ${valLoss.toFixed(4)} (ppl ${Math.exp(valLoss).toFixed(1)})`),
      onSave: (dir) => bar?.log(chalk.dim(`saved ${dir}`)),
      shouldStop: () => stopRequested,
    });
    if (result.stoppedEarly) console.log(chalk.yellow(`stopped at step ${result.finalStep}; continue with: arl train --out ${args.out} --resume`));
    return result;
  } finally {
    process.off('SIGINT', onSigint);
    releaseLock();
  }
}

export const trainCommand: CommandModule = {
  command: 'train',
  describe: 'Train a model on prepared shards (from scratch, --init from a checkpoint, or --resume)',
  builder: (y) =>
    trainOptions(y)
      .example('$0 train --preset tiny --steps 300 --out checkpoints/tiny', 'train the tiny preset on the bundled corpus')
      .example('$0 train --out checkpoints/tiny --resume --steps 600', 'continue that run to step 600')
      .example('$0 train --init checkpoints/imported --data data/prepared/mine --out checkpoints/cpt', 'continue pretraining an imported model'),
  handler: async (argv) => {
    const result = await runTrain(argv as unknown as TrainArgs);
    const first = result.losses[0];
    const last = result.losses[result.losses.length - 1];
    if (first !== undefined) console.log(`loss ${first.toFixed(4)} -> ${last.toFixed(4)} over ${result.losses.length} steps; checkpoint ${result.lastCheckpoint}`);
    result.model.dispose();
  },
};
