/** `arl longbench`: score LongBench predictions with the official per-dataset metrics. */
import chalk from 'chalk';
import type { CommandModule } from 'yargs';
import { type DatasetScore, LENGTH_BUCKETS, scoreLongBenchFiles } from '../eval/longbench.ts';
import { pythonRound } from '../eval/metrics.ts';
import { formatTable } from '../eval/table.ts';
import { writeFileAtomic } from '../io/atomic.ts';
import { UserError } from '../io/errors.ts';

interface LongBenchArgs {
  data: string;
  predictions?: string;
  out?: string;
}

/** Mean of the per-dataset scores, as LongBench's tables average them. */
function averageScore(scores: Record<string, DatasetScore>): number {
  const values = Object.values(scores).map((s) => s.score);
  return pythonRound(values.reduce((a, b) => a + b, 0) / values.length, 2);
}

async function runLongBench(args: LongBenchArgs): Promise<void> {
  if (args.predictions === undefined) {
    throw new UserError(
      `${args.data}: running a model on LongBench is not available yet; pass --predictions FILE with model outputs (JSON lines with "pred", and "_id" or in the order of the data) to score them`,
    );
  }
  const datasets = await scoreLongBenchFiles(args.data, args.predictions);
  const average = averageScore(datasets);
  const rows = Object.entries(datasets).map(([name, s]) => [name, s.metric, String(s.count), s.score, ...LENGTH_BUCKETS.map((b) => s.buckets[b])]);
  if (rows.length > 1) rows.push(['average', '', '', average, null, null, null]);
  console.log(formatTable(['dataset', 'metric', 'n', 'score', ...LENGTH_BUCKETS], rows));
  if (args.out !== undefined) {
    writeFileAtomic(args.out, `${JSON.stringify({ data: args.data, predictions: args.predictions, average, datasets }, null, 2)}\n`);
    process.stderr.write(chalk.dim(`wrote ${args.out}\n`));
  }
}

export const longbenchCommand: CommandModule = {
  command: 'longbench',
  describe: 'Score LongBench predictions with the official metrics (per dataset, and by LongBench-E length bucket)',
  builder: (y) =>
    y
      .option('data', {
        type: 'string',
        demandOption: true,
        describe: 'LongBench JSON lines (_id, dataset, input, context, answers, length, all_classes)',
      })
      .option('predictions', { type: 'string', describe: 'JSON lines with "pred", and "_id" or in the order of --data' })
      .option('out', { type: 'string', describe: 'also write the scores as JSON to this file' })
      .example(
        '$0 longbench --data data/longbench-sample/data.jsonl --predictions data/longbench-sample/predictions.jsonl',
        'score the bundled sample',
      ),
  handler: (argv) => runLongBench(argv as unknown as LongBenchArgs),
};
