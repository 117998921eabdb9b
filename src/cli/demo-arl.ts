/**
 * `arl demo-arl` (npm run demo:arl): ARL end to end on the embedded defaults, on the CPU. Takes the
 * tiny demo model (checkpoints/demo, trained first when missing or stale), builds recap-augmented
 * data from 40 Brown training documents with the extractive recapper (no LLM), continues
 * pretraining on it briefly, compares perplexity and LongPPL before and after on held-out Brown
 * documents, and shows the recap agent reading one of them.
 */
import chalk from 'chalk';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { AUGMENT_FILES, DEFAULT_AUGMENT } from '../arl/augment.ts';
import { keyTokenOptions, noKeyTokensReason } from '../arl/key-tokens.ts';
import { DEFAULT_MAX_RECAP_TOKENS } from '../arl/recap.ts';
import { readBrownDocuments } from '../data/brown.ts';
import { evaluateLongPpl, type LongPplReport } from '../eval/longppl.ts';
import type { CorpusDocument } from '../data/corpus.ts';
import { DEFAULT_VAL_FRACTION, splitHash } from '../data/prepare.ts';
import { writeFileAtomic } from '../io/atomic.ts';
import { loadModel, readCheckpointConfig, resolveCheckpointDir } from '../io/checkpoint.ts';
import { safetensorsFiles } from '../io/safetensors.ts';
import { answerWithRecaps, DEFAULT_ANSWER } from '../infer/recap-agent.ts';
import { BUNDLED_TOKENIZER_PATH, Tokenizer } from '../tokenizer/sentencepiece.ts';
import { DEFAULT_TRAIN } from '../train/trainer.ts';
import { DEFAULT_PREPARED_DIR, runPrepare } from './data.ts';
import { DEMO_DEFAULTS, isPreparedWith } from './demo.ts';
import { BACKEND_FLAGS, startBackend } from './common.ts';
import { defineCommand } from './options.ts';
import { formatDuration } from './progress.ts';
import { runRecapData } from './recap-data.ts';
import { runTrain } from './train.ts';

const OUT = 'checkpoints/demo-arl';
const TRAIN_DOCUMENTS = 40;
const HELD_OUT_DOCUMENTS = 6;
/** Continued pretraining: about one pass over the augmented data, at a third of the demo's peak rate. */
const CONTINUED = { steps: 80, lr: 1e-3, minLr: 1e-4, warmup: 10, evalEvery: 40, saveEvery: 80 };

/**
 * A checkpoint is usable when it was trained on data prepared with the tokenizer it carries, and
 * that data was not prepared again after it (which would mean another tokenizer, or another split).
 */
function usableDemoCheckpoint(path: string): string | null {
  if (!existsSync(path)) return `${path} does not exist`;
  const dir = resolveCheckpointDir(path);
  const stateFile = join(dir, 'state.json');
  if (!existsSync(stateFile)) return `${path} is not a training checkpoint`;
  const state = JSON.parse(readFileSync(stateFile, 'utf8')) as { options?: { data?: string } };
  const data = state.options?.data;
  const tokenizer = join(dir, 'tokenizer.model');
  if (!data || !existsSync(join(data, 'meta.json')) || !existsSync(tokenizer)) return `${path} does not name its data and tokenizer`;
  if (!isPreparedWith(data, tokenizer)) return `${path} carries another tokenizer than its data was prepared with`;
  const weights = safetensorsFiles(dir)[0];
  if (!weights) return `${path} has no weights`;
  if (statSync(join(data, 'meta.json')).mtimeMs > statSync(weights).mtimeMs) return `${data} was prepared again after ${path} was trained`;
  return null;
}

/** Brown documents of the demo model's train split (the first `train`) and of its val split (the first `heldOut`). */
function splitBrown(train: number, heldOut: number): { train: CorpusDocument[]; heldOut: CorpusDocument[] } {
  const out = { train: [] as CorpusDocument[], heldOut: [] as CorpusDocument[] };
  for (const doc of readBrownDocuments()) {
    const isVal = splitHash(doc.id, 0) < DEFAULT_VAL_FRACTION;
    if (isVal && out.heldOut.length < heldOut) out.heldOut.push(doc);
    if (!isVal && out.train.length < train) out.train.push(doc);
  }
  return out;
}

