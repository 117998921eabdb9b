/**
 * `arl demo-arl` (npm run demo:arl): ARL end to end on the embedded defaults, on the CPU. Takes the
 * tiny demo model (checkpoints/demo, trained first when missing or stale), builds recap-augmented
 * data from 40 Brown training documents with the extractive recapper (no LLM), continues
 * pretraining on it briefly, compares perplexity and LongPPL before and after on held-out Brown
 * documents, and shows the recap agent reading one of them.
 */
import chalk from 'chalk';
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { AUGMENT_FILES, DEFAULT_AUGMENT } from '../arl/augment.ts';
import { keyTokenOptions, noKeyTokensReason } from '../arl/key-tokens.ts';
import { DEFAULT_MAX_RECAP_TOKENS } from '../arl/recap.ts';
import { readBrownDocuments } from '../data/brown.ts';
import { evaluateLongPpl, type LongPplReport } from '../eval/longppl.ts';
import type { CorpusDocument } from '../data/corpus.ts';
import { DEFAULT_VAL_FRACTION, splitHash } from '../data/prepare.ts';
import { writeFileAtomic } from '../io/atomic.ts';
import { LOCK_FILE, lockFolder } from '../io/lock.ts';
import { loadModel, readCheckpointConfig, resolveCheckpointDir } from '../io/checkpoint.ts';
import { safetensorsFiles } from '../io/safetensors.ts';
import { answerWithRecaps, DEFAULT_ANSWER } from '../infer/recap-agent.ts';
import { THRESHOLD_GRID } from '../eval/experiment.ts';
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
const TRAIN_DOCUMENTS = 36;
const HELD_OUT_DOCUMENTS = 4;
/** Documents are cut to their first paragraphs up to this many characters (about 1,200 tokens): steps 1-2 cost grows with length. */
const DOCUMENT_CHARS = 5000;
/** Key tokens per document, and recaps each may keep: more recaps give the model more `<recap>` targets to learn from. */
const TOP_K = 6;
/**
 * Step 2 keeps a segment when it raises the key token's log-prob by this many nats. The pipeline's default,
 * 0.5, keeps almost none for a model this small (2 of 31 in a trial), which leaves nothing to recap; in a
 * trial 0.1 kept half, too few recaps for the model to learn to open one in a short run.
 */
const SEGMENT_MARGIN = 0.05;
/**
 * Continued pretraining: about 1.5 passes over the augmented data, at a third of the demo's peak rate. At a
 * sixth the model did not learn to open a recap in a trial; the rate also costs perplexity (see the verdict).
 */
const CONTINUED = { steps: 80, lr: 1e-3, minLr: 1e-4, warmup: 10, evalEvery: 0, saveEvery: 80 };
const QUESTION = 'What is this text about?';
/** A threshold above 1: reads without recapping, to see P(`<recap>`) alone. */
const NEVER = 2;

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

/** The paragraphs of `text` that fit in `maxChars` (at least the first). */
export function leadingParagraphs(text: string, maxChars: number): string {
  if (text.length <= maxChars) return text;
  const cut = text.lastIndexOf('\n\n', maxChars);
  return cut > 0 ? text.slice(0, cut) : text.slice(0, maxChars);
}

/**
 * Brown documents, cut to their leading paragraphs: `train` of the demo model's train split, and `heldOut`
 * plus one development document of its val split (the development document sets the agent's threshold).
 */
function splitBrown(train: number, heldOut: number): { train: CorpusDocument[]; heldOut: CorpusDocument[]; dev: CorpusDocument } {
  const out = { train: [] as CorpusDocument[], val: [] as CorpusDocument[] };
  for (const doc of readBrownDocuments()) {
    const cut = { ...doc, text: leadingParagraphs(doc.text, DOCUMENT_CHARS) };
    const isVal = splitHash(doc.id, 0) < DEFAULT_VAL_FRACTION;
    if (isVal && out.val.length < heldOut + 1) out.val.push(cut);
    if (!isVal && out.train.length < train) out.train.push(cut);
  }
  return { train: out.train, heldOut: out.val.slice(0, heldOut), dev: out.val[heldOut] };
}

function writeJsonl(file: string, docs: CorpusDocument[]): void {
  writeFileSync(file, docs.map((d) => JSON.stringify({ id: d.id, text: d.text })).join('\n') + '\n');
}

/**
 * The agent's threshold, from the development document read without recapping: the highest of the
 * experiment's thresholds that some paragraph end reaches (null when none does). Never the test documents.
 */
export function thresholdFromDev(devProbabilities: readonly number[], grid: readonly number[] = THRESHOLD_GRID): number | null {
  const max = Math.max(0, ...devProbabilities);
  return [...grid].sort((a, b) => b - a).find((t) => max >= t) ?? null;
}

