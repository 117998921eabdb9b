/** `arl ruler generate` and `arl ruler score`: RULER-style synthetic tasks and their scoring. */
import chalk from 'chalk';
import type { CommandModule } from 'yargs';
import { generateRulerSamples } from '../eval/ruler.ts';
import { Haystack } from '../eval/ruler-haystack.ts';
import { scoreRulerFiles } from '../eval/ruler-score.ts';
import { RULER_TASKS, type RulerSplit, type RulerTask } from '../eval/ruler-tasks.ts';
import { evaluateRulerModel } from '../eval/ruler-eval.ts';
import { formatTable } from '../eval/table.ts';
import { writeFileAtomic } from '../io/atomic.ts';
import { BUNDLED_TOKENIZER_PATH, Tokenizer } from '../tokenizer/sentencepiece.ts';
import { UserError } from '../io/errors.ts';
import { lockFolder } from '../io/lock.ts';
import { type AnswerArgs, openAnswerer, withAnswerOptions } from './answer-options.ts';
import { ProgressBar } from './progress.ts';

interface GenerateArgs {
  task: Array<RulerTask | 'all'>;
  length: number;
  count: number;
  seed: number;
  out: string;
  split: RulerSplit;
  corpus: string;
  depth?: number;
  tokenizer: string;
}

async function runGenerate(args: GenerateArgs): Promise<void> {
  const tasks = args.task.includes('all') ? [...RULER_TASKS] : [...new Set(args.task as RulerTask[])];
  const tokenizer = await Tokenizer.load(args.tokenizer);
  process.stderr.write(chalk.dim(`reading corpus ${args.corpus}\n`));
  const haystack = await Haystack.load(args.corpus);
  const progress = new ProgressBar(tasks.length * args.count, 'ruler');
  const lines: string[] = [];
  for (const task of tasks) {
    const options = { task, lengthTokens: args.length, seed: args.seed, split: args.split, count: args.count, depth: args.depth, tokenizer, haystack };
    for (const sample of generateRulerSamples(options)) {
      lines.push(JSON.stringify(sample));
      progress.update(lines.length, `${task} ${sample.length} tokens`);
    }
  }
  writeFileAtomic(args.out, `${lines.join('\n')}\n`);
  console.log(`${chalk.green('wrote')} ${args.out}: ${lines.length} samples (${tasks.join(', ')}) of about ${args.length} tokens, ${args.split} split, seed ${args.seed}`);
}

const generateCommand: CommandModule = {
  command: 'generate',
  describe: 'Generate samples as JSON lines {task, split, seed, index, depth, length, input, outputs}',
  builder: (y) =>
    y
      .option('task', { type: 'string', array: true, choices: [...RULER_TASKS, 'all'], demandOption: true, describe: 'task(s), or all' })
      .option('length', { type: 'number', demandOption: true, describe: 'input length in tokens (reached from below)' })
      .option('count', { type: 'number', default: 10, describe: 'samples per task' })
      .option('seed', { type: 'number', default: 0 })
      .option('out', { type: 'string', demandOption: true, describe: 'output .jsonl file (written atomically)' })
      .option('split', { choices: ['test', 'train'] as const, default: 'test' as const, describe: 'entity pool: train samples never share keys, values or names with test ones' })
      .option('corpus', { type: 'string', default: 'brown', describe: 'haystack text: "brown" (bundled), a .txt file, a folder of .txt files, or .jsonl with "text"' })
      .option('depth', { type: 'number', describe: 'needle depth in percent for every sample (default: spread evenly over the samples)' })
      .option('tokenizer', { type: 'string', default: BUNDLED_TOKENIZER_PATH, describe: 'SentencePiece .model that lengths are counted in' })
      .example('$0 ruler generate --task niah_single --length 4096 --count 20 --out ruler/niah-4k.jsonl', '20 needle-in-a-haystack samples of 4096 tokens')
      .example('$0 ruler generate --task all --length 1024 --split train --seed 7 --out mix.jsonl', 'training-pool samples of every task'),
  handler: (argv) => runGenerate(argv as unknown as GenerateArgs),
};

interface ScoreArgs {
  data: string;
  predictions: string;
  out?: string;
}

async function runScore(args: ScoreArgs): Promise<void> {
  const tasks = await scoreRulerFiles(args.data, args.predictions);
  const rows = Object.entries(tasks).map(([task, s]) => [task, s.metric, String(s.count), s.score]);
  console.log(formatTable(['task', 'metric', 'n', 'score'], rows));
  if (args.out !== undefined) {
    writeFileAtomic(args.out, `${JSON.stringify({ data: args.data, predictions: args.predictions, tasks }, null, 2)}\n`);
    process.stderr.write(chalk.dim(`wrote ${args.out}\n`));
  }
}

const scoreCommand: CommandModule = {
  command: 'score',
  describe: "Score predictions with RULER's string matching (all expected strings; any one for qa)",
  builder: (y) =>
    y
      .option('data', { type: 'string', demandOption: true, describe: 'samples from `arl ruler generate`' })
      .option('predictions', { type: 'string', demandOption: true, describe: 'JSON lines with "pred", and "index" (plus "task" for several tasks) or in data order' })
      .option('out', { type: 'string', describe: 'also write the scores as JSON to this file' })
      .example('$0 ruler score --data ruler/niah-4k.jsonl --predictions preds.jsonl', 'score a model on generated samples'),
  handler: (argv) => runScore(argv as unknown as ScoreArgs),
};

interface EvalArgs extends AnswerArgs {
  data: string;
}

async function runEval(args: EvalArgs): Promise<void> {
  if (args.checkpoint === undefined) throw new UserError('arl ruler eval needs --checkpoint CKPT (to score given predictions, use arl ruler score)');
  if (args.predDir === undefined) throw new UserError('arl ruler eval needs --pred-dir DIR for its predictions.jsonl and scores.json');
  lockFolder(args.predDir);
  const opened = await openAnswerer({ ...args, checkpoint: args.checkpoint });
  try {
    let bar: ProgressBar | null = null;
    const result = await evaluateRulerModel({
      ...opened,
      dataPath: args.data,
      outDir: args.predDir,
      onItem: (done, total) => (bar ??= new ProgressBar(total, `ruler ${opened.mode}`)).update(done, ''),
    });
    const rows = Object.entries(result.tasks).map(([task, s]) => [task, s.metric, String(s.count), s.score]);
    if (rows.length > 1) rows.push(['average', '', '', result.average]);
    console.log(formatTable(['task', 'metric', 'n', 'score'], rows));
    process.stderr.write(chalk.dim(`wrote ${args.predDir}/predictions.jsonl and scores.json\n`));
  } finally {
    opened.model.dispose();
  }
}

const evalCommand: CommandModule = {
  command: 'eval',
  describe: 'Run a checkpoint on generated samples (plain, --recap-agent or --lift), write predictions and score them',
  builder: (y) =>
    withAnswerOptions(y)
      .option('data', { type: 'string', demandOption: true, describe: 'samples from `arl ruler generate`' })
      .example('$0 ruler eval --checkpoint checkpoints/demo --data ruler/niah-1k.jsonl --pred-dir ruler/demo-niah-1k', 'greedy answers of the demo model, scored'),
  handler: (argv) => runEval(argv as unknown as EvalArgs),
};

export const rulerCommand: CommandModule = {
  command: 'ruler',
  describe: 'RULER-style synthetic long-context tasks: generate samples, score predictions, run a model on them',
  builder: (y) => y.command(generateCommand).command(scoreCommand).command(evalCommand).demandCommand(1, 'name a subcommand: generate, score or eval'),
  handler: () => {},
};
