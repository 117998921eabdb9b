/** `arl experiment` (npm run experiment): the resumable base / plain-CPT / ARL-CPT / LIFT comparison (src/eval/experiment.ts). */
import chalk from 'chalk';
import { RECAPPERS } from '../arl/recap.ts';
import { EXPERIMENT_PARTS, LIFT_VARIANTS, type LiftVariant, runExperiment, THRESHOLD_GRID } from '../eval/experiment.ts';
import { EXPERIMENT_SIZES, type ExperimentSize, TRAINING_TASK_MIX } from '../eval/experiment-sizes.ts';
import { KEY_WORDS, type KeyWords, RULER_TASKS, type RulerTask } from '../eval/ruler-tasks.ts';
import { REPORT_FILES } from '../eval/experiment-report.ts';
import { checkPositiveIntegers } from '../io/errors.ts';
import { lockFolder } from '../io/lock.ts';
import { recapperChat } from './arl.ts';
import { CHAT_FLAGS } from './chat-options.ts';
import { BACKEND_FLAGS, startBackend } from './common.ts';
import { defineCommand, defineOptions, valuesOf } from './options.ts';

const sizeFlag = (what: string) => ({ type: 'number', describe: `${what} (default: the size's)` }) as const;

/** The flags that override the numeric field of a size of the same name. */
const SIZE_FLAGS = defineOptions({
  'base-steps': sizeFlag('base pretraining steps'),
  'cpt-steps': sizeFlag('continued-pretraining steps of each arm and seed'),
  'base-docs': sizeFlag('corpus documents for base pretraining'),
  'cpt-docs': sizeFlag('corpus documents for continued pretraining and ARL data'),
  'dev-docs': sizeFlag('corpus documents for the development set (recap threshold)'),
  'heldout-docs': sizeFlag('corpus documents held out for the tests and LongPPL'),
  'recall-docs': sizeFlag('recall documents added to the continued-pretraining corpus'),
  'task-fraction': sizeFlag('share of each base training batch made of retrieval task rows'),
  'copy-fraction': sizeFlag('share of each base training batch made of copy rows (text written twice, loss on the repeat)'),
  'cpt-task-fraction': sizeFlag('share of each continued-pretraining batch made of retrieval task rows'),
  'cpt-copy-fraction': sizeFlag('share of each continued-pretraining batch made of copy rows'),
  batch: sizeFlag('training batch'),
  seeds: sizeFlag('continued-pretraining seeds per arm'),
  'per-length': sizeFlag('test samples per task and length'),
  'dev-samples': sizeFlag('development samples the recap threshold is chosen on'),
  'lift-docs': sizeFlag('LIFT test documents at 4x the window'),
});

const EXPERIMENT_FLAGS = defineOptions({
  size: { choices: Object.keys(EXPERIMENT_SIZES), default: 'tiny', describe: 'toy (seconds, checks the pipeline), tiny (about 30 min on CPU), small (GPU)' },
  out: { type: 'string', describe: 'run folder (default results/<size>); a rerun skips the stages recorded in its state.json' },
  recapper: { choices: RECAPPERS, default: 'extractive', describe: 'who writes the ARL recaps: extractive (our model, no LLM), openai or llama-cpp (--llm-* flags)' },
  corpus: { type: 'string', describe: 'documents to train and evaluate on: a .txt file, a folder of .txt files or a .jsonl file (default: the bundled Brown corpus)' },
  'extra-corpus': { type: 'string', describe: "more documents for the base's training text only, not haystacks or tests (e.g. GCIDE from scripts/gcide-corpus.ts)" },
  'lift-epochs': { type: 'number', array: true, describe: "LIFT epochs of stage 1 and stage 2, e.g. 3 5 (default: the size's)" },
  workers: { type: 'number', default: 1, describe: 'processes the arl-data stage (its documents) and the evaluation stages (RULER, LIFT, their examples) are split across, each with its own model copy on the same device; the same results as 1' },
  'stop-after': { type: 'string', describe: 'stop once this stage is done, e.g. "eval base 1x" (the same command without it goes on)' },
  parts: { choices: EXPERIMENT_PARTS, array: true, default: [...EXPERIMENT_PARTS], describe: 'the comparisons to run after the base: arl (both arms, the recap agent, LongPPL) and lift' },
  'lift-variants': { type: 'string', array: true, choices: LIFT_VARIANTS, describe: 'the LIFT variants to run, each quoted (default: all)' },
  'recap-thresholds': { type: 'number', array: true, describe: `recap thresholds tried on the development documents, the one with the best mean gold log-probability kept; one value fixes it in advance (default: ${THRESHOLD_GRID.join(' ')})` },
  'first-seed': { type: 'number', default: 1, describe: 'the first continued-pretraining seed; --seeds 1 --first-seed 2 runs seed 2 alone (in its own --out)' },
  'training-tasks': { type: 'string', array: true, choices: RULER_TASKS, describe: `the tasks of the training task rows, in turn; one named twice gets twice the rows (default: ${TRAINING_TASK_MIX.join(' ')})` },
  'training-key-words': { type: 'string', choices: KEY_WORDS, describe: "where the task rows' needle keys come from: RULER's word lists (their training half) or the haystack's words (training pool) (default: haystack in every size)" },
  ...SIZE_FLAGS,
});

export const experimentCommand = defineCommand({
  command: 'experiment',
  describe: 'Train a base on text and retrieval task rows, then plain-CPT and ARL-CPT arms, and compare them (and LIFT) at 1x and 4x the window with paired 95% intervals, plus LongPPL; resumable',
  options: EXPERIMENT_FLAGS,
  shared: { ...BACKEND_FLAGS, ...CHAT_FLAGS },
  examples: [
    ['$0 experiment --size tiny --out results/tiny-cpu', 'the CPU-sized run'],
    ['$0 experiment --size small --backend webgpu --out results/small-gpu', 'a GPU run'],
    ['$0 experiment --size small --backend webgpu --corpus books/ --base-docs 5000 --cpt-docs 500', 'a GPU run on your own corpus'],
  ],
  handler: async (args) => {
    const out = args.out ?? `results/${args.size}`;
    const overrides: Partial<ExperimentSize> = {
      ...valuesOf(SIZE_FLAGS, args),
      liftEpochs: args.liftEpochs === undefined ? undefined : [args.liftEpochs[0] ?? 0, args.liftEpochs[1] ?? 0],
      trainingTasks: args.trainingTasks as RulerTask[] | undefined,
      trainingKeyWords: args.trainingKeyWords as KeyWords | undefined,
    };
    checkPositiveIntegers({ '--workers': args.workers, '--first-seed': args.firstSeed });
    lockFolder(out);
    const backend = await startBackend(args.backend);
    const started = performance.now();
    const results = await runExperiment({
      out,
      size: args.size,
      corpus: args.corpus,
      extraCorpus: args.extraCorpus,
      overrides,
      recapper: args.recapper,
      stopAfter: args.stopAfter,
      recapThresholds: args.recapThresholds,
      parts: args.parts,
      liftVariants: args.liftVariants as LiftVariant[] | undefined,
      firstSeed: args.firstSeed,
      workers: { count: args.workers, backend: backend.name },
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
});
