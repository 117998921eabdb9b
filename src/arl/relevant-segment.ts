/**
 * ARL step 2: the relevant segment of each key token (methods.md section 2).
 *
 * For a key token at position i with short context [i - S, i), the candidates are sentence-aligned
 * windows of earlier text that end at or before i - S and start at most `reach` tokens before i (by
 * default the model's window: what the long context that made x_i a key token saw, and all a recap
 * written at i can draw on, since the recap agent only sees its window). Each is scored as log P(x_i | candidate +
 * short context), i.e. the candidate inserted right before the short context; the baseline is
 * log P(x_i | short context alone). The rows of a document's key tokens (each one's baseline and
 * candidates) go through batched forward passes of `batch` rows, packed across key tokens so that each
 * pass is full, and the best candidate c* is kept when it raises the log-prob by at least `margin` nats.
 *
 * Rows of different lengths are right-padded and each row's target is read at its own last position
 * (see scoring.ts): causal attention makes that exactly the score of the row run alone, and no
 * candidate is cut or padded with other text, which left-aligning to a common length would need.
 */
import * as tf from '@tensorflow/tfjs';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { settle } from '../backend.ts';
import { inBatches, inPasses } from '../core/batches.ts';
import { makeRng } from '../core/random.ts';
import { secondsPerCall } from '../core/timing.ts';
import { checkPositiveIntegers, UserError } from '../io/errors.ts';
import { readJsonLines } from '../io/jsonl.ts';
import type { LlamaModel } from '../model/llama.ts';
import type { Tokenizer } from '../tokenizer/sentencepiece.ts';
import { DocumentJournal, type Settings } from './journal.ts';
import { KEY_TOKEN_FILES, type KeyTokenDocument, type KeyTokenRecord, type KeyTokenSummary } from './key-tokens.ts';
import { checkRunTokenizer } from './run-folder.ts';
import { nextTokenLogProbsOfBatches, roundLogProb, type ScoredSequence } from './scoring.ts';

export interface SegmentOptions {
  /** S: the short context, as in step 1. */
  shortContext: number;
  /** Candidates hold whole sentences up to this many tokens (a longer sentence is cut to it). */
  segmentTokens: number;
  /** Candidates start at most this many tokens before the key token. */
  reach: number;
  /** Minimum gain in log-prob (nats) for c* to be kept. */
  margin: number;
  /** Rows (candidates plus the baseline) per forward pass. */
  batch: number;
}

/** Tokens per forward pass the default batch fills. */
const DEFAULT_BATCH_TOKENS = 32768;

/**
 * Options for short context S and a model window of maxSeq tokens, with defaults for those not given: segments of
 * S/2 tokens reaching back at most maxSeq tokens, margin 0.5 nats, batches of about 32k tokens.
 */
export function segmentOptions(shortContext: number, maxSeq: number, given: Partial<Omit<SegmentOptions, 'shortContext'>> = {}): SegmentOptions {
  const segmentTokens = given.segmentTokens ?? Math.max(1, Math.floor(shortContext / 2));
  const batch = given.batch ?? Math.max(1, Math.floor(DEFAULT_BATCH_TOKENS / (shortContext + segmentTokens)));
  return { shortContext, segmentTokens, reach: given.reach ?? maxSeq, margin: given.margin ?? 0.5, batch };
}

export function validateSegmentOptions(o: SegmentOptions, maxSeq: number): void {
  checkPositiveIntegers({ '--segment-tokens': o.segmentTokens, '--segment-reach': o.reach, '--batch': o.batch });
  if (o.reach <= o.shortContext) throw new UserError(`--segment-reach ${o.reach} must exceed the short context of ${o.shortContext} tokens, or no candidate fits before it`);
  if (o.shortContext + o.segmentTokens > maxSeq) {
    throw new UserError(`--segment-tokens ${o.segmentTokens} plus the short context of ${o.shortContext} tokens exceeds the model's window of ${maxSeq}; lower --segment-tokens`);
  }
  if (!Number.isFinite(o.margin)) throw new UserError(`--margin must be a number (got ${o.margin})`);
}

/** Tokens [start, end) of a document. */
export interface Segment {
  start: number;
  end: number;
}