export interface DemoFigures {
  keyTokens: number;
  segments: number;
  /** Recaps the pipeline wrote (step 3) and inserted into the training data (step 4). */
  recaps: number;
  inserted: number;
  recapsWritten: number;
  /** Different texts among the agent's recaps: a small model may write one recap over and over. */
  recapsDistinct: number;
  documentsRead: number;
  perplexity: [number | null, number | null];
  longppl: [number | null, number | null];
}

const fmt = (x: number | null): string => (x === null ? 'n/a' : x.toFixed(1));
const direction = ([a, b]: [number | null, number | null]): string => (a === null || b === null ? 'not measured' : b < a ? 'better' : 'not better');

/** One plain line from the demo's own figures: what was shown and what was not. */
export function demoVerdict(o: DemoFigures): string {
  const shown: string[] = [];
  const notShown: string[] = [];
  (o.inserted > 0 ? shown : notShown).push('the pipeline writes recaps into the training data');
  (o.recapsWritten > 0 ? shown : notShown).push('the trained model opens recaps (at a threshold set on a development document)');
  const better = direction(o.longppl) === 'better';
  (better ? shown : notShown).push('LongPPL improving');
  // Continued pretraining without recaps was not run, so no change can be put down to the recaps.
  notShown.push('that recaps, rather than the extra training, cause any change (no run without recaps)');
  // Nothing checks what the agent's recaps say; they are printed for the reader to judge.
  if (o.recapsWritten > 0) notShown.push("that the agent's recaps summarise what it read");
  return `verdict: recaps: ${o.recapsWritten} written by the agent (${o.recapsDistinct} distinct) over ${o.documentsRead} held-out documents; ` +
    `recap data: ${o.segments} segments kept for ${o.keyTokens} key tokens, ${o.recaps} recaps written, ${o.inserted} inserted; ` +
    `perplexity ${fmt(o.perplexity[0])} -> ${fmt(o.perplexity[1])} (${direction(o.perplexity)}), LongPPL ${fmt(o.longppl[0])} -> ${fmt(o.longppl[1])} (${direction(o.longppl)}). ` +
    `Shown: ${shown.length > 0 ? shown.join('; ') : 'nothing'}. Not shown: ${notShown.join('; ')}.`;
}

