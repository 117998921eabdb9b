/**
 * `arl lift-demo` (npm run demo:lift): LIFT on a small deterministic synthetic set. Documents state
 * the code word of each of 45 people once (src/lift/demo-set.ts); each question asks for a code
 * word whose sentence lies outside the head + tail of the document that fits the answering
 * prompt. The base model (tiny preset) is first trained on other documents of the same kind, so
 * it knows the form but no document's facts. For each question the LIFT answer is shown next to
 * the in-context-only (ICL) answer, and both accuracies are reported with the chance level.
 */
import chalk from 'chalk';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { prepareCorpus } from '../data/prepare.ts';
import { loadModel } from '../io/checkpoint.ts';
import { ADAPTER_KINDS } from '../lift/adapter.ts';
import { questionPrompt } from '../lift/auxiliary-qa.ts';
import { promptPieces } from '../lift/contextualized-training.ts';
import { CODE_WORD_COUNT, DEMO_PROMPT_TEMPLATE, demoDocument, factQuestion, factSentence } from '../lift/demo-set.ts';
import { liftAnswer } from '../lift/lift.ts';
import { makeConfig } from '../model/config.ts';
import { BUNDLED_TOKENIZER_PATH, Tokenizer } from '../tokenizer/sentencepiece.ts';
import { DEFAULT_TRAIN, train } from '../train/trainer.ts';
import { BACKEND_FLAGS, startBackend } from './common.ts';
import { type ArgsOf, defineCommand, defineOptions, valuesOf } from './options.ts';
import { ProgressBar } from './progress.ts';

// Demo defaults found by diagnosis (README): on this tiny base, Gated Memory and plain LIFT on the
// document as given did not store person -> word; LoRA on the document in varied sentence orders did.
/** The flags that are LiftOptions fields of the same name. */
const DEMO_LIFT_FLAGS = defineOptions({
  adapter: { choices: ADAPTER_KINDS, default: 'lora', describe: 'adapter trained on each document' },
  lr: { type: 'number', default: 5e-3, describe: 'adapter learning rate' },
  'lora-rank': { type: 'number', default: 16, describe: 'LoRA rank (--adapter lora)' },
  'sentence-orders': { type: 'number', default: 4, describe: 'train on the document plus copies in other sentence orders (1 = as given)' },
  'segment-stride': { type: 'number', default: 64, describe: "no overlap: the reordered copies already vary each sentence's context" },
  contextualized: { type: 'boolean', default: false, describe: 'head + tail context before each segment (3x the CPU time)' },
  'stage1-epochs': { type: 'number', default: 25, describe: "epochs over the document's segments" },
  'stage2-epochs': { type: 'number', default: 0, describe: 'the demo has no auxiliary QA' },
});

const DEMO_FLAGS = defineOptions({
  out: { type: 'string', default: 'checkpoints/lift-demo', describe: 'folder for the base model (reused when present)' },
  'base-steps': { type: 'number', default: 300, describe: 'training steps of the small base model the demo trains first' },
  docs: { type: 'number', default: 3, describe: 'synthetic documents, each with its questions' },
  'questions-per-doc': { type: 'number', default: 5, describe: 'questions asked about each document' },
  ...DEMO_LIFT_FLAGS,
});

/** Seeds of the base model's training documents: disjoint from the demo documents' (0, 1, ...). */
const BASE_SEED = 100_000;
const BASE_DOCS = 400;
/** Share of facts stated again in a base-training document (see demoDocument). */
const BASE_REPEAT_SHARE = 0.5;

async function demoBase(args: Pick<ArgsOf<typeof DEMO_FLAGS>, 'out' | 'baseSteps'>, tokenizer: Tokenizer): Promise<string> {
  // Named by its recipe so that a base trained on an earlier form of the documents is not reused.
  const run = join(args.out, `base-v2-${args.baseSteps}`);
  if (existsSync(join(run, 'latest'))) return run;
  console.log(chalk.bold('base model') + chalk.dim(`: the tiny preset trained for ${args.baseSteps} steps on ${BASE_DOCS} other synthetic documents`));
  mkdirSync(args.out, { recursive: true });
  const corpus = join(args.out, 'base-corpus.jsonl');
  writeFileSync(corpus, Array.from({ length: BASE_DOCS }, (_, i) => `${JSON.stringify({ text: demoDocument(BASE_SEED + i, BASE_REPEAT_SHARE).text })}\n`).join(''));
  const data = join(args.out, 'base-data');
  await prepareCorpus({ source: corpus, tokenizer, outDir: data, valFraction: 0.05, seed: 0 });
  let bar: ProgressBar | null = null;
  const result = await train(
    { ...DEFAULT_TRAIN, data, out: run, steps: args.baseSteps, batch: 4, warmup: 10, evalEvery: 0, saveEvery: args.baseSteps },
    { modelConfig: makeConfig('tiny', { vocabSize: tokenizer.vocabSize }), tokenizerPath: BUNDLED_TOKENIZER_PATH },
    { onStep: (m, total) => (bar ??= new ProgressBar(total, 'base')).update(m.step, `loss ${m.loss.toFixed(3)}`) },
  );
  result.model.dispose();
  return run;
}