/**
 * One candidate per sentence starting before the short context of the key token at `keyPos` and at most
 * `reach` tokens before it: whole sentences from there, as many as fit in `segmentTokens`, ending at or before
 * keyPos - S.
 */
export function candidateSegments(sentenceStarts: readonly number[], keyPos: number, o: Pick<SegmentOptions, 'shortContext' | 'segmentTokens' | 'reach'>): Segment[] {
  const limit = keyPos - o.shortContext;
  const bounds = [...sentenceStarts.filter((s) => s < limit), limit];
  const segments: Segment[] = [];
  for (let k = 0; k < bounds.length - 1; k++) {
    if (bounds[k] < keyPos - o.reach) continue;
    const start = bounds[k];
    let end = Math.min(bounds[k + 1], start + o.segmentTokens);
    for (let m = k + 2; m < bounds.length && bounds[m] - start <= o.segmentTokens; m++) end = bounds[m];
    segments.push({ start, end });
  }
  return segments;
}

/** The rows that score the key token at `keyPos`: its short context alone (the baseline), then after each candidate. */
function keyTokenRows(tokens: readonly number[], keyPos: number, candidates: readonly Segment[], shortContext: number): ScoredSequence[] {
  const context = tokens.slice(keyPos - shortContext, keyPos);
  const row = (prefix: readonly number[]): ScoredSequence => {
    const input = [...prefix, ...context];
    return { input, offsets: [input.length - 1], nextTokens: [tokens[keyPos]] };
  };
  return [row([]), ...candidates.map((c) => row(tokens.slice(c.start, c.end)))];
}

/**
 * log-probs of `rows`, `o.batch` rows per forward pass, every pass of one shape: rows padded to the longest any
 * candidate makes (S + segment tokens) and scored rows to a full batch. Passes of their own shapes make the backend
 * create new buffers (and, where a kernel is compiled per shape, pipelines) for each; the last pass keeps its own
 * number of rows.
 */
async function scoreRows(model: LlamaModel, rows: readonly ScoredSequence[], o: SegmentOptions): Promise<{ logProbs: Float32Array; forwardPasses: number }> {
  const batches = inBatches(rows, o.batch);
  const logProbs = new Float32Array(rows.length);
  const shape = { length: o.shortContext + o.segmentTokens, rowMultiple: o.batch };
  (await nextTokenLogProbsOfBatches(model, batches, shape)).forEach((values, b) => logProbs.set(values, b * o.batch));
  return { logProbs, forwardPasses: batches.length };
}

export interface RelevantSegment extends Segment {
  /** log P(x_i | c* + short context) - baseline. */
  gain: number;
  logProb: number;
  baseline: number;
}

/** c* among scored candidates (the first of equal best), or null when it gains less than the margin. */
function bestSegment(candidates: readonly Segment[], baseline: number, scores: Float32Array, margin: number): RelevantSegment | null {
  let best = 0;
  for (let c = 1; c < candidates.length; c++) if (scores[c] > scores[best]) best = c;
  const gain = scores[best] - baseline;
  return gain >= margin ? { ...candidates[best], gain, logProb: scores[best], baseline } : null;
}

/** What findRelevantSegmentsOf finds for one key token. */
export interface SegmentSearch {
  /** c*, or null when no candidate gains at least the margin. */
  segment: RelevantSegment | null;
  candidates: number;
  /** log P(x_i | short context), and after each candidate (NaN and none without candidates). */
  baseline: number;
  scores: Float32Array;
}

/** One document's part of a segment search: its tokens, sentence starts and key-token positions. */
export interface SegmentSearchDocument {
  tokens: readonly number[];
  sentenceStarts: readonly number[];
  keyPositions: readonly number[];
}

/** The rows a document's key tokens are scored in: each one's baseline and candidates (none without candidates). */
function searchRows(document: SegmentSearchDocument, o: SegmentOptions): { candidates: Segment[][]; rows: number } {
  const candidates = document.keyPositions.map((pos) => candidateSegments(document.sentenceStarts, pos, o));
  return { candidates, rows: candidates.reduce((n, c) => n + (c.length === 0 ? 0 : c.length + 1), 0) };
}

/**
 * c* for each key token of each document, with the rows of all of them packed `batch` rows per forward pass: a key
 * token's rows fill a forward only partly, a document's often too, and every pass costs a round trip. Each row is
 * scored as if run alone (scoring.ts), so packing leaves every score as it was.
 */
