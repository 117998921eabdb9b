/**
 * ARL step 1: key tokens by the dual forward pass (methods.md section 1).
 *
 * For every token x_i of a document (BOS + sentence-wise tokens, see document.ts):
 *   long  l_i = log p(x_i | the longest context that fits the model's window)
 *   short s_i = log p(x_i | the short context), LSG_i = l_i - s_i.
 * Short scores follow LongPPL's chunking: one sequence of S + W tokens starting at k*W scores the
 * W targets at its positions S..S+W-1, each seeing between S and S+W-1 tokens (W = 1 gives exactly S).
 * Long scores come from windows of maxSeq tokens whose starts advance by a stride; every target is
 * scored in the earliest window holding it, where it has the most context. The short chunks join the
 * window set, so a long score never sees less than the short one, and windows sharing a start are one
 * forward (causal attention: a longer sequence gives the same scores for its shared prefix).
 */
import * as tf from '@tensorflow/tfjs';
import { resolve } from 'node:path';
import { BROWN_SOURCE, readDocuments } from '../data/corpus.ts';
import { checkPositiveIntegers, UserError } from '../io/errors.ts';
import { settle } from '../backend.ts';
import { inBatches, inPasses } from '../core/batches.ts';
import { makeRng } from '../core/random.ts';
import { secondsPerCall } from '../core/timing.ts';
import type { LlamaModel } from '../model/llama.ts';
import type { Tokenizer } from '../tokenizer/sentencepiece.ts';
import { tokenizeDocument } from './document.ts';
import { DocumentJournal, type Settings } from './journal.ts';
import { CorpusHash, inShard, type Shard, type ShardSettings } from './shard.ts';
import { nextTokenLogProbsOfBatches, roundLogProb } from './scoring.ts';

export const SELECTIONS = ['topk', 'threshold', 'both'] as const;
/** topk: the K largest gaps (ARL); threshold: every token with LSG > alpha and l > beta (LongPPL); both: the K largest among those. */
export type Selection = (typeof SELECTIONS)[number];

export interface KeyTokenOptions {
  /** S: tokens of short context. */
  shortContext: number;
  /** W: targets per short-context chunk; a chunk is S + W tokens. */
  chunk: number;
  /** Distance between the starts of consecutive long-context windows. */
  longStride: number;
  /** K: key tokens per document (topk, both). */
  topK: number;
  /** Minimum LSG (threshold, both). */
  alpha: number;
  /** Minimum long log-prob (threshold, both). */
  beta: number;
  select: Selection;
  /**
   * ARL only: at most this many key tokens per sentence (0: no limit). Key tokens of one sentence share one recap
   * site, so a second one there costs a segment search and adds no recap; with one per sentence, K picks K sites.
   */
  perSentence: number;
  /** Windows per forward pass. */
  batch: number;
}

/**
 * Options for a model window of maxSeq tokens, with defaults for those not given, scaled to the window:
 * S = maxSeq/4, W = maxSeq - S (a chunk fills the window), K = 8, alpha 2 and beta -2 as LongPPL, and a
 * long stride of the larger of S and W/2. Long windows cost maxSeq/stride forward tokens per scored
 * token; with S = maxSeq/4 a stride of W/2 = 3/8 maxSeq makes that 2.67 (every short chunk then starts
 * where a long window does, so the chunks add nothing) and leaves every long score at least 5/8 of
 * the window of context. A stride of S would cost 4.
 */
export function keyTokenOptions(maxSeq: number, given: Partial<KeyTokenOptions> = {}): KeyTokenOptions {
  const shortContext = given.shortContext ?? Math.max(1, Math.floor(maxSeq / 4));
  const chunk = given.chunk ?? Math.max(1, maxSeq - shortContext);
  return {
    shortContext,
    chunk,
    longStride: given.longStride ?? Math.max(shortContext, Math.floor(chunk / 2)),
    topK: given.topK ?? 8,
    alpha: given.alpha ?? 2,
    beta: given.beta ?? -2,
    select: given.select ?? 'topk',
    perSentence: given.perSentence ?? 1,
    batch: given.batch ?? 8,
  };
}

