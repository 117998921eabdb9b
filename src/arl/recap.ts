/**
 * ARL step 3: recaps (methods.md section 2). Each relevant segment c* kept by step 2 is refined into
 * a short recap, the text that step 4 inserts as `<recap> ... </recap>` before the key token's
 * sentence. Key tokens sharing a segment share one recap, so there is one item per distinct
 * (doc, segment_start, segment_end).
 *
 * A recapper makes the recap text: an LLM given the prompt (recappers.ts: openai, llama-cpp), or the
 * extractive one, which needs no LLM. Every finished recap is appended to recaps.jsonl and flushed
 * at once, so a crash or Ctrl-C loses at most the calls in flight; a rerun skips the items done.
 * Recaps are also cached by a hash of (recapper, model, the exact input it reads, the cap): a
 * completed call is written to the cache before its item, so no completed call is ever made twice,
 * and a rerun into another output folder, or a repeated segment, reuses it. Items that still fail
 * after the client's retries go to recaps-failed.jsonl; a rerun retries them.
 */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { writeFileAtomic } from '../io/atomic.ts';
import { ChatError } from '../io/chat.ts';
import { UserError } from '../io/errors.ts';
import { readJsonLines } from '../io/jsonl.ts';
import type { Tokenizer } from '../tokenizer/sentencepiece.ts';
import { appendAndSync, type Settings } from './journal.ts';
import { KEY_TOKEN_FILES, type KeyTokenDocument } from './key-tokens.ts';
import { readKeyTokenSummary, SEGMENT_FILES, type SegmentRecord } from './relevant-segment.ts';
import { checkRunTokenizer, replaceRecapMarkers, segmentKey } from './run-folder.ts';

export const RECAPPERS = ['extractive', 'openai', 'llama-cpp'] as const;
export type RecapperName = (typeof RECAPPERS)[number];

export const RECAP_FILES = { records: 'recaps.jsonl', failed: 'recaps-failed.jsonl', summary: 'recaps-summary.json', cache: 'recap-cache.jsonl' };
export const DEFAULT_MAX_RECAP_TOKENS = 48;

/** One distinct segment of one document, with the key tokens that share it. */
export interface RecapItem {
  doc: string;
  segmentStart: number;
  segmentEnd: number;
  /** Key-token positions sharing the segment, ascending. */
  positions: number[];
  segmentText: string;
  /** The first key token's short context and the rest of its sentence: what the recap must help with. */
  followingText: string;
  /** The document's tokens and sentence starts (step 1's tokenization). */
  tokens: readonly number[];
  sentenceStarts: readonly number[];
  /** S, the short context of steps 1 and 2. */
  shortContext: number;
}

export interface Recapper {
  readonly name: RecapperName;
  /** Recorded in recaps.jsonl: the server's model name, the GGUF file name, or the checkpoint folder. */
  readonly model: string;
  /** What the cache keys on besides the input: the model name (server) or the sha256 of the model file. */
  readonly identity: string;
  /** sha256 of the prompt template, or null for a recapper without a prompt. */
  readonly promptSha256: string | null;
  /** Items worked on at once. */
  readonly concurrency: number;
  /** The exact input this recapper reads for `item` (the rendered prompt, or the tokens it scores). */
  input(item: RecapItem): string;
  /** The raw recap text; writeRecaps cleans and caps it. */
  recap(item: RecapItem, input: string): Promise<string>;
  dispose(): Promise<void>;
}

/** One line of recaps.jsonl. */
export interface RecapRecord {
  doc: string;
  segment_start: number;
  segment_end: number;
  positions: number[];
  segment_text: string;
  recap: string;
  recapper: RecapperName;
  model: string;
  cache_key: string;
}

/** One line of recaps-failed.jsonl. */
export interface RecapFailure {
  doc: string;
  segment_start: number;
  segment_end: number;
  error: string;
}

interface CacheLine {
  cache_key: string;
  recap: string;
}

// ---------------------------------------------------------------------------------------------
// The prompt

