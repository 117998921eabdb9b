/** `arl longbench`: score LongBench predictions (given, or of a checkpoint run here) with the official per-dataset metrics. */
import chalk from 'chalk';
import { type DatasetScore, LENGTH_BUCKETS, LONGBENCH_DATASETS, readLongBench, scoreLongBenchFiles, splitLongBenchPrompt } from '../eval/longbench.ts';
import { type PredictionItem, writePredictions } from '../eval/predict.ts';
import { pythonRound } from '../eval/metrics.ts';
import { formatTable } from '../eval/table.ts';
import { writeFileAtomic } from '../io/atomic.ts';
import { UserError } from '../io/errors.ts';
import { lockFolder } from '../io/lock.ts';
import { ANSWER_FLAGS, openAnswerer } from './answer-options.ts';
import { BACKEND_FLAGS } from './common.ts';
import { type ArgsOf, defineCommand, defineOptions } from './options.ts';
import { ProgressBar } from './progress.ts';

const LONGBENCH_FLAGS = defineOptions({
  ...ANSWER_FLAGS,
  data: { type: 'string', demandOption: true, describe: 'LongBench JSON lines (_id, dataset, input, context, answers, length, all_classes)' },
  predictions: { type: 'string', describe: 'JSON lines with "pred", and "_id" or in the order of --data' },
  out: { type: 'string', describe: 'also write the scores as JSON to this file' },
});

type LongBenchArgs = ArgsOf<typeof LONGBENCH_FLAGS & typeof BACKEND_FLAGS>;

/** Mean of the per-dataset scores, as LongBench's tables average them. */
function averageScore(scores: Record<string, DatasetScore>): number {
  const values = Object.values(scores).map((s) => s.score);
  return pythonRound(values.reduce((a, b) => a + b, 0) / values.length, 2);
}

/** Answers every record with the checkpoint into --pred-dir; returns the predictions file. */
async function predictLongBench(args: LongBenchArgs & { checkpoint: string }): Promise<string> {
  if (args.predDir === undefined) throw new UserError('running a model on LongBench needs --pred-dir DIR for its predictions.jsonl');
  const items: PredictionItem[] = [];
  for await (const { record } of readLongBench(args.data)) {
    items.push({ key: record._id, prompt: splitLongBenchPrompt(record), maxNewTokens: LONGBENCH_DATASETS[record.dataset]!.maxNewTokens, fields: { _id: record._id } });
  }
  lockFolder(args.predDir);
  const opened = await openAnswerer(args);
  try {
    let bar: ProgressBar | null = null;
    return await writePredictions({
      items,
      answer: opened.answer,
      outDir: args.predDir,
      settings: opened.settings,
      stopAtNewline: false,
      onItem: (done, total) => (bar ??= new ProgressBar(total, `longbench ${opened.mode}`)).update(done, ''),
    });
  } finally {
    opened.model.dispose();
  }
}

async function runLongBench(args: LongBenchArgs): Promise<void> {
  if (args.predictions !== undefined && args.checkpoint !== undefined) throw new UserError('pass --predictions (score given outputs) or --checkpoint (run a model), not both');
  if (args.predictions === undefined && args.checkpoint === undefined) {
    throw new UserError(`${args.data}: pass --predictions FILE with model outputs (JSON lines with "pred", and "_id" or in data order), or --checkpoint CKPT --pred-dir DIR to run a model`);
  }
  const predictions = args.predictions ?? (await predictLongBench({ ...args, checkpoint: args.checkpoint! }));
  const datasets = await scoreLongBenchFiles(args.data, predictions);
  const average = averageScore(datasets);
  const rows = Object.entries(datasets).map(([name, s]) => [name, s.metric, String(s.count), s.score, ...LENGTH_BUCKETS.map((b) => s.buckets[b])]);
  if (rows.length > 1) rows.push(['average', '', '', average, null, null, null]);
  console.log(formatTable(['dataset', 'metric', 'n', 'score', ...LENGTH_BUCKETS], rows));
  if (args.out !== undefined) {
    writeFileAtomic(args.out, `${JSON.stringify({ data: args.data, predictions, average, datasets }, null, 2)}\n`);
    process.stderr.write(chalk.dim(`wrote ${args.out}\n`));
  }
}

export const longbenchCommand = defineCommand({
  command: 'longbench',
  describe: 'Score LongBench predictions, or a checkpoint run on the data, with the official metrics (per dataset and LongBench-E length bucket)',
  options: LONGBENCH_FLAGS,
  shared: BACKEND_FLAGS,
  examples: [
    ['$0 longbench --data data/longbench-sample/data.jsonl --predictions data/longbench-sample/predictions.jsonl', 'score the bundled sample'],
    ['$0 longbench --data data/longbench-sample/data.jsonl --checkpoint checkpoints/demo --pred-dir lb/demo', 'run the demo model on it and score its answers'],
  ],
  handler: runLongBench,
});
