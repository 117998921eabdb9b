/**
 * The experiment, as a resumable runner. A base model (window T) is pretrained on corpus text plus retrieval
 * task rows made on the fly (loss on the answer only). Two arms then continue pretraining from it, each with
 * the same seeds, documents (corpus text plus recall documents) and steps: plain, and ARL-augmented (recaps
 * from our own pipeline). Evaluated on held-out haystacks with test-pool keys: the base at 1x T; plain-CPT
 * against ARL-CPT with the recap agent (its threshold tuned on development documents) at 1x and 4x T, and the
 * agent with recaps off; LIFT (without and with cloze auxiliary QA) against truncated in-context answering at
 * 4x T with the needle mid-document; LongPPL. Comparisons are paired on the same documents with bootstrap 95% intervals, and judged against the
 * falsifiers declared in experiment-claims.ts before any run.
 *
 * Every finished stage is recorded in <run>/state.json and skipped on a rerun; the long stages (training, ARL
 * data, predictions) also resume inside themselves.
 */
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { AUGMENT_FILES } from '../arl/augment.ts';
import { buildRecapData } from '../arl/pipeline.ts';
import { recapDataProgressLog } from '../arl/progress-log.ts';
import { recallDocuments } from '../arl/recall-documents.ts';
import { type RecapperName } from '../arl/recap.ts';
import { BROWN_SOURCE, type CorpusDocument, readDocuments } from '../data/corpus.ts';
import { prepareCorpus } from '../data/prepare.ts';
import { DEFAULT_TASK_ROWS } from '../data/task-rows.ts';
import { writeFileAtomic } from '../io/atomic.ts';
import { loadModel, resolveCheckpointDir } from '../io/checkpoint.ts';
import type { ChatOptions } from '../io/chat.ts';
import { UserError } from '../io/errors.ts';
import { makeConfig } from '../model/config.ts';
import { BUNDLED_TOKENIZER_PATH, Tokenizer } from '../tokenizer/sentencepiece.ts';
import { DEFAULT_TRAIN, train, type TrainOptions } from '../train/trainer.ts';
import { makeAnswerer, type AnswerMode } from './answerers.ts';
import { checkClaims, type ClaimCheck, type LiftExample, type MethodLengthResult } from './experiment-claims.ts';
import { writeExperimentReport } from './experiment-report.ts';
import { evaluateLift, type LiftSchedule } from './experiment-lift.ts';
import { QA_PER_INPUT } from '../lift/auxiliary-qa.ts';
import { evaluateLongPpl, type LongPplReport } from './longppl.ts';
import { keyTokenOptions } from '../arl/key-tokens.ts';
import { generateRulerSample, type RulerSample } from './ruler.ts';
import { Haystack } from './ruler-haystack.ts';
import { entityPool, hashString, type RulerTask } from './ruler-tasks.ts';
import { NOUNS } from './ruler-words.ts';
import { type AgentWork, evaluateRulerModel } from './ruler-eval.ts';
import type { WorkerModel } from './worker-job.ts';
import { workerPredictions } from './workers.ts';
import { workerRecapData } from './arl-data-workers.ts';
import { type ExperimentSize, resolveSize } from './experiment-sizes.ts';

export type { ClaimCheck, MethodLengthResult } from './experiment-claims.ts';

/** The tasks compared: one needle, and one of four keys. */
export const EXPERIMENT_TASKS: RulerTask[] = ['niah_single', 'niah_multikey'];
/** Test lengths as multiples of the training window T. */
export const LENGTH_MULTIPLES = [1, 4] as const;
/** A diagnostic beside the tests: the base on 4-key samples at 1x whose keys come from the training pool. */
export const TRAINING_KEYS_TEST = '1x-training-keys';
export const BASE_TRAINING_KEYS = 'base, training-pool keys';
/** Segments per AdamW step of the LIFT more-steps variants. */
const LIFT_MORE_STEPS_BATCH = 4;
/**
 * The LIFT variants, in the order they run. The last two were declared after the first four had run once: the
 * more-steps schedule, the only one that stored the needle, with cloze QA pairs (to teach answering from the adapter)
 * and with one-word values (whose exact match chance is 1/64 rather than about 0).
 */