export async function findRelevantSegmentsOfDocuments(model: LlamaModel, documents: readonly SegmentSearchDocument[], o: SegmentOptions): Promise<{ found: SegmentSearch[][]; forwardPasses: number }> {
  const perDocument = documents.map((document) => searchRows(document, o).candidates);
  const rows = documents.flatMap((document, d) =>
    document.keyPositions.flatMap((pos, k) => (perDocument[d][k].length === 0 ? [] : keyTokenRows(document.tokens, pos, perDocument[d][k], o.shortContext))),
  );
  const { logProbs, forwardPasses } = rows.length === 0 ? { logProbs: new Float32Array(0), forwardPasses: 0 } : await scoreRows(model, rows, o);
  let at = 0;
  const found = perDocument.map((perKeyToken) =>
    perKeyToken.map((candidates): SegmentSearch => {
      if (candidates.length === 0) return { segment: null, candidates: 0, baseline: NaN, scores: new Float32Array(0) };
      const baseline = logProbs[at];
      const scores = logProbs.slice(at + 1, at + 1 + candidates.length);
      at += 1 + candidates.length;
      return { segment: bestSegment(candidates, baseline, scores, o.margin), candidates: candidates.length, baseline, scores };
    }),
  );
  return { found, forwardPasses };
}

/** findRelevantSegmentsOfDocuments of one document. */
export async function findRelevantSegmentsOf(model: LlamaModel, tokens: readonly number[], sentenceStarts: readonly number[], keyPositions: readonly number[], o: SegmentOptions): Promise<{ found: SegmentSearch[]; forwardPasses: number }> {
  const { found, forwardPasses } = await findRelevantSegmentsOfDocuments(model, [{ tokens, sentenceStarts, keyPositions }], o);
  return { found: found[0], forwardPasses };
}

/** One line of segments.jsonl: a key token whose relevant segment was kept. */
export interface SegmentRecord extends KeyTokenRecord {
  segment_start: number;
  segment_end: number;
  segment_text: string;
  gain: number;
  /** log P(x_i | exactly the last S tokens); the step-1 short_logprob saw S to S+W-1 tokens. */
  baseline_logprob: number;
  segment_logprob: number;
}

interface SegmentDocument {
  doc: string;
  key_tokens: number;
  segments: number;
  candidates: number;
  gain_sum: number;
}

export const SEGMENT_FILES = { records: 'segments.jsonl', documents: 'segments-documents.jsonl', summary: 'segments-summary.json' };

export interface SegmentRun {
  model: LlamaModel;
  tokenizer: Tokenizer;
  checkpoint: string;
  /** The checkpoint's weights hash, recorded for a shard of a sharded run (whose merge compares it across machines). */
  checkpointSha256?: string;
  /** Output folder of step 1. */
  keyTokensDir: string;
  /** Where segments.jsonl goes (default: keyTokensDir). */
  outDir?: string;
  /** Options not given take segmentOptions' defaults; the short context is step 1's. */
  options: Partial<Omit<SegmentOptions, 'shortContext'>>;
  onKeyToken?: (progress: { keyTokens: number; segments: number }) => void;
}

export interface SegmentTotals {
  key_tokens: number;
  segments: number;
  candidates_scored: number;
  /** Mean gain of the kept segments, nats; null when none was kept. */
  mean_gain: number | null;
}

/** The summary.json of a finished step-1 folder. */
export function readKeyTokenSummary(dir: string): KeyTokenSummary {
  const file = join(dir, KEY_TOKEN_FILES.summary);
  if (!existsSync(file)) throw new UserError(`${dir}: no ${KEY_TOKEN_FILES.summary}; run \`arl keytokens --out ${dir}\` first (or rerun it to finish an interrupted run)`);
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as KeyTokenSummary;
  } catch {
    throw new UserError(`${file}: not valid JSON; rerun \`arl keytokens --out ${dir}\``);
  }
}

/**
 * A search pass gathers documents until their rows fill this many batches, so the device stays busy between two reads
 * and only the pass's last batch is partial (a document's rows alone often fill part of one).
 */
const PASS_BATCHES = 4;