export function validateKeyTokenOptions(o: KeyTokenOptions, maxSeq: number): void {
  checkPositiveIntegers({ '--short': o.shortContext, '--chunk': o.chunk, '--long-stride': o.longStride, '--top-k': o.topK, '--batch': o.batch });
  if (!Number.isInteger(o.perSentence) || o.perSentence < 0) throw new UserError(`--per-sentence must be a whole number, 0 for no limit (got ${o.perSentence})`);
  if (o.shortContext + o.chunk > maxSeq) throw new UserError(`--short ${o.shortContext} + --chunk ${o.chunk} exceeds the model's window of ${maxSeq} tokens; lower one of them`);
  if (o.longStride >= maxSeq) throw new UserError(`--long-stride ${o.longStride} must be below the model's window of ${maxSeq} tokens, or windows would leave tokens unscored`);
  if (!Number.isFinite(o.alpha) || !Number.isFinite(o.beta)) throw new UserError(`--alpha and --beta must be numbers (got ${o.alpha}, ${o.beta})`);
  if (!SELECTIONS.includes(o.select)) throw new UserError(`--select must be one of ${SELECTIONS.join(', ')} (got ${o.select})`);
}

/** Per-position scores of one document; index i scores token i given the tokens before it. */
export interface DocumentScores {
  /** l_i; NaN at position 0. */
  long: Float32Array;
  /** s_i; NaN before position S. */
  short: Float32Array;
  /** Tokens of context behind long[i] and short[i] (0 where unscored). */
  longContext: Int32Array;
  shortContext: Int32Array;
  forwardPasses: number;
  /** Tokens read by those passes (the work: about maxSeq / longStride per document token). */
  forwardTokens: number;
}

/** Tokens [start, end) of a document, read as one sequence to score `targets` (positions in (start, end)). */
interface Window {
  start: number;
  end: number;
  targets: number[];
}

/** The windows that score a document of `length` tokens, and which window scores each target's long and short log-prob. */
function planWindows(length: number, o: KeyTokenOptions, maxSeq: number): { windows: Window[]; longSource: Int32Array; shortSource: Int32Array } {
  const ends = new Map<number, number>();
  const addWindow = (start: number, size: number): void => {
    ends.set(start, Math.max(ends.get(start) ?? 0, Math.min(start + size, length)));
  };
  for (let start = 0; ; start += o.longStride) {
    addWindow(start, maxSeq);
    if (start + maxSeq >= length) break;
  }
  for (let start = 0; start + o.shortContext < length; start += o.chunk) addWindow(start, o.shortContext + o.chunk);

  const windows: Window[] = [...ends.keys()].sort((a, b) => a - b).map((start) => ({ start, end: ends.get(start)!, targets: [] }));
  const indexOfStart = new Map(windows.map((w, index) => [w.start, index]));
  const longSource = new Int32Array(length).fill(-1);
  const shortSource = new Int32Array(length).fill(-1);
  // Windows are in start order and overlap, so the first one reaching a target gives it the most context.
  let next = 1;
  windows.forEach((w, index) => {
    for (; next < w.end; next++) longSource[next] = index;
  });
  for (let i = o.shortContext; i < length; i++) {
    shortSource[i] = indexOfStart.get(Math.floor((i - o.shortContext) / o.chunk) * o.chunk)!;
  }
  for (let i = 1; i < length; i++) {
    windows[longSource[i]].targets.push(i);
    if (shortSource[i] >= 0 && shortSource[i] !== longSource[i]) windows[shortSource[i]].targets.push(i);
  }
  return { windows, longSource, shortSource };
}

/** Long and short log-probs of every token of `tokens` (BOS first), `options.batch` windows per forward. */
export async function scoreDocument(model: LlamaModel, tokens: readonly number[], options: KeyTokenOptions): Promise<DocumentScores> {
  return (await scoreDocuments(model, [tokens], options)).scores[0];
}

/** Padded window lengths are multiples of this, so that documents of other lengths still give batches of one shape. */
const LENGTH_STEP = 64;