const PLACEHOLDER = /\{\{\s*([^{}]*?)\s*\}\}/g;
const REQUIRED_PLACEHOLDERS = ['segment', 'following'];
const OPTIONAL_PLACEHOLDERS = ['max_words'];

export const DEFAULT_PROMPT_FILE = new URL('../../data/prompts/recap.txt', import.meta.url).pathname;

export interface RecapPrompt {
  file: string;
  template: string;
  sha256: string;
}

/** Reads a prompt template: {{segment}} and {{following}} are required, {{max_words}} optional, anything else is an error. */
export function loadRecapPrompt(file = DEFAULT_PROMPT_FILE): RecapPrompt {
  const path = resolve(file);
  let template: string;
  try {
    template = readFileSync(path, 'utf8');
  } catch (err) {
    throw new UserError(`${path}: cannot read the recap prompt (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); pass --prompt FILE`);
  }
  const names = [...template.matchAll(PLACEHOLDER)].map((m) => m[1]);
  const known = [...REQUIRED_PLACEHOLDERS, ...OPTIONAL_PLACEHOLDERS];
  const unknown = names.find((name) => !known.includes(name));
  if (unknown !== undefined) throw new UserError(`${path}: unknown placeholder {{${unknown}}}; the prompt may use ${known.map((n) => `{{${n}}}`).join(', ')}`);
  const missing = REQUIRED_PLACEHOLDERS.find((name) => !names.includes(name));
  if (missing !== undefined) throw new UserError(`${path}: no {{${missing}}} placeholder; the prompt must show the earlier segment ({{segment}}) and the text that follows it ({{following}})`);
  return { file: path, template, sha256: createHash('sha256').update(template).digest('hex') };
}

/** Words asked of the LLM for a cap of `maxRecapTokens` tokens: about 1.5 of our tokens per English word, with room to spare. */
export function maxWordsFor(maxRecapTokens: number): number {
  return Math.max(1, Math.floor(maxRecapTokens / 1.6));
}

export function renderRecapPrompt(prompt: RecapPrompt, item: RecapItem, maxRecapTokens: number): string {
  const values: Record<string, string> = { segment: item.segmentText, following: item.followingText, max_words: String(maxWordsFor(maxRecapTokens)) };
  return prompt.template.replace(PLACEHOLDER, (_, name: string) => values[name]);
}

// ---------------------------------------------------------------------------------------------
// Cleaning and capping a recap

/** A reply that cannot be used as a recap (nothing left after cleaning). */
export class RecapRejected extends Error {}

