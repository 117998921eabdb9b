/** `arl experiment` (npm run experiment): the resumable base / plain-CPT / ARL-CPT / LIFT comparison (src/eval/experiment.ts). */
import chalk from 'chalk';
import type { CommandModule } from 'yargs';
import { RECAPPERS, type RecapperName } from '../arl/recap.ts';
import type { BackendName } from '../backend.ts';
import { EXPERIMENT_SIZES, type ExperimentSize, runExperiment } from '../eval/experiment.ts';
import { REPORT_FILES } from '../eval/experiment-report.ts';
import { type ChatArgs, withChatOptions } from '../io/chat.ts';
import { lockFolder } from '../io/lock.ts';
import { recapperChat } from './arl.ts';
import { startBackend, withBackend } from './common.ts';

/** The numeric fields of a size that a flag of the same name (kebab-case) overrides, with what they count. */
const SIZE_FLAGS = {
  baseSteps: 'base pretraining steps',
  cptSteps: 'continued-pretraining steps of each arm and seed',
  baseDocs: 'corpus documents for base pretraining',
  cptDocs: 'corpus documents for continued pretraining and ARL data',
  devDocs: 'corpus documents for the development set (recap threshold)',
  heldoutDocs: 'corpus documents held out for the tests and LongPPL',
  recallDocs: 'recall documents added to the continued-pretraining corpus',
  taskFraction: 'share of each training batch made of retrieval task rows',
  copyFraction: 'share of each training batch made of copy rows (text written twice, loss on the repeat)',
  batch: 'training batch',
  seeds: 'continued-pretraining seeds per arm',
  perLength: 'test samples per task and length',
  devSamples: 'development samples the recap threshold is chosen on',
  liftDocs: 'LIFT test documents at 4x the window',
} as const satisfies Partial<Record<keyof ExperimentSize, string>>;

type SizeFlag = keyof typeof SIZE_FLAGS;

const kebab = (name: string): string => name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

interface ExperimentArgs extends ChatArgs, Partial<Record<SizeFlag, number>> {
  backend: BackendName;
  size: string;
  out?: string;
  recapper: RecapperName;
  corpus?: string;
  extraCorpus?: string;
  liftEpochs?: number[];
  stopAfter?: string;
}

export const experimentCommand: CommandModule = {
  command: 'experiment',
  describe: 'Train a base on text and retrieval task rows, then plain-CPT and ARL-CPT arms, and compare them (and LIFT) at 1x and 4x the window with paired 95% intervals, plus LongPPL; resumable',
  builder: (y) => {
    const common = withChatOptions(withBackend(y))
      .option('size', { choices: Object.keys(EXPERIMENT_SIZES), default: 'tiny', describe: 'toy (seconds, checks the pipeline), tiny (about 30 min on CPU), small (GPU)' })
      .option('out', { type: 'string', describe: 'run folder (default results/<size>); a rerun skips the stages recorded in its state.json' })
      .option('recapper', { choices: RECAPPERS, default: 'extractive' as RecapperName, describe: 'who writes the ARL recaps: extractive (our model, no LLM), openai or llama-cpp (--llm-* flags)' })
      .option('corpus', { type: 'string', describe: 'documents to train and evaluate on: a .txt file, a folder of .txt files or a .jsonl file (default: the bundled Brown corpus)' })
      .option('extra-corpus', { type: 'string', describe: 'more documents for the base\'s training text only, not haystacks or tests (e.g. GCIDE from scripts/gcide-corpus.ts)' })
      .option('lift-epochs', { type: 'number', array: true, describe: 'LIFT epochs of stage 1 and stage 2, e.g. 3 5 (default: the size\'s)' })
      .option('stop-after', { type: 'string', describe: 'stop once this stage is done, e.g. "eval base 1x" (the same command without it goes on)' });
    return (Object.entries(SIZE_FLAGS) as [SizeFlag, string][])
      .reduce((flags, [field, what]) => flags.option(kebab(field), { type: 'number', describe: `${what} (default: the size's)` }), common)
      .example('$0 experiment --size tiny --out results/tiny-cpu', 'the CPU-sized run')
      .example('$0 experiment --size small --backend webgpu --out results/small-gpu', 'a GPU run')
      .example('$0 experiment --size small --backend webgpu --corpus books/ --base-docs 5000 --cpt-docs 500', 'a GPU run on your own corpus');
  },
  handler: async (argv) => {
    const args = argv as unknown as ExperimentArgs;
    const out = args.out ?? `results/${args.size}`;
    const overrides: Partial<ExperimentSize> = {
      ...Object.fromEntries(Object.keys(SIZE_FLAGS).map((field) => [field, args[field as SizeFlag]])),
      liftEpochs: args.liftEpochs === undefined ? undefined : [args.liftEpochs[0] ?? 0, args.liftEpochs[1] ?? 0],
    };
    lockFolder(out);
    await startBackend(args.backend);
    const started = performance.now();
    const results = await runExperiment({
      out,
      size: args.size,
      corpus: args.corpus,
      extraCorpus: args.extraCorpus,
      overrides,
      recapper: args.recapper,
      stopAfter: args.stopAfter,
      chat: recapperChat(args),
      command: `arl ${process.argv.slice(2).join(' ')}`,
    });
    if (!results) return;
    for (const claim of results.claims) {
      const verdict = claim.met === null ? chalk.yellow('n/a') : claim.met ? chalk.green('met') : chalk.red('missed');
      const ci = claim.ci95 ? ` [${claim.ci95.map((v) => v.toFixed(3)).join(', ')}]` : '';
      console.log(`${verdict}  ${claim.claim}: ${claim.target}; gain ${claim.gain?.toFixed(3) ?? 'n/a'}${ci}, n ${claim.n}${claim.note ? ` (${claim.note})` : ''}`);
    }
    console.log(`wrote ${out}/results.json, ${out}/${REPORT_FILES.markdown} and plots (${((performance.now() - started) / 1000).toFixed(0)} s this call)`);
  },
};