/**
 * scoreDocument of several documents, their windows batched together: every batch but the last is full and all are
 * padded to one length and scored-row count, so the device is not left waiting on a document's last, small batch,
 * and its buffers are reused. The last batch keeps its own number of windows: padding it with more would only add work.
 * A document's `forwardPasses` counts the batches holding its windows; `forwardPasses` counts them all.
 */
export async function scoreDocuments(model: LlamaModel, documents: readonly (readonly number[])[], options: KeyTokenOptions): Promise<{ scores: DocumentScores[]; forwardPasses: number }> {
  const plans = documents.map((tokens) => planWindows(tokens.length, options, model.config.maxSeq));
  const all = plans.flatMap((plan, d) => plan.windows.map((w, index) => ({ d, index, w })));
  const scores = documents.map((tokens): DocumentScores => ({
    long: new Float32Array(tokens.length).fill(NaN),
    short: new Float32Array(tokens.length).fill(NaN),
    longContext: new Int32Array(tokens.length),
    shortContext: new Int32Array(tokens.length),
    forwardPasses: 0,
    forwardTokens: 0,
  }));
  const groups = inBatches(all, options.batch);
  const batches = groups.map((group) =>
    group.map(({ d, w }) => ({
      input: documents[d].slice(w.start, w.targets[w.targets.length - 1]),
      offsets: w.targets.map((i) => i - w.start - 1),
      nextTokens: w.targets.map((i) => documents[d][i]),
    })),
  );
  const longest = Math.max(0, ...batches.flat().map((sequence) => sequence.input.length));
  const length = Math.min(model.config.maxSeq, Math.ceil(longest / LENGTH_STEP) * LENGTH_STEP);
  const results = await nextTokenLogProbsOfBatches(model, batches, { length, rowMultiple: length });
  groups.forEach((group, g) => {
    const logProbs = results[g];
    for (const d of new Set(group.map((entry) => entry.d))) scores[d].forwardPasses++;
    let row = 0;
    group.forEach(({ d, index, w }, k) => {
      const { longSource, shortSource } = plans[d];
      const s = scores[d];
      s.forwardTokens += batches[g][k].input.length;
      for (const i of w.targets) {
        if (longSource[i] === index) {
          s.long[i] = logProbs[row];
          s.longContext[i] = i - w.start;
        }
        if (shortSource[i] === index) {
          s.short[i] = logProbs[row];
          s.shortContext[i] = i - w.start;
        }
        row++;
      }
    });
  });
  return { scores, forwardPasses: batches.length };
}

/**
 * Positions of the key tokens, ascending. Only tokens whose long context is longer than their short
 * one can show a long-short gap: that excludes the first S tokens, and tokens whose short chunk
 * already is the longest window that fits. With `sentenceStarts` (ARL), at most `perSentence` per
 * sentence, the highest gaps first; LongPPL passes none and counts every token.
 */
export function selectKeyTokens(scores: DocumentScores, o: Pick<KeyTokenOptions, 'topK' | 'alpha' | 'beta' | 'select'> & { perSentence?: number }, sentenceStarts?: readonly number[]): number[] {
  const candidates: { pos: number; lsg: number }[] = [];
  for (let i = 1; i < scores.long.length; i++) {
    if (scores.shortContext[i] === 0 || scores.longContext[i] <= scores.shortContext[i]) continue;
    const lsg = scores.long[i] - scores.short[i];
    if (o.select !== 'topk' && !(lsg > o.alpha && scores.long[i] > o.beta)) continue;
    candidates.push({ pos: i, lsg });
  }
  candidates.sort((a, b) => b.lsg - a.lsg || a.pos - b.pos);
  const perSentence = sentenceStarts && o.perSentence ? o.perSentence : Infinity;
  const taken = new Map<number, number>();
  const chosen: number[] = [];
  for (const c of candidates) {
    if (o.select !== 'threshold' && chosen.length === o.topK) break;
    const sentence = sentenceStarts ? sentenceOf(sentenceStarts, c.pos) : 0;
    if ((taken.get(sentence) ?? 0) >= perSentence) continue;
    taken.set(sentence, (taken.get(sentence) ?? 0) + 1);
    chosen.push(c.pos);
  }
  return chosen.sort((a, b) => a - b);
}