/** `documents` gathered into search passes (see PASS_BATCHES). */
function inSearchPasses<T>(documents: Iterable<T>, o: SegmentOptions, search: (item: T) => SegmentSearchDocument): AsyncGenerator<T[]> {
  return inPasses(documents, (item) => searchRows(search(item), o).rows, PASS_BATCHES * o.batch);
}

interface PendingDocument {
  document: KeyTokenDocument;
  keyTokens: KeyTokenRecord[];
  search: SegmentSearchDocument;
}

/** Finds c* for every key token of a step-1 folder, a pass of documents at a time (resumable like step 1). */
export async function findRelevantSegments(run: SegmentRun): Promise<{ totals: SegmentTotals; keyTokensScored: number; forwardPasses: number }> {
  const { model, tokenizer } = run;
  const keyTokensDir = resolve(run.keyTokensDir);
  const summary = readKeyTokenSummary(keyTokensDir);
  checkRunTokenizer(keyTokensDir, summary.tokenizer, tokenizer, 'key tokens were made', 'pass a checkpoint with the tokenizer step 1 used');
  const shortContext = Number(summary.S);
  const options = segmentOptions(shortContext, model.config.maxSeq, run.options);
  validateSegmentOptions(options, model.config.maxSeq);

  const keyTokensByDoc = new Map<string, KeyTokenRecord[]>();
  for (const record of readJsonLines<KeyTokenRecord>(join(keyTokensDir, KEY_TOKEN_FILES.records))) {
    const forDoc = keyTokensByDoc.get(record.doc);
    if (forDoc) forDoc.push(record);
    else keyTokensByDoc.set(record.doc, [record]);
  }
  const settings: Settings = { checkpoint: run.checkpoint, keytokens: keyTokensDir, S: shortContext, segment_tokens: options.segmentTokens, segment_reach: options.reach, margin: options.margin, ...(run.checkpointSha256 !== undefined && { checkpoint_sha256: run.checkpointSha256 }) };
  const { journal, resumed } = DocumentJournal.open<SegmentDocument>(run.outDir ?? keyTokensDir, SEGMENT_FILES, settings);
  const done = [...resumed];
  const sum = (pick: (d: SegmentDocument) => number): number => done.reduce((acc, d) => acc + pick(d), 0);
  const progress = { keyTokens: sum((d) => d.key_tokens), segments: sum((d) => d.segments) };
  let keyTokensScored = 0;
  let forwardPasses = 0;
  // Documents are searched a pass at a time, their rows batched together; a run stopped mid-pass loses that pass.
  const searchPass = async (pass: readonly PendingDocument[]): Promise<void> => {
    const scored = await findRelevantSegmentsOfDocuments(model, pass.map((p) => p.search), options);
    forwardPasses += scored.forwardPasses;
    for (const [d, { document, keyTokens }] of pass.entries()) {
      const record: SegmentDocument = { doc: document.doc, key_tokens: keyTokens.length, segments: 0, candidates: 0, gain_sum: 0 };
      const kept: SegmentRecord[] = [];
      for (const [k, keyToken] of keyTokens.entries()) {
        const found = scored.found[d][k];
        record.candidates += found.candidates;
        keyTokensScored++;
        progress.keyTokens++;
        if (found.segment) {
          const { start, end, gain, logProb, baseline } = found.segment;
          record.segments++;
          record.gain_sum += gain;
          progress.segments++;
          kept.push({
            ...keyToken,
            segment_start: start,
            segment_end: end,
            segment_text: tokenizer.decode(document.tokens.slice(start, end)).trim(),
            gain: roundLogProb(gain),
            baseline_logprob: roundLogProb(baseline),
            segment_logprob: roundLogProb(logProb),
          });
        }
        run.onKeyToken?.({ ...progress });
      }
      journal.append(kept, record);
      done.push(record);
    }
  };
  function* toSearch(): Generator<PendingDocument> {
    for (const document of readJsonLines<KeyTokenDocument>(join(keyTokensDir, KEY_TOKEN_FILES.documents))) {
      const keyTokens = keyTokensByDoc.get(document.doc);
      if (!keyTokens || journal.isDone(document.doc)) continue;
      yield { document, keyTokens, search: { tokens: document.tokens, sentenceStarts: document.sentence_starts, keyPositions: keyTokens.map((k) => k.pos) } };
    }
  }
  try {
    for await (const pass of inSearchPasses(toSearch(), options, (p) => p.search)) await searchPass(pass);
    const segments = sum((d) => d.segments);
    const totals: SegmentTotals = {
      key_tokens: sum((d) => d.key_tokens),
      segments,
      candidates_scored: sum((d) => d.candidates),
      mean_gain: segments > 0 ? sum((d) => d.gain_sum) / segments : null,
    };
    journal.finish(totals);
    return { totals, keyTokensScored, forwardPasses };
  } finally {
    journal.close();
  }
}

