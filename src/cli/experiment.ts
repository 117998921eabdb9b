/** `arl experiment` (npm run experiment): the resumable base / plain-CPT / ARL-CPT / LIFT comparison of issue 5. */
import chalk from 'chalk';
import type { CommandModule } from 'yargs';
import { RECAPPERS, type RecapperName } from '../arl/recap.ts';
import type { BackendName } from '../backend.ts';
import { EXPERIMENT_SIZES, type ExperimentSize, runExperiment } from '../eval/experiment.ts';
import { REPORT_FILES } from '../eval/experiment-report.ts';
import { RULER_TASKS, type RulerTask } from '../eval/ruler.ts';
import { type ChatArgs, chatOptionsFromArgs, withChatOptions } from '../io/chat.ts';
import { startBackend, withBackend } from './common.ts';

interface ExperimentArgs extends ChatArgs {
  backend: BackendName;
  size: string;
  out?: string;
  recapper: RecapperName;
  baseSteps?: number;
  cptSteps?: number;
  baseMix?: number;
  cptMix?: number;
  corpus?: string;
  baseDocs?: number;
  cptDocs?: number;
  heldoutDocs?: number;
  perLength?: number;
  batch?: number;
  tasks?: RulerTask[];
  liftEpochs?: number[];
}

export const experimentCommand: CommandModule = {
  command: 'experiment',
  describe: 'Train base, plain-CPT and ARL-CPT models and compare them (and LIFT) on RULER-style tasks at 1-8x the window, plus LongPPL; resumable',
  builder: (y) =>
    withChatOptions(withBackend(y))
      .option('size', { choices: Object.keys(EXPERIMENT_SIZES), default: 'tiny', describe: 'toy (seconds, checks the pipeline), tiny (about 30 min on CPU), small (GPU)' })
      .option('out', { type: 'string', describe: 'run folder (default results/<size>); a rerun skips the stages recorded in its state.json' })
      .option('recapper', { choices: RECAPPERS, default: 'extractive' as RecapperName, describe: 'who writes the ARL recaps: extractive (our model, no LLM), openai or llama-cpp (--llm-* flags)' })
      .option('base-steps', { type: 'number', describe: 'base pretraining steps (default: the size\'s)' })
      .option('cpt-steps', { type: 'number', describe: 'continued-pretraining steps of each copy (default: the size\'s)' })
      .option('corpus', { type: 'string', describe: 'documents to train and evaluate on: a .txt file, a folder of .txt files or a .jsonl file (default: the bundled Brown corpus)' })
      .option('base-docs', { type: 'number', describe: 'corpus documents for base pretraining (default: the size\'s)' })
      .option('cpt-docs', { type: 'number', describe: 'corpus documents for continued pretraining and ARL data (default: the size\'s)' })
      .option('heldout-docs', { type: 'number', describe: 'corpus documents held out for LongPPL (default: the size\'s)' })
      .option('base-mix', { type: 'number', describe: 'RULER training-mix samples in the base data (default: the size\'s)' })
      .option('cpt-mix', { type: 'number', describe: 'RULER training-mix samples in each continued-pretraining data set (default: the size\'s)' })
      .option('batch', { type: 'number', describe: 'training batch (default: the size\'s)' })
      .option('per-length', { type: 'number', describe: 'test samples per task and length (default: the size\'s)' })
      .option('tasks', { type: 'string', array: true, choices: RULER_TASKS, describe: 'RULER tasks (default: the size\'s)' })
      .option('lift-epochs', { type: 'number', array: true, describe: 'LIFT epochs of stage 1 and stage 2, e.g. 3 5 (default: the size\'s)' })
      .example('$0 experiment --size tiny --out results/tiny-cpu', 'the CPU-sized run')
      .example('$0 experiment --size small --backend webgpu --out results/small-gpu', 'a GPU run')
      .example('$0 experiment --size small --backend webgpu --corpus books/ --base-docs 5000 --cpt-docs 500', 'a GPU run on your own corpus'),
  handler: async (argv) => {
    const args = argv as unknown as ExperimentArgs;
    const out = args.out ?? `results/${args.size}`;
    const overrides: Partial<ExperimentSize> = {
      baseSteps: args.baseSteps,
      cptSteps: args.cptSteps,
      baseMix: args.baseMix,
      baseDocs: args.baseDocs,
      cptDocs: args.cptDocs,
      heldoutDocs: args.heldoutDocs,
      cptMix: args.cptMix,
      batch: args.batch,
      perLength: args.perLength,
      tasks: args.tasks,
      liftEpochs: args.liftEpochs === undefined ? undefined : [args.liftEpochs[0] ?? 0, args.liftEpochs[1] ?? 0],
    };
    await startBackend(args.backend);
    const started = performance.now();
    const results = await runExperiment({
      out,
      size: args.size,
      corpus: args.corpus,
      overrides,
      recapper: args.recapper,
      chat: args.recapper === 'extractive' ? undefined : chatOptionsFromArgs(args, args.recapper),
      command: `arl ${process.argv.slice(2).join(' ')}`,
    });
    for (const claim of results.claims) {
      const verdict = claim.met === null ? chalk.yellow('n/a') : claim.met ? chalk.green('met') : chalk.red('missed');
      console.log(`${verdict}  ${claim.claim}: ${claim.target}${claim.note ? ` (${claim.note})` : ''}`);
    }
    console.log(`wrote ${out}/results.json, ${out}/${REPORT_FILES.markdown} and plots (${((performance.now() - started) / 1000).toFixed(0)} s this call)`);
  },
};