/** Index of the sentence holding token `pos`: the last start at or before it. */
function sentenceOf(starts: readonly number[], pos: number): number {
  let low = 0;
  let high = starts.length - 1;
  while (low < high) {
    const mid = (low + high + 1) >> 1;
    if (starts[mid]! <= pos) low = mid;
    else high = mid - 1;
  }
  return low;
}

/**
 * Why a run found no key tokens (so LongPPL is null), and which flags would find some. The first chunk's
 * short context is the whole prefix, so only tokens past S+W can gain from more context.
 */
export function noKeyTokensReason(o: Pick<KeyTokenOptions, 'shortContext' | 'chunk' | 'select' | 'alpha' | 'beta'>): string {
  const reach = `only tokens past S+W = ${o.shortContext + o.chunk} have more long than short context (longer documents, or a smaller --short or --chunk, give more)`;
  if (o.select === 'topk') return `no key tokens: ${reach}`;
  return `no key tokens: ${reach}, and --select ${o.select} needs LSG > ${o.alpha} with long log-prob > ${o.beta}; try --select topk, or a lower --alpha or --beta`;
}

/** One line of keytokens.jsonl. */
export interface KeyTokenRecord {
  doc: string;
  pos: number;
  token: number;
  piece: string;
  long_logprob: number;
  short_logprob: number;
  lsg: number;
}

/** One line of documents.jsonl: the document's tokens (for step 2) and its share of the totals. */
export interface KeyTokenDocument {
  doc: string;
  tokens: number[];
  sentence_starts: number[];
  /** Shorter than S + 1 tokens: no token has a short context, nothing was scored. */
  skipped_short: boolean;
  tokens_scored: number;
  long_logprob_sum: number;
  key_tokens: number;
  key_long_logprob_sum: number;
}

export interface KeyTokenTotals {
  documents: number;
  documents_skipped_short: number;
  tokens_scored: number;
  key_tokens: number;
  /** exp(-mean l_i) over all scored tokens; null when none were scored. */
  perplexity: number | null;
  /** exp(-mean l_i) over key tokens; null without key tokens. */
  longppl: number | null;
}

/** What a shard's summary adds: the corpus it read in full (its documents and their hash), for the merge's checks. */
export interface ShardTotals {
  corpus_documents: number;
  corpus_sha256: string;
}

export type KeyTokenSummary = KeyTokenTotals & Partial<ShardTotals> & Settings;

export const KEY_TOKEN_FILES = { records: 'keytokens.jsonl', documents: 'documents.jsonl', summary: 'summary.json' };

export interface KeyTokenRun {
  model: LlamaModel;
  tokenizer: Tokenizer;
  /** Directory of the checkpoint the model came from (recorded in the summary). */
  checkpoint: string;
  /** Corpus source for readDocuments: `brown`, a .txt file or folder, or a .jsonl file. */
  corpus: string;
  outDir: string;
  options: KeyTokenOptions;
  /** Take only the first N documents of the corpus. */
  maxDocs?: number;
  /** Score only this shard's documents of those (see shard.ts), recording the shard in the summary. */
  shard?: ShardSettings;
  /** Called after each document, done earlier or now. */
  onDocument?: (progress: { documents: number; tokensScoredNow: number; keyTokens: number }) => void;
}

export interface KeyTokenResult {
  summary: KeyTokenSummary;
  /** Documents scored by this call (the rest were done by an earlier run in the same folder). */
  documentsScored: number;
}

function totalsOf(documents: KeyTokenDocument[]): KeyTokenTotals {
  const sum = (pick: (d: KeyTokenDocument) => number): number => documents.reduce((acc, d) => acc + pick(d), 0);
  const tokensScored = sum((d) => d.tokens_scored);
  const keyTokens = sum((d) => d.key_tokens);
  return {
    documents: documents.length,
    documents_skipped_short: documents.filter((d) => d.skipped_short).length,
    tokens_scored: tokensScored,
    key_tokens: keyTokens,
    perplexity: tokensScored > 0 ? Math.exp(-sum((d) => d.long_logprob_sum) / tokensScored) : null,
    longppl: keyTokens > 0 ? Math.exp(-sum((d) => d.key_long_logprob_sum) / keyTokens) : null,
  };
}