export const LIFT_VARIANTS = ['paper', 'paper + cloze QA', 'more-steps', 'paper, 64-word values', 'more-steps + cloze QA', 'more-steps, 64-word values'] as const;
export type LiftVariant = (typeof LIFT_VARIANTS)[number];

/** The recap thresholds tried on the development documents, highest first (ties keep the higher). */
export const THRESHOLD_GRID = [0.5, 0.2, 0.1, 0.05, 0.02, 0.01];
/** The thresholds, highest first (ties keep the higher), when each is a probability above 0 (a recap at P(<recap>) 0 would be written always). */
function checkedThresholds(thresholds: readonly number[]): number[] {
  const bad = thresholds.find((t) => !(t > 0 && t <= 1));
  if (thresholds.length === 0 || bad !== undefined) throw new UserError(`experiment --recap-thresholds must be one or more probabilities in (0, 1] (got ${thresholds.length ? bad : 'none'})`);
  return [...thresholds].sort((a, b) => b - a);
}

/** A threshold above 1: the agent never recaps (the "recaps off" ablation). */
const RECAPS_OFF = 2;

export const EXPERIMENT_PARTS = ['arl', 'lift'] as const;
export type ExperimentPart = (typeof EXPERIMENT_PARTS)[number];

export interface ExperimentOptions {
  /** The run folder (results/<run>). */
  out: string;
  size: string;
  /** Documents (readDocuments' sources); default the bundled Brown corpus. */
  corpus?: string;
  /** More documents for the base's training text only (not haystacks or tests), e.g. scripts/gcide-corpus.ts's. */
  extraCorpus?: string;
  /** Overrides of the size's fields. */
  overrides?: Partial<ExperimentSize>;
  recapper: RecapperName;
  /** LLM client settings for --recapper openai / llama-cpp. */
  chat?: Omit<ChatOptions, 'backend'>;
  /** Stop once this stage is done (e.g. to check the base before the rest). */
  stopAfter?: string;
  /**
   * The recap thresholds tried on the development documents (default THRESHOLD_GRID); one value fixes the threshold
   * in advance, and the development set is then only reported.
   */
  recapThresholds?: readonly number[];
  /** The comparisons to run after the base (default both); LongPPL goes with ARL (it reads the CPT arms). */
  parts?: readonly ExperimentPart[];
  /** The LIFT variants to run (default all of LIFT_VARIANTS). */
  liftVariants?: readonly LiftVariant[];
  /**
   * The first continued-pretraining seed (default 1): the size's `seeds` seeds from it. With `seeds` 1 and
   * `firstSeed` 2, another run folder holds seed 2 alone, for a machine whose time holds one seed per run.
   */
  firstSeed?: number;
  /**
   * Worker processes for the arl-data stage (its shards) and the evaluation stages (RULER and LIFT), each with its
   * own model copy, and the backend they start (the one this process took); the results are the same as with one.
   * Default one: all in this process.
   */
  workers?: { count: number; backend: string };
  /** Written into the results as the command that made them. */
  command?: string;
  log?: (message: string) => void;
}

interface StageRecord {
  seconds: number;
  finished_at: string;
  result?: unknown;
}

interface ExperimentState {
  settings: Record<string, unknown>;
  stages: Record<string, StageRecord>;
}

export interface ExperimentResults {
  settings: Record<string, unknown>;
  ruler: MethodLengthResult[];
  /** Per seed: the threshold chosen (highest mean gold log-probability on the development set), and each threshold's figures there. */
  thresholds: Record<string, { chosen: number; dev_accuracy: Record<string, number>; dev_gold_logprob?: Record<string, number> }>;
  lift: LiftExample[];
  longppl: Record<string, LongPplReport>;
  timings: Record<string, number>;
  claims: ClaimCheck[];
  /** False in the copy written after each seed's comparison, so that a run cut short still has its finished seeds. */
  complete: boolean;
}