export const liftDemoCommand = defineCommand({
  command: 'lift-demo',
  describe: 'LIFT on a synthetic set: answers that lie outside the truncated context, LIFT next to in-context only',
  options: DEMO_FLAGS,
  shared: BACKEND_FLAGS,
  handler: async (args) => {
    await startBackend(args.backend);
    const tokenizer = await Tokenizer.load(BUNDLED_TOKENIZER_PATH);
    const { model } = loadModel(await demoBase(args, tokenizer));
    const pieces = promptPieces(tokenizer);
    let liftRight = 0;
    let iclRight = 0;
    let asked = 0;
    let trainSeconds = 0;
    let inputTokens = 0;
    try {
      for (let d = 0; d < args.docs; d++) {
        const doc = demoDocument(d);
        const tokens = tokenizer.encode(doc.text);
        // Facts whose sentence the answering prompt does not contain.
        const outside = doc.facts.filter((f) => {
          const prompt = questionPrompt(tokenizer, tokens, factQuestion(f.person), DEMO_PROMPT_TEMPLATE, pieces, model.config.maxSeq, 4);
          return !tokenizer.decode(prompt).includes(factSentence(f));
        });
        const asking = outside.filter((_, i) => i % 3 === 0).slice(0, args.questionsPerDoc);
        console.log(chalk.bold(`\ndocument ${d + 1}/${args.docs}`) + chalk.dim(`: ${tokens.length} tokens, ${outside.length} of ${doc.facts.length} facts outside the ${model.config.maxSeq}-token prompt`));
        let bar: ProgressBar | null = null;
        const r = await liftAnswer(model, tokenizer, doc.text, asking.map((f) => factQuestion(f.person)), {
          compareIcl: true,
          ...valuesOf(DEMO_LIFT_FLAGS, args),
          promptTemplate: DEMO_PROMPT_TEMPLATE,
          maxNewTokens: 4,
          seed: d,
          onProgress: (p) => (bar ??= new ProgressBar(p.total, 'lift')).update(p.step, `stage ${p.stage} loss ${p.loss.toFixed(3)}`),
        });
        trainSeconds += r.trainSeconds;
        inputTokens += r.inputTokens;
        asking.forEach((f, i) => {
          const firstWord = (s: string) => s.split(/[^A-Za-z]+/).find(Boolean) ?? '';
          const lift = firstWord(r.answers[i]) === f.word;
          const icl = firstWord(r.iclAnswers![i]) === f.word;
          liftRight += Number(lift);
          iclRight += Number(icl);
          asked++;
          const mark = (ok: boolean) => (ok ? chalk.green('right') : chalk.red('wrong'));
          console.log(`  ${factQuestion(f.person)} ___ (${f.word})   LIFT: ${firstWord(r.answers[i])} ${mark(lift)}   ICL: ${firstWord(r.iclAnswers![i])} ${mark(icl)}`);
        });
      }
    } finally {
      model.dispose();
    }
    const pct = (n: number) => `${n}/${asked} (${((100 * n) / asked).toFixed(0)}%)`;
    console.log(`\n${chalk.bold('accuracy')} LIFT ${pct(liftRight)}, ICL only ${pct(iclRight)}, chance ${(100 / CODE_WORD_COUNT).toFixed(0)}%`);
    console.log(chalk.dim(`LIFT training: ${(trainSeconds / args.docs).toFixed(0)} s per document, ${((trainSeconds * 1000) / inputTokens).toFixed(0)} s per 1,000 input tokens (${args.adapter}, lr ${args.lr}, ${args.sentenceOrders} sentence orders, ${args.stage1Epochs}+${args.stage2Epochs} epochs)`));
  },
});