/**
 * Scores a corpus document by document into `outDir` (keytokens.jsonl, documents.jsonl, summary.json).
 * Documents already done in `outDir` by an earlier run with the same settings are not scored again.
 */
export async function findKeyTokens(run: KeyTokenRun): Promise<KeyTokenResult> {
  const { model, tokenizer, options } = run;
  validateKeyTokenOptions(options, model.config.maxSeq);
  const settings: Settings = {
    checkpoint: run.checkpoint,
    corpus: run.corpus === BROWN_SOURCE ? BROWN_SOURCE : resolve(run.corpus),
    tokenizer: tokenizer.sha256,
    S: options.shortContext,
    W: options.chunk,
    K: options.topK,
    alpha: options.alpha,
    beta: options.beta,
    select: options.select,
    per_sentence: options.perSentence,
    long_stride: options.longStride,
    ...run.shard,
  };
  const shard: Shard | null = run.shard ? { index: run.shard.shard_index, count: run.shard.shard_count } : null;
  const corpusHash = new CorpusHash();
  const { journal, resumed } = DocumentJournal.open<KeyTokenDocument>(run.outDir, KEY_TOKEN_FILES, settings);
  // Totals need only the small fields; dropping the token lists keeps memory flat on large corpora.
  const counted: KeyTokenDocument[] = resumed.map((d) => ({ ...d, tokens: [], sentence_starts: [] }));
  let documents = 0;
  let documentsScored = 0;
  let tokensScoredNow = 0;
  let keyTokens = counted.reduce((acc, d) => acc + d.key_tokens, 0);
  // Documents are scored a pass at a time, their windows batched together; a run stopped mid-pass loses that pass.
  const scorePass = async (pass: CorpusDocument[]): Promise<void> => {
    for (const scored of await scoreCorpusDocuments(model, tokenizer, pass, options)) {
      journal.append(scored.keyTokens, scored.record);
      counted.push({ ...scored.record, tokens: [], sentence_starts: [] });
      documents++;
      documentsScored++;
      tokensScoredNow += scored.record.tokens_scored;
      keyTokens += scored.record.key_tokens;
      run.onDocument?.({ documents, tokensScoredNow, keyTokens });
    }
  };
  // The corpus's documents still to score (read as passes need them; those done before are counted on the way).
  async function* toScore(): AsyncGenerator<CorpusDocument> {
    for await (const { id, text } of readDocuments(run.corpus)) {
      if (run.maxDocs !== undefined && corpusHash.documents >= run.maxDocs) return;
      const index = corpusHash.documents;
      corpusHash.add(id, text);
      if (shard && !inShard(index, shard)) continue;
      if (journal.isDone(id)) {
        documents++;
        run.onDocument?.({ documents, tokensScoredNow, keyTokens });
        continue;
      }
      yield { doc: id, ...tokenizeDocument(text, tokenizer) };
    }
  }
  try {
    for await (const pass of inPasses(toScore(), (d) => d.tokens.length, PASS_BATCHES * options.batch * model.config.maxSeq)) await scorePass(pass);
    const totals: KeyTokenTotals & Partial<ShardTotals> = { ...totalsOf(counted), ...(shard && { corpus_documents: corpusHash.documents, corpus_sha256: corpusHash.digest() }) };
    journal.finish(totals);
    return { summary: { ...totals, ...settings }, documentsScored };
  } finally {
    journal.close();
  }
}

/**
 * A scoring pass gathers documents until they hold this many batches of full windows in tokens; overlapping windows
 * make that about maxSeq / longStride times as many batches (about 11 at the defaults), so the device stays busy
 * between two reads and only the pass's last batch is partial.
 */
const PASS_BATCHES = 4;

interface CorpusDocument {
  doc: string;
  tokens: number[];
  sentenceStarts: number[];
}