/** Settings only the evaluation depends on: changing them redoes the evaluation and keeps the trained models. */
const EVALUATION_SETTINGS = ['perLength', 'devSamples', 'liftDocs', 'liftEpochs', 'liftMoreEpochs', 'recapThresholds'];
const TRAINING_STAGE = /^(data|train-|arl-data)/;

/** The corpus's first documents cut into four disjoint sets, in corpus order. */
async function splitCorpus(source: string, size: ExperimentSize): Promise<Record<'base' | 'cpt' | 'dev' | 'heldout', CorpusDocument[]>> {
  const counts = { base: size.baseDocs, cpt: size.cptDocs, dev: size.devDocs, heldout: size.heldoutDocs };
  const needed = Object.values(counts).reduce((a, b) => a + b, 0);
  const docs: CorpusDocument[] = [];
  for await (const doc of readDocuments(source)) {
    docs.push(doc);
    if (docs.length === needed) break;
  }
  if (docs.length < needed) {
    const flags = Object.entries(counts).map(([name, n]) => `--${name}-docs ${n}`).join(' + ');
    throw new UserError(`${source}: the corpus has ${docs.length} documents; the experiment asks for ${needed} (${flags})`);
  }
  let at = 0;
  const take = (n: number) => docs.slice(at, (at += n));
  return { base: take(counts.base), cpt: take(counts.cpt), dev: take(counts.dev), heldout: take(counts.heldout) };
}

function writeJsonl(path: string, docs: readonly CorpusDocument[]): void {
  writeFileAtomic(path, docs.map((d) => `${JSON.stringify({ id: d.id, text: d.text })}\n`).join(''));
}

async function readJsonlDocuments(path: string): Promise<CorpusDocument[]> {
  const docs: CorpusDocument[] = [];
  for await (const doc of readDocuments(path)) docs.push(doc);
  return docs;
}

/** Length in tokens of the test samples at a multiple of T: room is left for the answer, so 1x fits the window. */
export function testLength(window: number, multiple: number): number {
  return multiple * window - Math.floor(window / 4);
}

/** The mean log-probability of the expected answer over examples that recorded it (-Infinity where none did). */
function meanGoldLogProb(examples: readonly { gold_logprob?: number }[]): number {
  const values = examples.map((e) => e.gold_logprob).filter((v): v is number => v !== undefined);
  return values.length ? values.reduce((a, b) => a + b, 0) / values.length : -Infinity;
}

/** 64 test-pool nouns: the values of the LIFT word variant. */
const LIFT_WORDS = NOUNS.filter((word) => entityPool(word) === 'test').slice(0, 64);

/** A single-needle sample with its 7-digit value replaced by `word` (in the needle and the expected output). */
function withWordValue(sample: RulerSample, word: string): RulerSample {
  const value = sample.outputs[0]!;
  return { ...sample, input: sample.input.replace(`is: ${value}.`, `is: ${word}.`), outputs: [word] };
}