export const demoArlCommand = defineCommand({
  command: 'demo-arl',
  describe: `ARL end to end on CPU: recap-augmented data from ${TRAIN_DOCUMENTS} Brown documents, continued pretraining, perplexity and LongPPL before/after, the recap agent`,
  options: {},
  shared: BACKEND_FLAGS,
  examples: [['$0 demo-arl', 'a few minutes on a laptop CPU (more the first time, when the tiny demo model is trained first)']],
  handler: async ({ backend }) => {
    const started = performance.now();
    const stage = (n: number, what: string, detail: string): void => console.log(`${chalk.bold(`${n}/5 ${what}`)} ${chalk.dim(detail)}`);
    // Another demo-arl writing the same folders would interleave its files with this one's.
    lockFolder(OUT);

    const base = DEMO_DEFAULTS.out;
    const unusable = usableDemoCheckpoint(base);
    stage(1, 'base model', unusable ? `training the tiny demo model first (${unusable})` : `${base} (the tiny demo model)`);
    if (unusable) {
      if (!isPreparedWith(DEFAULT_PREPARED_DIR, BUNDLED_TOKENIZER_PATH)) await runPrepare({ corpus: 'brown', tokenizer: BUNDLED_TOKENIZER_PATH, out: DEFAULT_PREPARED_DIR, valFraction: DEFAULT_VAL_FRACTION, seed: 0 });
      // As `arl demo` does: the folder is locked before it is emptied, so another writer's run is not deleted.
      const releaseBase = lockFolder(base);
      for (const entry of readdirSync(base)) if (entry !== LOCK_FILE) rmSync(join(base, entry), { recursive: true, force: true });
      const trained = await runTrain({ backend, preset: 'tiny', model: {}, resume: false, options: { ...DEFAULT_TRAIN, ...DEMO_DEFAULTS, data: DEFAULT_PREPARED_DIR } });
      trained.model.dispose();
      releaseBase();
    }
    const arlStarted = performance.now();

    const { train, heldOut, dev } = splitBrown(TRAIN_DOCUMENTS, HELD_OUT_DOCUMENTS);
    const corpus = join(OUT, 'train-documents.jsonl');
    writeJsonl(corpus, train);
    const recapDir = join(OUT, 'recap-data');
    // Steps 1-3 resume from what is on disk, and the documents or settings may have changed: start over.
    rmSync(recapDir, { recursive: true, force: true });
    stage(2, 'recap data', `ARL steps 1-4 on ${train.length} Brown documents of the base model's train split (first ${DOCUMENT_CHARS} characters): Top-${TOP_K} key tokens each, a segment kept when it raises the key token's log-prob by ${SEGMENT_MARGIN} nats or more, extractive recaps (sentences of the segment, no LLM), every document with recaps augmented`);
    const data = await runRecapData({
      backend,
      checkpoint: base,
      corpus,
      outDir: resolve(recapDir),
      shard: null,
      keyTokens: keyTokenOptions(readCheckpointConfig(resolveCheckpointDir(base)).maxSeq, { topK: TOP_K, longStride: 128 }),
      segments: { margin: SEGMENT_MARGIN },
      recapper: 'extractive',
      maxRecapTokens: Math.min(24, DEFAULT_MAX_RECAP_TOKENS),
      augment: { ...DEFAULT_AUGMENT, maxRecapsPerDoc: TOP_K, mix: 1 },
    });
    const augmented = data.augment!;
    console.log(`recap data: ${data.segments} segments kept for ${data.keyTokens} key tokens, ${data.recaps} recaps written, ${augmented.recaps_inserted} inserted into ${augmented.augmented_documents} documents (${augmented.recap_tokens} of ${augmented.tokens} tokens are recap tokens)`);

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
    const agentOptions = { ...DEFAULT_ANSWER, maxAnswerTokens: 16, agent: { ...DEFAULT_ANSWER.agent, maxRecapTokens: 24 } };
    let scores: [LongPplReport, LongPplReport];
    let baseDevMax: number;
    const common = { tokenizer, corpus: heldOutFile, options: { ...keyTokenOptions(before.config.maxSeq), topK: 4 } };
    try {
      scores = [await evaluateLongPpl({ ...common, model: before }), await evaluateLongPpl({ ...common, model: after, evaluator: before })];
      // The base never saw `<recap>`: its probability is the floor the continued model's is compared with.
      baseDevMax = Math.max(0, ...(await answerWithRecaps(before, tokenizer, dev.text, QUESTION, { ...agentOptions, recapThreshold: NEVER })).recapProbabilities);
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

    const agentRecaps: string[] = [];
    let chosen: number | null = null;
    stage(5, 'recap agent', `the continued model reads each held-out document paragraph by paragraph (window ${after.config.maxSeq} tokens) and writes a recap where P(<recap>) reaches a threshold set on development document ${dev.id}`);
    try {
      const devProbabilities = (await answerWithRecaps(after, tokenizer, dev.text, QUESTION, { ...agentOptions, recapThreshold: NEVER })).recapProbabilities;
      chosen = thresholdFromDev(devProbabilities);
      console.log(`P(<recap>) at the paragraph ends of ${dev.id}: max ${baseDevMax.toExponential(1)} for the base model, ${Math.max(0, ...devProbabilities).toFixed(3)} for the continued one; threshold ${chosen ?? `none of ${THRESHOLD_GRID.join(', ')} is reached, so the agent does not recap`}`);
      if (chosen !== null) {
        for (const doc of heldOut) {
          const result = await answerWithRecaps(after, tokenizer, doc.text, QUESTION, { ...agentOptions, recapThreshold: chosen });
          console.log(`${doc.id}: ${result.paragraphs} paragraphs, P(<recap>) max ${Math.max(0, ...result.recapProbabilities).toFixed(3)}, ${result.recaps.length} recaps written`);
          for (const [k, recap] of result.recaps.slice(0, 2).entries()) console.log(chalk.cyan(`  recap ${k + 1}: ${recap}`));
          agentRecaps.push(...result.recaps);
        }
      }
    } finally {
      after.dispose();
    }

    const s = data.seconds;
    console.log(chalk.dim(`stage times: key tokens ${s.keytokens.toFixed(0)} s, segments ${s.segments.toFixed(0)} s, recaps ${s.recaps.toFixed(1)} s, augment ${s.augment.toFixed(1)} s; ARL stages ${formatDuration((performance.now() - arlStarted) / 1000)}, total ${formatDuration((performance.now() - started) / 1000)}; outputs in ${resolve(OUT)}`));
    console.log(demoVerdict({
      keyTokens: data.keyTokens, segments: data.segments, recaps: data.recaps, inserted: augmented.recaps_inserted, recapsWritten: agentRecaps.length, recapsDistinct: new Set(agentRecaps).size, documentsRead: heldOut.length,
      perplexity: [scores[0].perplexity, scores[1].perplexity], longppl: [scores[0].longppl, scores[1].longppl],
    }));
    const sampleFile = join(OUT, 'held-out-sample.txt');
    writeFileAtomic(sampleFile, heldOut[0].text);
    console.log(`next:\n  arl inspect --keytokens ${recapDir} --out ${join(OUT, 'inspect.html')}   # key tokens, segments and recaps as a page\n` +
      `  arl answer --checkpoint ${run} --input ${sampleFile} --question "${QUESTION}"${chosen === null ? '' : ` --recap-threshold ${chosen}`}\n` +
      `  arl eval --checkpoint ${run} --corpus ${heldOutFile} --evaluator ${base}`);
  },
});