/** What the segment step costs, against plain forwards of its own pass shape. */
export interface SegmentThroughput {
  key_tokens: number;
  candidates_per_key_token: number;
  forward_passes: number;
  seconds_per_key_token: number;
  /** Tokens of the scored rows (unpadded) per second. */
  row_tokens_per_s: number;
  /** Tokens per second of the model's hidden states over full passes of the step's shape (`batch` rows of S + segment tokens). */
  forward_tokens_per_s: number;
  /** forward_tokens_per_s / row_tokens_per_s: 1 when the step runs as fast as its forwards alone. */
  cost_vs_forward: number;
  batch: number;
}

/**
 * Times the segment step on random documents of `documentTokens` tokens with a sentence every 20 tokens and
 * `keyTokens` key tokens each, spread over the part with a full reach of candidates before it, in search passes as
 * `arl recap-data` runs it (one warm-up round, then `repeats`).
 */
export async function measureSegmentThroughput(model: LlamaModel, o: SegmentOptions, documentTokens = 4 * model.config.maxSeq, documents = 4, keyTokens = 8, repeats = 2): Promise<SegmentThroughput> {
  validateSegmentOptions(o, model.config.maxSeq);
  const rng = makeRng(2);
  const randomIds = (count: number): number[] => Array.from({ length: count }, () => Math.floor(rng() * model.config.vocabSize));
  const sentenceStarts = Array.from({ length: Math.ceil(documentTokens / 20) }, (_, i) => i * 20);
  const first = Math.min(o.reach, documentTokens - keyTokens);
  const keyPositions = Array.from({ length: keyTokens }, (_, k) => first + Math.floor((k * (documentTokens - first)) / keyTokens));
  const searches = Array.from({ length: documents }, () => ({ tokens: randomIds(documentTokens), sentenceStarts, keyPositions }));
  // Every document has the same candidates: its rows' tokens (without padding) are known before any is scored.
  const perKeyToken = keyPositions.map((pos) => candidateSegments(sentenceStarts, pos, o)).filter((c) => c.length > 0);
  const candidates = documents * perKeyToken.reduce((n, c) => n + c.length, 0);
  const rowTokens = documents * perKeyToken.reduce((n, c) => n + o.shortContext * (c.length + 1) + c.reduce((m, s) => m + s.end - s.start, 0), 0);
  let forwardPasses = 0;
  const stepSeconds = await secondsPerCall(async () => {
    forwardPasses = 0;
    for await (const pass of inSearchPasses(searches, o, (search) => search)) forwardPasses += (await findRelevantSegmentsOfDocuments(model, pass, o)).forwardPasses;
  }, 1, repeats);
  const length = o.shortContext + o.segmentTokens;
  const ids = tf.tensor2d(randomIds(o.batch * length), [o.batch, length], 'int32');
  const forwardSeconds = await secondsPerCall(async () => {
    const hidden = tf.tidy(() => model.hidden(ids).hidden);
    await settle(hidden);
    hidden.dispose();
  }, 1, repeats, stepSeconds * repeats); // timed over as long as the step was
  ids.dispose();
  const forwardTokensPerS = (o.batch * length) / forwardSeconds;
  const rowTokensPerS = rowTokens / stepSeconds;
  return {
    key_tokens: documents * keyTokens,
    candidates_per_key_token: candidates / (documents * keyTokens),
    forward_passes: forwardPasses,
    seconds_per_key_token: stepSeconds / (documents * keyTokens),
    row_tokens_per_s: rowTokensPerS,
    forward_tokens_per_s: forwardTokensPerS,
    cost_vs_forward: forwardTokensPerS / rowTokensPerS,
    batch: o.batch,
  };
}