export async function runExperiment(o: ExperimentOptions): Promise<ExperimentResults | null> {
  const log = o.log ?? ((message: string) => process.stderr.write(`${message}\n`));
  const size = resolveSize(o.size, o.overrides);
  const out = resolve(o.out);
  mkdirSync(out, { recursive: true });
  const statePath = join(out, 'state.json');
  // How many answers are decoded together changes them only through rounding (prompts share products of other shapes).
  const { agentBatch: _agentBatch, ...trained } = size;
  const recapThresholds = checkedThresholds(o.recapThresholds ?? THRESHOLD_GRID);
  const settings: Record<string, unknown> = { size: o.size, ...trained, ...(o.recapThresholds ? { recapThresholds } : {}), recapper: o.recapper, ...(o.corpus ? { corpus: o.corpus } : {}), ...(o.extraCorpus ? { extra_corpus: o.extraCorpus } : {}) };
  const trainingSettings = (s: Record<string, unknown>) => JSON.stringify(Object.fromEntries(Object.entries(s).filter(([key]) => !EVALUATION_SETTINGS.includes(key))));
  const state: ExperimentState = existsSync(statePath) ? (JSON.parse(readFileSync(statePath, 'utf8')) as ExperimentState) : { settings, stages: {} };
  if (trainingSettings(state.settings) !== trainingSettings(settings)) {
    throw new UserError(`${statePath}: this run was started with other settings (${JSON.stringify(state.settings)}); use another --out, or the same flags`);
  }
  if (JSON.stringify(state.settings) !== JSON.stringify(settings)) {
    log(`[experiment] evaluation settings changed (${EVALUATION_SETTINGS.join(', ')}): the trained models are kept, the evaluation is redone`);
    for (const name of Object.keys(state.stages)) if (!TRAINING_STAGE.test(name)) delete state.stages[name];
    for (const dir of ['tests', 'predictions']) rmSync(join(out, dir), { recursive: true, force: true });
    state.settings = settings;
  }
  const saveState = () => writeFileAtomic(statePath, `${JSON.stringify(state, null, 2)}\n`);
  saveState();
  let stopped = false;
  const stage = async <T>(name: string, work: () => Promise<T>, outputs: readonly string[] = []): Promise<T> => {
    const done = state.stages[name];
    const missing = outputs.find((path) => !existsSync(path));
    if (done && !missing) {
      log(`[experiment] ${name}: done earlier (${done.seconds.toFixed(1)} s), skipped`);
      return done.result as T;
    }
    // A run folder copied without its large outputs (checkpoints) goes on: what later stages read is made again.
    if (done) log(`[experiment] ${name}: done earlier, but ${missing} is gone; running it again`);
    if (stopped) throw new StopRequested();
    log(`[experiment] ${name} ...`);
    const started = performance.now();
    const result = await work();
    const seconds = (performance.now() - started) / 1000;
    if (done && JSON.stringify(done.result) !== JSON.stringify(result)) {
      log(`[experiment] ${name}: the rerun differs from the record (${JSON.stringify(done.result)} then, ${JSON.stringify(result)} now); later stages use the rerun`);
    }
    state.stages[name] = { seconds, finished_at: new Date().toISOString(), ...(result === undefined ? {} : { result }) };
    saveState();
    log(`[experiment] ${name}: ${seconds.toFixed(1)} s`);
    if (name === o.stopAfter) stopped = true;
    return result;
  };
  try {
    return await runStages({ ...o, recapThresholds }, size, out, settings, state, stage, log);
  } catch (err) {
    if (err instanceof StopRequested) {
      log(`[experiment] stopped after ${o.stopAfter}, as asked; run the same command without --stop-after to go on`);
      return null;
    }
    throw err;
  }
}

class StopRequested extends Error {}

type Stage = <T>(name: string, work: () => Promise<T>, outputs?: readonly string[]) => Promise<T>;