async function scoreCorpusDocuments(model: LlamaModel, tokenizer: Tokenizer, documents: readonly CorpusDocument[], options: KeyTokenOptions): Promise<{ record: KeyTokenDocument; keyTokens: KeyTokenRecord[] }[]> {
  const records = documents.map(({ doc, tokens, sentenceStarts }): KeyTokenDocument => ({
    doc,
    tokens,
    sentence_starts: sentenceStarts,
    skipped_short: tokens.length < options.shortContext + 1,
    tokens_scored: 0,
    long_logprob_sum: 0,
    key_tokens: 0,
    key_long_logprob_sum: 0,
  }));
  const { scores } = await scoreDocuments(model, records.filter((r) => !r.skipped_short).map((r) => r.tokens), options);
  let next = 0;
  return records.map((record) => ({ record, keyTokens: record.skipped_short ? [] : keyTokenRecords(record, scores[next++], tokenizer, options) }));
}

/** The key tokens of a scored document, its record's totals filled in. */
function keyTokenRecords(record: KeyTokenDocument, scores: DocumentScores, tokenizer: Tokenizer, options: KeyTokenOptions): KeyTokenRecord[] {
  const { doc, tokens } = record;
  for (let i = 1; i < tokens.length; i++) record.long_logprob_sum += scores.long[i];
  record.tokens_scored = tokens.length - 1;
  const keyTokens = selectKeyTokens(scores, options, record.sentence_starts).map((pos): KeyTokenRecord => {
    record.key_long_logprob_sum += scores.long[pos];
    return {
      doc,
      pos,
      token: tokens[pos],
      piece: tokenizer.pieceOf(tokens[pos]),
      long_logprob: roundLogProb(scores.long[pos]),
      short_logprob: roundLogProb(scores.short[pos]),
      lsg: roundLogProb(scores.long[pos] - scores.short[pos]),
    };
  });
  record.key_tokens = keyTokens.length;
  return keyTokens;
}

export interface ScoringThroughput {
  /** Document tokens given l_i and s_i per second. */
  scoring_tokens_per_s: number;
  /** Tokens per second of plain forward passes (full logits) over batches of maxSeq-token windows. */
  forward_tokens_per_s: number;
  /** Forward passes for all the documents, with `batch` windows each. */
  forward_passes: number;
  /** Tokens those passes read per document token. */
  forward_tokens_per_document_token: number;
  document_tokens: number;
  documents: number;
  batch: number;
}

/**
 * Key-token scoring speed against plain forward speed on random tokens (speed does not depend on them): `documents`
 * documents of `documentTokens` tokens scored together, as findKeyTokens scores a pass.
 */
export async function measureKeyTokenThroughput(model: LlamaModel, options: KeyTokenOptions, documentTokens = 4 * model.config.maxSeq, documents = 8, repeats = 3): Promise<ScoringThroughput> {
  validateKeyTokenOptions(options, model.config.maxSeq);
  const { vocabSize, maxSeq } = model.config;
  const rng = makeRng(1);
  const randomIds = (count: number): number[] => Array.from({ length: count }, () => Math.floor(rng() * vocabSize));
  const randomDocuments = Array.from({ length: documents }, () => randomIds(documentTokens));
  let forwardPasses = 0;
  let forwardTokens = 0;
  const scoringSeconds = await secondsPerCall(async () => {
    const { scores, forwardPasses: passes } = await scoreDocuments(model, randomDocuments, options);
    forwardPasses = passes;
    forwardTokens = scores.reduce((acc, s) => acc + s.forwardTokens, 0);
  }, 1, repeats);
  const windows = tf.tensor2d(randomIds(options.batch * maxSeq), [options.batch, maxSeq], 'int32');
  const forwardSeconds = await secondsPerCall(async () => {
    // Reading all the logits back ([batch, window, vocab]) would time the copy, which on a GPU costs more than the
    // forward itself and would flatter the scoring's cost against it.
    const logits = tf.tidy(() => model.logits(windows));
    await settle(logits);
    logits.dispose();
  }, 1, repeats, scoringSeconds * repeats); // timed over as long as the scoring was: the ratio's two sides alike
  windows.dispose();
  return {
    scoring_tokens_per_s: (documents * documentTokens) / scoringSeconds,
    forward_tokens_per_s: (options.batch * maxSeq) / forwardSeconds,
    forward_passes: forwardPasses,
    forward_tokens_per_document_token: forwardTokens / (documents * documentTokens),
    document_tokens: documentTokens,
    documents,
    batch: options.batch,
  };
}
