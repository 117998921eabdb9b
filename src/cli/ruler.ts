/** `arl ruler generate` and `arl ruler score`: RULER-style synthetic tasks and their scoring. */
import chalk from 'chalk';
import type { CommandModule } from 'yargs';
import { generateRulerSamples } from '../eval/ruler.ts';
import { Haystack } from '../eval/ruler-haystack.ts';
import { scoreRulerFiles } from '../eval/ruler-score.ts';
import { RULER_TASKS } from '../eval/ruler-tasks.ts';
import { evaluateRulerModel } from '../eval/ruler-eval.ts';
import { formatTable } from '../eval/table.ts';
import { writeFileAtomic } from '../io/atomic.ts';
import { BUNDLED_TOKENIZER_PATH, Tokenizer } from '../tokenizer/sentencepiece.ts';
import { UserError } from '../io/errors.ts';
import { lockFolder } from '../io/lock.ts';
import { ANSWER_FLAGS, openAnswerer } from './answer-options.ts';
import { BACKEND_FLAGS } from './common.ts';
import { type ArgsOf, defineCommand, defineOptions } from './options.ts';
import { ProgressBar } from './progress.ts';

const GENERATE_FLAGS = defineOptions({
  task: { type: 'string', array: true, choices: [...RULER_TASKS, 'all'], demandOption: true, describe: 'task(s), or all' },
  length: { type: 'number', demandOption: true, describe: 'input length in tokens (reached from below)' },
  count: { type: 'number', default: 10, describe: 'samples per task' },
  seed: { type: 'number', default: 0, describe: 'seeds the samples: the same seed gives the same samples' },
  out: { type: 'string', demandOption: true, describe: 'output .jsonl file (written atomically)' },
  split: { choices: ['test', 'train'], default: 'test', describe: 'entity pool: train samples never share keys, values or names with test ones' },
  corpus: { type: 'string', default: 'brown', describe: 'haystack text: "brown" (bundled), a .txt file, a folder of .txt files, or .jsonl with "text"' },
  depth: { type: 'number', describe: 'needle depth in percent for every sample (default: spread evenly over the samples)' },
  tokenizer: { type: 'string', default: BUNDLED_TOKENIZER_PATH, describe: 'SentencePiece .model that lengths are counted in' },
});

async function runGenerate(args: ArgsOf<typeof GENERATE_FLAGS>): Promise<void> {
  const tasks = args.task.includes('all') ? [...RULER_TASKS] : [...new Set(args.task.filter((task) => task !== 'all'))];
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

const generateCommand = defineCommand({
  command: 'generate',
  parent: 'ruler',
  describe: 'Generate samples as JSON lines {task, split, seed, index, depth, length, input, outputs}',
  options: GENERATE_FLAGS,
  examples: [
    ['$0 ruler generate --task niah_single --length 4096 --count 20 --out ruler/niah-4k.jsonl', '20 needle-in-a-haystack samples of 4096 tokens'],
    ['$0 ruler generate --task all --length 1024 --split train --seed 7 --out mix.jsonl', 'training-pool samples of every task'],
  ],
  handler: runGenerate,
});

const SCORE_FLAGS = defineOptions({
  data: { type: 'string', demandOption: true, describe: 'samples from `arl ruler generate`' },
  predictions: { type: 'string', demandOption: true, describe: 'JSON lines with "pred", and "index" (plus "task" for several tasks) or in data order' },
  out: { type: 'string', describe: 'also write the scores as JSON to this file' },
});

async function runScore(args: ArgsOf<typeof SCORE_FLAGS>): Promise<void> {
  const tasks = await scoreRulerFiles(args.data, args.predictions);
  const rows = Object.entries(tasks).map(([task, s]) => [task, s.metric, String(s.count), s.score]);
  console.log(formatTable(['task', 'metric', 'n', 'score'], rows));
  if (args.out !== undefined) {
    writeFileAtomic(args.out, `${JSON.stringify({ data: args.data, predictions: args.predictions, tasks }, null, 2)}\n`);
    process.stderr.write(chalk.dim(`wrote ${args.out}\n`));
  }
}

const scoreCommand = defineCommand({
  command: 'score',
  parent: 'ruler',
  describe: "Score predictions with RULER's string matching (all expected strings; any one for qa)",
  options: SCORE_FLAGS,
  examples: [['$0 ruler score --data ruler/niah-4k.jsonl --predictions preds.jsonl', 'score a model on generated samples']],
  handler: runScore,
});

const EVAL_FLAGS = defineOptions({
  ...ANSWER_FLAGS,
  data: { type: 'string', demandOption: true, describe: 'samples from `arl ruler generate`' },
});

async function runEval(args: ArgsOf<typeof EVAL_FLAGS & typeof BACKEND_FLAGS>): Promise<void> {
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

const evalCommand = defineCommand({
  command: 'eval',
  parent: 'ruler',
  describe: 'Run a checkpoint on generated samples (plain, --recap-agent or --lift), write predictions and score them',
  options: EVAL_FLAGS,
  shared: BACKEND_FLAGS,
  examples: [['$0 ruler eval --checkpoint checkpoints/demo --data ruler/niah-1k.jsonl --pred-dir ruler/demo-niah-1k', 'greedy answers of the demo model, scored']],
  handler: runEval,
});

export const rulerCommand: CommandModule = {
  command: 'ruler',
  describe: 'RULER-style synthetic long-context tasks: generate samples, score predictions, run a model on them',
  builder: (y) => y.command(generateCommand).command(scoreCommand).command(evalCommand).demandCommand(1, 'name a subcommand: generate, score or eval'),
  handler: () => {},
};