async function runStages(o: ExperimentOptions, size: ExperimentSize, out: string, settings: Record<string, unknown>, state: ExperimentState, stage: Stage, log: (m: string) => void): Promise<ExperimentResults> {
  const tokenizer = await Tokenizer.load(BUNDLED_TOKENIZER_PATH);
  const modelConfig = makeConfig(size.preset, { vocabSize: tokenizer.vocabSize, ...size.model });
  const window = modelConfig.maxSeq;
  const shortContext = keyTokenOptions(window).shortContext;
  const dataDir = join(out, 'data');
  const corpus = (name: string) => join(dataDir, `${name}.jsonl`);
  const prepared = (name: string) => join(dataDir, `${name}-prepared`);
  const runDir = (model: string) => join(out, 'runs', model);
  const seeds = Array.from({ length: size.seeds }, (_, i) => i + (o.firstSeed ?? 1));
  const parts = new Set(o.parts ?? EXPERIMENT_PARTS);
  const workers = o.workers && o.workers.count > 1 ? o.workers : null;
  const inWorkers = (label: string, model: Omit<WorkerModel, 'tokenizer'>) =>
    workers ? workerPredictions({ ...workers, log }, label, { ...model, tokenizer: tokenizer.modelPath }) : undefined;

  // 1. Data: four disjoint document sets; the CPT corpus adds recall documents (haystacks from the CPT documents).
  await stage('data', async () => {
    mkdirSync(dataDir, { recursive: true });
    const docs = await splitCorpus(o.corpus ?? BROWN_SOURCE, size);
    const recall = recallDocuments({ haystack: Haystack.fromDocuments(docs.cpt), tokenizer, window, shortContext, seed: 0 }, size.recallDocs);
    const extra = o.extraCorpus ? await readJsonlDocuments(o.extraCorpus) : [];
    writeJsonl(corpus('base'), docs.base); // also the training haystacks
    writeJsonl(corpus('base-text'), [...docs.base, ...extra]);
    writeJsonl(corpus('cpt'), [...docs.cpt, ...recall]);
    writeJsonl(corpus('dev'), docs.dev);
    writeJsonl(corpus('heldout'), docs.heldout);
    for (const name of ['base-text', 'cpt']) await prepareCorpus({ source: corpus(name), tokenizer, outDir: prepared(name), valFraction: 0.05, seed: 0 });
    return { recall_docs: recall.length, extra_docs: extra.length };
  }, [...['base', 'base-text', 'cpt', 'dev', 'heldout'].map(corpus), prepared('base-text'), prepared('cpt')]);

  const trainRun = async (name: string, data: string, steps: number, seed: number, init?: string) => {
    const options: TrainOptions = {
      ...DEFAULT_TRAIN,
      data,
      out: runDir(name),
      steps,
      batch: size.batch,
      seq: window,
      // 3e-3 (the default) left the 29.4M model worse on text than the 6.8M one after 1,500 steps.
      lr: init ? 1e-3 : 1.5e-3,
      minLr: init ? 1e-4 : 1.5e-4,
      warmup: Math.max(1, Math.min(init ? DEFAULT_TRAIN.warmup : 100, Math.floor(steps / 10))),
      evalEvery: Math.max(1, Math.floor(steps / 4)),
      evalBatches: 2,
      saveEvery: Math.max(1, Math.floor(steps / 4)),
      seed,
      taskRows: {
        ...DEFAULT_TASK_ROWS,
        tasks: size.trainingTasks,
        keyWords: size.trainingKeyWords,
        fraction: init ? size.cptTaskFraction : size.taskFraction,
        copyFraction: init ? size.cptCopyFraction : size.copyFraction,
        haystack: corpus('base'),
      },
    };
    let lastLog = performance.now();
    const result = await train(options, { modelConfig, init, tokenizerPath: tokenizer.modelPath }, {
      onStep: (m, total) => {
        if (performance.now() - lastLog > 15_000 || m.step === total) {
          lastLog = performance.now();
          log(`  ${name} step ${m.step}/${total} loss ${m.loss.toFixed(3)} ${Math.round(m.tokens_per_s)} tok/s`);
        }
      },
    });
    result.model.dispose();
    return { final_loss: result.losses.at(-1) ?? null };
  };

  // 2. The base model.
  await stage('train-base', () => trainRun('base', prepared('base-text'), size.baseSteps, DEFAULT_TRAIN.seed), [runDir('base')]);

  // 3. Test sets (held-out haystacks, test-pool keys) and the development set (dev haystacks, train-pool keys).
  const testFile = (name: string) => join(out, 'tests', `${name}.jsonl`);
  await stage('test-data', async () => {
    mkdirSync(join(out, 'tests'), { recursive: true });
    const heldout = Haystack.fromDocuments(await readJsonlDocuments(corpus('heldout')));
    const dev = Haystack.fromDocuments(await readJsonlDocuments(corpus('dev')));
    const write = (name: string, lines: object[]) => writeFileAtomic(testFile(name), lines.map((l) => `${JSON.stringify(l)}\n`).join(''));
    for (const multiple of LENGTH_MULTIPLES) {
      const lengthTokens = testLength(window, multiple);
      write(`${multiple}x`, EXPERIMENT_TASKS.flatMap((task) => Array.from({ length: size.perLength }, (_, i) =>
        generateRulerSample({ task, lengthTokens, seed: 1000, split: 'test', count: size.perLength, tokenizer, haystack: heldout }, i))));
    }
    // The 4-key test at 1x again, with keys from the training pool: where the base answers these better than the
    // test-pool keys, its key matching is tied to the key words it was trained on rather than general.
    write(TRAINING_KEYS_TEST, Array.from({ length: size.perLength }, (_, i) =>
      generateRulerSample({ task: 'niah_multikey', lengthTokens: testLength(window, 1), seed: 1000, split: 'train', count: size.perLength, tokenizer, haystack: heldout }, i)));
    // Development samples of both tasks, as the tests: a threshold chosen on one needle alone would favour it.
    const devPerTask = Math.max(1, Math.round(size.devSamples / EXPERIMENT_TASKS.length));
    write('dev-4x', EXPERIMENT_TASKS.flatMap((task) => Array.from({ length: devPerTask }, (_, i) =>
      generateRulerSample({ task, lengthTokens: testLength(window, 4), seed: 2000, split: 'train', count: devPerTask, tokenizer, haystack: dev }, i))));
    // LIFT: the needle 35-65% deep, so head + tail truncation to the window drops it; the same documents again with
    // the value a word from a list of 64 (chance 1/64), which a model can guess less blindly than seven digits.
    const lift = Array.from({ length: size.liftDocs }, (_, i) =>
      generateRulerSample({ task: 'niah_single', lengthTokens: testLength(window, 4), seed: 3000, split: 'test', count: 1, depth: 35 + Math.round((30 * i) / Math.max(1, size.liftDocs - 1)), tokenizer, haystack: heldout }, i));
    write('lift-4x', lift);
    write('lift-words-4x', lift.map((sample, i) => withWordValue(sample, LIFT_WORDS[hashString(`lift-word|${i}`) % LIFT_WORDS.length]!)));
  }, [...LENGTH_MULTIPLES.map((m) => `${m}x`), TRAINING_KEYS_TEST, 'dev-4x', 'lift-4x', 'lift-words-4x'].map(testFile));

  const evaluate = async (name: string, model: string, mode: AnswerMode, multiple: number, test: string, recapThreshold?: number): Promise<MethodLengthResult> =>
    stage(`eval ${name} ${test}`, async () => {
      const { model: loaded, ckpt } = loadModel(runDir(model));
      const concurrency = mode === 'recap-agent' ? size.agentBatch : 1;
      const predict = inWorkers(`eval ${name} ${test}`, { checkpoint: ckpt.dir, answerer: { kind: 'answerer', mode, recapThreshold, concurrency } });
      try {
        const evaluated = await evaluateRulerModel({
          model: loaded,
          tokenizer,
          dataPath: testFile(test),
          outDir: join(out, 'predictions', name.replace(/[^\w.-]+/g, '_'), test),
          answer: makeAnswerer(mode, loaded, tokenizer, { recapThreshold, concurrency }),
          settings: { checkpoint: ckpt.dir, mode, recap_threshold: recapThreshold ?? null },
          predict,
          concurrency,
        });
        const tasks = Object.fromEntries(Object.entries(evaluated.tasks).map(([task, s]) => [task, s.score]));
        const work = evaluated.examples.flatMap((e) => (e.agent ? [e.agent] : []));
        if (work.length > 0) {
          const mean = (f: (w: AgentWork) => number): string => (work.reduce((sum, w) => sum + f(w), 0) / work.length).toFixed(1);
          log(`  ${name} ${test}, per answer: ${mean((w) => w.prefilled_tokens)} tokens prefilled (${mean((w) => w.prefill_s)} s awaited), ${mean((w) => w.decoded_tokens)} decoded (${mean((w) => w.decode_s)} s awaited), ${mean((w) => w.rebuilds)} rebuilds`);
        }
        return { method: name, model, multiple, length: testLength(window, multiple), average: evaluated.average, tasks, examples: evaluated.examples };
      } finally {
        loaded.dispose();
      }
    });

  // 4. The base must retrieve at 1x before anything else means something.
  const ruler: MethodLengthResult[] = [await evaluate('base', 'base', 'plain', 1, '1x'), await evaluate(BASE_TRAINING_KEYS, 'base', 'plain', 1, TRAINING_KEYS_TEST)];

  const thresholds: ExperimentResults['thresholds'] = {};
  const lift: LiftExample[] = [];
  let longppl: Record<string, LongPplReport> = {};
  let arlData: unknown = null;
  // The claims cover `finishedSeeds`; `complete` is false in the copy written between seeds.
  const writeResults = (finishedSeeds: readonly number[], complete: boolean): ExperimentResults => {
    const results: ExperimentResults = {
      settings: { ...settings, window, tasks: EXPERIMENT_TASKS, arl_data: arlData, command: o.command ?? null },
      ruler,
      thresholds,
      lift,
      longppl,
      timings: Object.fromEntries(Object.entries(state.stages).map(([name, s]) => [name, Math.round(s.seconds * 10) / 10])),
      claims: checkClaims(ruler, lift, finishedSeeds),
      complete,
    };
    writeFileAtomic(join(out, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
    writeExperimentReport(out, results);
    return results;
  };
  if (parts.has('arl')) {
    // 5. ARL data from the base model (our pipeline: key tokens, segments, recaps, augment), then both arms per seed.
    const arlDir = join(out, 'arl');
    arlData = await stage('arl-data', async () => {
      const documents = (await readJsonlDocuments(corpus('cpt'))).length;
      const run = { tokenizer, checkpoint: resolveCheckpointDir(runDir('base')), corpus: corpus('cpt'), outDir: arlDir, recapper: o.recapper, chat: o.chat, window, augment: { mix: 1 }, log };
      // Steps 1-2 are forward passes over every document: split across the workers like the evaluation stages.
      if (workers) return workerRecapData({ ...workers, log }, run, documents);
      const { model, ckpt } = loadModel(run.checkpoint);
      try {
        return await buildRecapData({ ...run, model, checkpoint: ckpt.dir, progress: recapDataProgressLog(log, { documents, label: 'arl-data' }) });
      } finally {
        model.dispose();
      }
    }, [join(arlDir, AUGMENT_FILES.prepared)]);
    // 6. Per seed, so that a run cut short has whole comparisons: both arms from the base, the ARL model's recap
    // threshold chosen on development documents (never the test set), then the test sets.
    for (const [i, seed] of seeds.entries()) {
      await stage(`train-cpt-plain-s${seed}`, () => trainRun(`cpt-plain-s${seed}`, prepared('cpt'), size.cptSteps, seed, runDir('base')), [runDir(`cpt-plain-s${seed}`)]);
      await stage(`train-cpt-arl-s${seed}`, () => trainRun(`cpt-arl-s${seed}`, join(arlDir, AUGMENT_FILES.prepared), size.cptSteps, seed, runDir('base')), [runDir(`cpt-arl-s${seed}`)]);
      const accuracy: Record<string, number> = {};
      const goldLogProb: Record<string, number> = {};
      const grid = o.recapThresholds!;
      for (const threshold of grid) {
        const dev = await evaluate(`dev ARL-CPT s${seed} t${threshold}`, `cpt-arl-s${seed}`, 'recap-agent', 4, 'dev-4x', threshold);
        accuracy[threshold] = dev.average;
        goldLogProb[threshold] = meanGoldLogProb(dev.examples);
      }
      // Chosen on the gold answer's mean log-probability: on a few dozen documents exact match moves in steps of
      // 1/n and ties, while the log-probability tells thresholds apart on every document.
      const chosen = grid.reduce((best, t) => (goldLogProb[t]! > goldLogProb[best]! ? t : best), grid[0]!);
      thresholds[`s${seed}`] = { chosen, dev_accuracy: accuracy, dev_gold_logprob: goldLogProb };
      log(`  ARL-CPT s${seed}: recap threshold ${chosen} (dev gold log-prob ${JSON.stringify(goldLogProb)}; accuracy ${JSON.stringify(accuracy)})`);
      for (const multiple of LENGTH_MULTIPLES) {
        ruler.push(await evaluate(`plain-CPT s${seed}`, `cpt-plain-s${seed}`, 'plain', multiple, `${multiple}x`));
        ruler.push(await evaluate(`ARL-CPT s${seed}`, `cpt-arl-s${seed}`, 'recap-agent', multiple, `${multiple}x`, chosen));
      }
      ruler.push(await evaluate(`ARL-CPT recaps off s${seed}`, `cpt-arl-s${seed}`, 'recap-agent', 4, '4x', RECAPS_OFF));
      if (i < seeds.length - 1) writeResults(seeds.slice(0, i + 1), false);
    }

    // 7. LongPPL on held-out documents, key tokens chosen by the base model for every model (one fixed evaluator).
    longppl = await stage('longppl', async () => {
      const evaluator = loadModel(runDir('base')).model;
      const reports: Record<string, LongPplReport> = {};
      try {
        for (const name of ['base', `cpt-plain-s${seeds[0]}`, `cpt-arl-s${seeds[0]}`]) {
          const evaluated = name === 'base' ? evaluator : loadModel(runDir(name)).model;
          try {
            reports[name] = await evaluateLongPpl({ model: evaluated, evaluator, tokenizer, corpus: corpus('heldout'), options: keyTokenOptions(window, { select: 'topk', topK: 16 }) });
          } finally {
            if (evaluated !== evaluator) evaluated.dispose();
          }
        }
      } finally {
        evaluator.dispose();
      }
      return reports;
    });
  }

  if (parts.has('lift')) {
    // 8. LIFT on the base model against truncated in-context answering.
    // Each variant: its schedule and its test file. There is no LLM to write the paper's auxiliary QA, so the cloze
    // variant uses the paper's count, 10, of pairs from the input. The more-steps variant, declared before its first
    // run: twice the paper's epochs with an AdamW step per batch of 4 segments, about twenty times the paper's 8 steps
    // for twice its compute (one step per epoch moves each adapter weight by at most about lr per step).
    const more = { epochs: size.liftMoreEpochs, stepBatch: LIFT_MORE_STEPS_BATCH };
    const plans: Record<LiftVariant, [LiftSchedule, string]> = {
      paper: [{ epochs: size.liftEpochs }, 'lift-4x'],
      'paper + cloze QA': [{ epochs: size.liftEpochs, clozeQa: QA_PER_INPUT }, 'lift-4x'],
      'more-steps': [more, 'lift-4x'],
      'paper, 64-word values': [{ epochs: size.liftEpochs }, 'lift-words-4x'],
      'more-steps + cloze QA': [{ ...more, clozeQa: QA_PER_INPUT }, 'lift-4x'],
      'more-steps, 64-word values': [more, 'lift-words-4x'],
    };
    for (const variant of LIFT_VARIANTS.filter((v) => (o.liftVariants ?? LIFT_VARIANTS).includes(v))) {
      const [schedule, test] = plans[variant];
      lift.push(...(await stage(`lift ${variant}`, async () => {
        if ((schedule.clozeQa ?? 0) > 0 && schedule.epochs[1] === 0) log(`  LIFT ${variant}: no stage-2 epochs (--lift-epochs ${schedule.epochs.join(' ')}), so its QA pairs are not trained on`);
        const { model, ckpt } = loadModel(runDir('base'));
        try {
          const predict = inWorkers(`lift ${variant}`, { checkpoint: ckpt.dir, answerer: { kind: 'lift', schedule, dataPath: testFile(test) } });
          return await evaluateLift({ model, tokenizer, dataPath: testFile(test), outDir: join(out, 'predictions', `lift-${variant.replace(/[^\w]+/g, '-')}`), schedule, variant, log, predict });
        } finally {
          model.dispose();
        }
      })));
    }
  }

  return writeResults(seeds, true);
}