function writeJsonl(file: string, docs: CorpusDocument[]): void {
  writeFileSync(file, docs.map((d) => JSON.stringify({ id: d.id, text: d.text })).join('\n') + '\n');
}

/** One plain line: did the mechanism show (recaps learned into the data, written by the agent, LongPPL better)? */
export function demoVerdict(o: { keyTokens: number; segments: number; inserted: number; recapsWritten: number; longppl: [number | null, number | null] }): string {
  const [before, after] = o.longppl;
  const longpplBetter = before !== null && after !== null && after < before;
  const facts = `${o.segments} segments kept for ${o.keyTokens} key tokens, ${o.inserted} recaps in the training data, ${o.recapsWritten} written by the agent, LongPPL ${before === null || after === null ? 'not measured' : longpplBetter ? 'better' : 'not better'}`;
  return o.recapsWritten > 0 && longpplBetter
    ? `verdict: the mechanism shows at this size (${facts})`
    : `verdict: the mechanism does not show at this size (${facts}); a model this small does not yet retrieve earlier text, see docs/experiment.md`;
}

export const demoArlCommand = defineCommand({
  command: 'demo-arl',
  describe: 'ARL end to end on CPU: recap-augmented data from 40 Brown documents, continued pretraining, LongPPL before/after, the recap agent',
  options: {},
  shared: BACKEND_FLAGS,
  examples: [['$0 demo-arl', 'a few minutes on a laptop CPU']],
  handler: async ({ backend }) => {
    const started = performance.now();
    const stage = (n: number, what: string, detail: string): void => console.log(`${chalk.bold(`${n}/5 ${what}`)} ${chalk.dim(detail)}`);
    mkdirSync(OUT, { recursive: true });

    const base = DEMO_DEFAULTS.out;
    const unusable = usableDemoCheckpoint(base);
    stage(1, 'base model', unusable ? `training the tiny demo model first (${unusable})` : `${base} (the tiny demo model)`);
    if (unusable) {
      if (!isPreparedWith(DEFAULT_PREPARED_DIR, BUNDLED_TOKENIZER_PATH)) await runPrepare({ corpus: 'brown', tokenizer: BUNDLED_TOKENIZER_PATH, out: DEFAULT_PREPARED_DIR, valFraction: DEFAULT_VAL_FRACTION, seed: 0 });
      rmSync(base, { recursive: true, force: true });
      rmSync(join(OUT, 'recap-data'), { recursive: true, force: true }); // made with the old weights
      const trained = await runTrain({ backend, preset: 'tiny', model: {}, resume: false, options: { ...DEFAULT_TRAIN, ...DEMO_DEFAULTS, data: DEFAULT_PREPARED_DIR } });
      trained.model.dispose();
    }

    const { train, heldOut } = splitBrown(TRAIN_DOCUMENTS, HELD_OUT_DOCUMENTS);
    const corpus = join(OUT, 'train-documents.jsonl');
    writeJsonl(corpus, train);
    const recapDir = join(OUT, 'recap-data');
    stage(2, 'recap data', `ARL steps 1-4 on ${train.length} Brown documents of the base model's train split, extractive recaps (sentences of the segment, no LLM)`);
    const data = await runRecapData({
      backend,
      checkpoint: base,
      corpus,
      outDir: resolve(recapDir),
      shard: null,
      keyTokens: keyTokenOptions(readCheckpointConfig(resolveCheckpointDir(base)).maxSeq, { topK: 4, longStride: 128 }),
      recapper: 'extractive',
      maxRecapTokens: Math.min(24, DEFAULT_MAX_RECAP_TOKENS),
      augment: DEFAULT_AUGMENT,
    });
    const augmented = data.augment!;

    const run = join(OUT, 'continued');
    stage(3, 'continued pretraining', `from ${base} on ${join(recapDir, AUGMENT_FILES.prepared)}: ${CONTINUED.steps} steps of 8x128 tokens, lr ${CONTINUED.lr}, loss on recap tokens too`);
    rmSync(run, { recursive: true, force: true });
    const continued = await runTrain({
      backend,
      preset: 'tiny',
      model: {},
      init: base,
      resume: false,
      options: { ...DEFAULT_TRAIN, ...CONTINUED, batch: 8, seq: 128, data: join(recapDir, AUGMENT_FILES.prepared), out: run },
    });
    const losses = continued.losses;
    console.log(`loss ${losses[0].toFixed(3)} (step 1) -> ${losses[losses.length - 1].toFixed(3)} (step ${losses.length})`);

    stage(4, 'held-out', `${heldOut.length} Brown documents of the base model's val split (seen by neither model); key tokens chosen by the base model (Top-4 by LSG per document)`);
    await startBackend(backend);
    const tokenizer = await Tokenizer.load(BUNDLED_TOKENIZER_PATH);
    const heldOutFile = join(OUT, 'held-out-documents.jsonl');
    writeJsonl(heldOutFile, heldOut);
    const before = loadModel(base).model;
    const after = continued.model;
    let scores: [LongPplReport, LongPplReport];
    const common = { tokenizer, corpus: heldOutFile, options: { ...keyTokenOptions(before.config.maxSeq), topK: 4 } };
    try {
      scores = [await evaluateLongPpl({ ...common, model: before }), await evaluateLongPpl({ ...common, model: after, evaluator: before })];
    } finally {
      before.dispose();
    }
    const change = (a: number | null, b: number | null): string => {
      if (a === null || b === null) return 'n/a';
      const percent = `${b < a ? '' : '+'}${(100 * (b / a - 1)).toFixed(1)}%`;
      return `${a.toFixed(2)} -> ${b.toFixed(2)} (${b < a ? chalk.green(percent) : chalk.red(percent)})`;
    };
    console.log(`perplexity over ${scores[0].tokens_scored} tokens: ${change(scores[0].perplexity, scores[1].perplexity)}`);
    console.log(`LongPPL over ${scores[0].key_tokens} key tokens: ${scores[0].key_tokens === 0 ? `n/a (${noKeyTokensReason(common.options)})` : change(scores[0].longppl, scores[1].longppl)}`);

    const sample = heldOut[0];
    let recapsWritten = 0;
    stage(5, 'recap agent', `the continued model reads held-out document ${sample.id} (window ${after.config.maxSeq} tokens) paragraph by paragraph`);
    try {
      const result = await answerWithRecaps(after, tokenizer, sample.text, 'What is this text about?', { ...DEFAULT_ANSWER, agent: { ...DEFAULT_ANSWER.agent, maxRecapTokens: 24 } });
      const probabilities = [...result.recapProbabilities].sort((a, b) => a - b);
      const median = probabilities[Math.floor(probabilities.length / 2)] ?? 0;
      console.log(`P(<recap>) at the ${result.paragraphs} paragraph ends: median ${median.toFixed(3)}, max ${(probabilities.at(-1) ?? 0).toFixed(3)}; threshold ${DEFAULT_ANSWER.recapThreshold}: ${result.recaps.length} recaps written`);
      for (const [k, recap] of result.recaps.entries()) console.log(chalk.cyan(`  recap ${k + 1}: ${recap}`));
      console.log(`question: What is this text about?\nanswer: ${result.answer}`);
      recapsWritten = result.recaps.length;
    } finally {
      after.dispose();
    }

    const s = data.seconds;
    console.log(chalk.dim(`figures: ${data.keyTokens} key tokens in ${train.length} documents (${(data.keyTokens / train.length).toFixed(1)}/doc), ${data.segments} segments kept, ${data.recaps} recaps, ${augmented.recaps_inserted} inserted; stage times ${s.keytokens.toFixed(0)} s, ${s.segments.toFixed(0)} s, ${s.recaps.toFixed(0)} s, ${s.augment.toFixed(1)} s`));
    console.log(chalk.dim(`total ${formatDuration((performance.now() - started) / 1000)}; outputs in ${resolve(OUT)}`));
    console.log(demoVerdict({ keyTokens: data.keyTokens, segments: data.segments, inserted: augmented.recaps_inserted, recapsWritten, longppl: [scores[0].longppl, scores[1].longppl] }));
    const sampleFile = join(OUT, 'held-out-sample.txt');
    writeFileAtomic(sampleFile, sample.text);
    console.log(`next:\n  arl inspect --keytokens ${recapDir} --out ${join(OUT, 'inspect.html')}   # key tokens, segments and recaps as a page\n` +
      `  arl answer --checkpoint ${run} --input ${sampleFile} --question "What is this text about?"\n` +
      `  arl eval --checkpoint ${run} --corpus ${heldOutFile} --evaluator ${base}`);
  },
});