const LABEL = /^(recap|summary)\s*:\s*/i;
/** A reply wholly in double quotes (and none inside). */
const QUOTED = /^(["“])([^"“”]*)(["”])$/;

/**
 * The recap as inserted into training text: markers and broken characters removed, whitespace
 * collapsed to single spaces, a leading "Recap:" label or enclosing quotes dropped, and at most
 * `maxTokens` tokens of our tokenizer, cut at the last sentence end in the second half of the cap
 * when there is one, else at a word boundary.
 */
export function capRecap(text: string, tokenizer: Tokenizer, maxTokens: number): string {
  // U+FFFD: bytes a model emitted that form no character (a cut multi-byte sequence).
  let clean = replaceRecapMarkers(text).replace(/\uFFFD/g, '').replace(/\s+/g, ' ').trim().replace(LABEL, '');
  const quoted = QUOTED.exec(clean);
  if (quoted) clean = quoted[2].trim();
  if (clean === '') throw new RecapRejected('the reply is empty once markers, labels and whitespace are removed');
  const ids = tokenizer.encode(clean);
  if (ids.length <= maxTokens) return clean;
  // Back up to a word boundary; only a single word longer than the cap is cut inside.
  let end = maxTokens;
  while (end > 1 && !cutsBetweenWords(tokenizer, ids, end)) end--;
  if (!cutsBetweenWords(tokenizer, ids, end)) end = maxTokens;
  const cut = tokenizer.decode(ids.slice(0, end)).trim();
  const sentenceEnd = Math.max(...['. ', '! ', '? '].map((mark) => cut.lastIndexOf(mark)));
  return sentenceEnd >= cut.length / 2 ? cut.slice(0, sentenceEnd + 1) : cut;
}

/** A SentencePiece byte-fallback piece: one byte of a character the vocabulary has no piece for. */
const BYTE_PIECE = /^<0x[0-9A-F]{2}>$/;

/** True when cutting `ids` just before index `k` keeps words whole: ids[k] starts a word, or a letter or digit meets something else. */
function cutsBetweenWords(tokenizer: Tokenizer, ids: readonly number[], k: number): boolean {
  const next = tokenizer.pieceOf(ids[k]);
  if (next.startsWith('\u2581')) return true;
  const previous = tokenizer.pieceOf(ids[k - 1]);
  if (BYTE_PIECE.test(next) || BYTE_PIECE.test(previous)) return false;
  return !/[\p{L}\p{N}]$/u.test(previous) || !/^[\p{L}\p{N}]/u.test(next);
}

export function cacheKey(recapper: Pick<Recapper, 'name' | 'identity'>, input: string, maxRecapTokens: number): string {
  return createHash('sha256').update(JSON.stringify([recapper.name, recapper.identity, maxRecapTokens, input])).digest('hex');
}

// ---------------------------------------------------------------------------------------------
// Items

/** The end of the sentence holding token `pos`. */
function sentenceEndAt(sentenceStarts: readonly number[], length: number, pos: number): number {
  return sentenceStarts.find((start) => start > pos) ?? length;
}

/** One item per distinct segment of each document, in document order, then segment order. */
export function groupRecapItems(segments: SegmentRecord[], documents: Map<string, KeyTokenDocument>, shortContext: number, tokenizer: Tokenizer, where: string): RecapItem[] {
  const items = new Map<string, RecapItem>();
  for (const s of segments) {
    const key = segmentKey(s.doc, s.segment_start, s.segment_end);
    const item = items.get(key);
    if (item) {
      item.positions.push(s.pos);
      continue;
    }
    const document = documents.get(s.doc);
    if (!document) throw new UserError(`${where}: document ${JSON.stringify(s.doc)} of segments.jsonl is not in ${KEY_TOKEN_FILES.documents}; rerun \`arl segments\` on this folder`);
    items.set(key, {
      doc: s.doc,
      segmentStart: s.segment_start,
      segmentEnd: s.segment_end,
      positions: [s.pos],
      segmentText: s.segment_text,
      followingText: '',
      tokens: document.tokens,
      sentenceStarts: document.sentence_starts,
      shortContext,
    });
  }
  const grouped = [...items.values()];
  for (const item of grouped) {
    item.positions.sort((a, b) => a - b);
    const first = item.positions[0];
    item.followingText = tokenizer.decode(item.tokens.slice(first - shortContext, sentenceEndAt(item.sentenceStarts, item.tokens.length, first))).trim();
  }
  return grouped;
}

// ---------------------------------------------------------------------------------------------
// The run

export interface RecapRun {
  recapper: Recapper;
  tokenizer: Tokenizer;
  /** Output folder of step 1 (documents.jsonl, summary.json). */
  keyTokensDir: string;
  /** Output folder of step 2 (default: keyTokensDir). */
  segmentsDir?: string;
  /** Where recaps.jsonl goes (default: segmentsDir). */
  outDir?: string;
  /** The recap cache (default: recap-cache.jsonl in keyTokensDir, so other output folders share it). */
  cacheFile?: string;
  maxRecapTokens: number;
  onProgress?: (p: RecapProgress) => void;
  /** Called once per item that failed after the client's retries. */
  onFailure?: (failure: RecapFailure) => void;
}

export interface RecapProgress {
  /** Items done (recaps.jsonl lines), of total. */
  done: number;
  total: number;
  /** Recaps made by a call in this run. */
  made: number;
  /** Recaps of this run taken from the cache. */
  cached: number;
  failed: number;
}

export interface RecapTotals {
  /** Distinct segments with text (items), the key tokens of step 2's output, and segments skipped for holding only whitespace. */
  items: number;
  key_tokens: number;
  blank_segments: number;
  /** recaps.jsonl lines now. */
  recaps: number;
  /** Done by an earlier run into the same folder. */
  resumed: number;
  made: number;
  cached: number;
  failed: RecapFailure[];
}

/** Opens an append-only JSON-lines file after dropping a line cut off by an interrupted write; returns its records and fd. */
function openAppendLog<T>(file: string): { records: T[]; fd: number } {
  const records = readJsonLines<T>(file);
  const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
  if (text !== '' && !text.endsWith('\n')) writeFileAtomic(file, records.map((r) => `${JSON.stringify(r)}\n`).join(''));
  return { records, fd: openSync(file, 'a') };
}

function checkSettings(file: string, settings: Settings, outDir: string): void {
  if (!existsSync(file)) return;
  let previous: Settings;
  try {
    previous = JSON.parse(readFileSync(file, 'utf8')) as Settings;
  } catch {
    throw new UserError(`${file}: not valid JSON; delete it to start over`);
  }
  for (const [key, value] of Object.entries(settings)) {
    if (previous[key] !== value) {
      throw new UserError(`${outDir}: holds recaps made with ${key} ${JSON.stringify(previous[key])}, not ${JSON.stringify(value)}; pass another --out or delete ${RECAP_FILES.records} there`);
    }
  }
}

/** Makes a recap for every distinct segment of step 2's output that has none yet (see the file comment). */
export async function writeRecaps(run: RecapRun): Promise<RecapTotals> {
  const { recapper, tokenizer, maxRecapTokens } = run;
  const keyTokensDir = resolve(run.keyTokensDir);
  const segmentsDir = resolve(run.segmentsDir ?? keyTokensDir);
  const outDir = resolve(run.outDir ?? segmentsDir);
  const summary = readKeyTokenSummary(keyTokensDir);
  checkRunTokenizer(keyTokensDir, summary.tokenizer, tokenizer, 'key tokens were made', 'pass --checkpoint or --tokenizer with the tokenizer step 1 used');
  if (!existsSync(join(segmentsDir, SEGMENT_FILES.summary))) {
    throw new UserError(`${segmentsDir}: no ${SEGMENT_FILES.summary}; run \`arl segments --keytokens ${keyTokensDir}\` first (or rerun it to finish an interrupted run)`);
  }
  const segmentsFile = join(segmentsDir, SEGMENT_FILES.records);
  const segments = readJsonLines<SegmentRecord>(segmentsFile);
  const wanted = new Set(segments.map((s) => s.doc));
  const documents = new Map<string, KeyTokenDocument>();
  for (const d of readJsonLines<KeyTokenDocument>(join(keyTokensDir, KEY_TOKEN_FILES.documents))) if (wanted.has(d.doc)) documents.set(d.doc, d);
  const grouped = groupRecapItems(segments, documents, Number(summary.S), tokenizer, segmentsFile);
  // A segment of only whitespace (e.g. a paragraph break cut by the short context) has nothing to recap.
  const items = grouped.filter((item) => item.segmentText.trim() !== '');

  const settings: Settings = { segments: segmentsDir, recapper: recapper.name, model: recapper.identity, prompt_sha256: recapper.promptSha256, max_recap_tokens: maxRecapTokens };
  const summaryFile = join(outDir, RECAP_FILES.summary);
  checkSettings(summaryFile, settings, outDir);
  mkdirSync(outDir, { recursive: true });
  writeFileAtomic(summaryFile, `${JSON.stringify({ finished: false, ...settings }, null, 2)}\n`);

  const recapsLog = openAppendLog<RecapRecord>(join(outDir, RECAP_FILES.records));
  const cacheFile = resolve(run.cacheFile ?? join(keyTokensDir, RECAP_FILES.cache));
  mkdirSync(dirname(cacheFile), { recursive: true });
  const cacheLog = openAppendLog<CacheLine>(cacheFile);
  const cache = new Map<string, string>();
  for (const line of [...cacheLog.records, ...recapsLog.records]) cache.set(line.cache_key, line.recap);
  const done = new Set(recapsLog.records.map((r) => segmentKey(r.doc, r.segment_start, r.segment_end)));
  const pending = items.filter((item) => !done.has(segmentKey(item.doc, item.segmentStart, item.segmentEnd)));

  const progress: RecapProgress = { done: items.length - pending.length, total: items.length, made: 0, cached: 0, failed: 0 };
  const resumed = progress.done;
  const failures: RecapFailure[] = [];
  /** Calls in flight by cache key, so a repeated input waits for the call already made. */
  const inFlight = new Map<string, Promise<string>>();
  let stop: unknown = null;

  const makeRecap = async (item: RecapItem, input: string, key: string): Promise<string> => {
    const recap = capRecap(await recapper.recap(item, input), tokenizer, maxRecapTokens);
    appendAndSync(cacheLog.fd, [{ cache_key: key, recap, recapper: recapper.name, model: recapper.model }]);
    cache.set(key, recap);
    progress.made++;
    return recap;
  };

  const recapItem = async (item: RecapItem): Promise<void> => {
    const input = recapper.input(item);
    const key = cacheKey(recapper, input, maxRecapTokens);
    let recap = cache.get(key);
    if (recap === undefined) {
      let call = inFlight.get(key);
      const waited = call !== undefined;
      if (!call) {
        call = makeRecap(item, input, key).finally(() => inFlight.delete(key));
        inFlight.set(key, call);
      }
      try {
        recap = await call;
      } catch (err) {
        if ((err instanceof ChatError && !err.fatal) || err instanceof RecapRejected) {
          const failure = { doc: item.doc, segment_start: item.segmentStart, segment_end: item.segmentEnd, error: (err as Error).message };
          failures.push(failure);
          progress.failed++;
          run.onFailure?.(failure);
          run.onProgress?.({ ...progress });
          return;
        }
        stop ??= err;
        return;
      }
      if (waited) progress.cached++;
    } else {
      progress.cached++;
    }
    const record: RecapRecord = {
      doc: item.doc,
      segment_start: item.segmentStart,
      segment_end: item.segmentEnd,
      positions: item.positions,
      segment_text: item.segmentText,
      recap,
      recapper: recapper.name,
      model: recapper.model,
      cache_key: key,
    };
    appendAndSync(recapsLog.fd, [record]);
    progress.done++;
    run.onProgress?.({ ...progress });
  };

  try {
    let next = 0;
    const worker = async (): Promise<void> => {
      while (stop === null && next < pending.length) await recapItem(pending[next++]);
    };
    await Promise.all(Array.from({ length: Math.max(1, recapper.concurrency) }, worker));
  } finally {
    closeSync(recapsLog.fd);
    closeSync(cacheLog.fd);
  }
  if (stop !== null) {
    if (stop instanceof ChatError) throw new UserError(`${stop.message}; the ${progress.done} recaps done so far are kept, rerun to continue`);
    throw stop;
  }

  const failedFile = join(outDir, RECAP_FILES.failed);
  if (failures.length > 0) writeFileAtomic(failedFile, failures.map((f) => `${JSON.stringify(f)}\n`).join(''));
  else rmSync(failedFile, { force: true });
  const totals: RecapTotals = {
    items: items.length,
    key_tokens: segments.length,
    blank_segments: grouped.length - items.length,
    recaps: progress.done,
    resumed,
    made: progress.made,
    cached: progress.cached,
    failed: failures,
  };
  const { failed: _, ...counts } = totals;
  writeFileAtomic(summaryFile, `${JSON.stringify({ finished: failures.length === 0, ...counts, failed: failures.length, ...settings }, null, 2)}\n`);
  return totals;
}
