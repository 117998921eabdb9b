/**
 * `arl demo` (npm run demo): the main job on the embedded defaults. Prepares the bundled Brown
 * corpus with the bundled tokenizer, trains the tiny preset on the CPU for a few minutes, shows
 * the loss falling, saves a checkpoint and generates a sample from it.
 */
import chalk from 'chalk';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { readPrepareMeta } from '../data/format.ts';
import { sha256File } from '../io/sha256.ts';
import { LOCK_FILE, lockFolder } from '../io/lock.ts';
import { continuationText, generate } from '../infer/generate.ts';
import { BUNDLED_TOKENIZER_PATH, Tokenizer } from '../tokenizer/sentencepiece.ts';
import { runPrepare } from './data.ts';
import { BACKEND_FLAGS } from './common.ts';
import { defineCommand, withDefaults } from './options.ts';
import { runTrain, TRAIN_FLAGS, trainRunOf } from './train.ts';

export const DEMO_DEFAULTS = { out: 'checkpoints/demo', steps: 300, batch: 8, seq: 128, lr: 3e-3, warmup: 20, evalEvery: 100, saveEvery: 100 };
const DEMO_PROMPT = 'The jury said';

/** True when `dir` holds data prepared with the tokenizer now at `tokenizerPath` (a changed tokenizer makes it stale). */
export function isPreparedWith(dir: string, tokenizerPath: string): boolean {
  if (!existsSync(join(dir, 'meta.json'))) return false;
  return readPrepareMeta(dir).tokenizer.sha256 === sha256File(tokenizerPath);
}

export const demoCommand = defineCommand({
  command: 'demo',
  describe: 'Prepare the bundled corpus, train the tiny model on CPU, save it and generate a sample',
  options: {
    ...withDefaults(TRAIN_FLAGS, DEMO_DEFAULTS),
    prompt: { type: 'string', default: DEMO_PROMPT, describe: 'text the demo continues after training' },
  },
  shared: BACKEND_FLAGS,
  examples: [
    ['$0 demo', 'the whole pipeline in a few minutes'],
    ['$0 demo --steps 1000 --out checkpoints/demo-long', 'a longer run'],
  ],
  handler: async (args) => {
    console.log(chalk.bold('1/3 prepare') + chalk.dim(' the Brown corpus (500 documents) with the bundled SentencePiece tokenizer'));
    if (!isPreparedWith(args.data, BUNDLED_TOKENIZER_PATH)) {
      await runPrepare({ corpus: 'brown', tokenizer: BUNDLED_TOKENIZER_PATH, out: args.data, valFraction: 0.05, seed: 0 });
    } else {
      console.log(chalk.dim(`${args.data} already prepared with this tokenizer`));
    }

    console.log(chalk.bold('2/3 train') + chalk.dim(` the ${args.preset} preset for ${args.steps} steps of ${args.batch}x${args.seq} tokens`));
    // The demo starts over unless told to resume; the run folder is locked first, so another writer's run is not deleted.
    const releaseLock = lockFolder(args.out);
    if (!args.resume) for (const entry of readdirSync(args.out)) if (entry !== LOCK_FILE) rmSync(join(args.out, entry), { recursive: true, force: true });
    const result = await runTrain(trainRunOf(args));
    releaseLock();
    const { losses } = result;
    const head = losses.slice(0, 10);
    const tail = losses.slice(-10);
    const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
    if (losses.length > 0) {
      const fell = mean(tail) < mean(head);
      console.log(`loss ${mean(head).toFixed(3)} (first 10 steps) -> ${mean(tail).toFixed(3)} (last 10): ${fell ? chalk.green('falling') : chalk.red('not falling')}`);
    }
    console.log(`checkpoint: ${result.lastCheckpoint}`);

    console.log(chalk.bold('3/3 generate') + chalk.dim(` from "${args.prompt}"`));
    const tokenizer = await Tokenizer.load(BUNDLED_TOKENIZER_PATH);
    const model = result.model;
    try {
      const prompt = [model.config.bosId, ...tokenizer.encode(args.prompt)];
      const ids = await generate(model, prompt, { maxNewTokens: 60, temperature: 0.8, topK: 40, seed: args.seed, stopIds: [model.config.eosId] });
      console.log(`${chalk.dim(args.prompt)}${continuationText(tokenizer, prompt, ids)}`);
    } finally {
      model.dispose();
    }
    console.log(chalk.dim(`next: npm run generate -- --checkpoint ${args.out} --prompt "..."   |   npm run eval -- --checkpoint ${args.out}`));
  },
});
