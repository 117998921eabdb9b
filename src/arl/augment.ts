/**
 * ARL step 4, the data for continued pretraining (methods.md section 2): each recap goes into its
 * document as `<recap>` + recap + `</recap>` at the sentence boundary before the sentence holding
 * the first key token that uses it, so the model learns to write a recap of earlier content right
 * before it needs it. Key tokens sharing a segment share one recap (recaps.jsonl has one line per
 * segment); a document takes at most `maxRecapsPerDoc`, those of highest gain.
 *
 * Token sequences are built by splicing the recap's tokens into the document's own tokens
 * (documents.jsonl, the tokenization steps 1-3 used), so the markers are always the single ids
 * `<recap>` / `</recap>` and the original tokens are untouched; augmented.jsonl holds the same
 * sequences decoded as text. The shards mix augmented and original documents (see `mix`).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { writeFileAtomic } from '../io/atomic.ts';
import { UserError } from '../io/errors.ts';
import { type JsonLine, readJsonLines, readJsonObjects } from '../io/jsonl.ts';
import { makeRng, shuffleInPlace } from '../core/random.ts';
import { DEFAULT_VAL_FRACTION, writePrepared } from '../data/prepare.ts';
import type { SplitInfo } from '../data/format.ts';
import type { Tokenizer } from '../tokenizer/sentencepiece.ts';
import { KEY_TOKEN_FILES, type KeyTokenDocument } from './key-tokens.ts';
import { mergeOutDir, readKeyTokenInputs } from './merge-shards.ts';
import { readKeyTokenSummary, SEGMENT_FILES, type SegmentRecord } from './relevant-segment.ts';
import { checkRunTokenizer, replaceRecapMarkers, segmentKey } from './run-folder.ts';

/** recaps.jsonl (step 3), as far as augmenting reads it. */
export const RECAP_FILE = 'recaps.jsonl';

export const AUGMENT_FILES = { records: 'augmented.jsonl', summary: 'augment-summary.json', prepared: 'augmented-data' };

export interface AugmentOptions {
  /** Recaps kept per document, highest gain first. */
  maxRecapsPerDoc: number;
  /**
   * Target share of augmented documents among all documents written to the shards. Every document
   * of the corpus is written once, with its recaps or without; round(mix * documents) of those that
   * have recaps are chosen (seeded) to carry them, or all of them when fewer have recaps.
   */
  mix: number;
  /** Seeds the choice of augmented documents and the train/val split (by document id). */
  seed: number;
  /** Expected share of documents in the val split, as in `arl prepare`. */
  valFraction: number;
}

export const DEFAULT_AUGMENT: AugmentOptions = { maxRecapsPerDoc: 4, mix: 0.5, seed: 0, valFraction: DEFAULT_VAL_FRACTION };

export function validateAugmentOptions(o: AugmentOptions): void {
  if (!Number.isInteger(o.maxRecapsPerDoc) || o.maxRecapsPerDoc < 1) throw new UserError(`--max-recaps-per-doc must be a positive integer (got ${o.maxRecapsPerDoc})`);
  if (!(o.mix >= 0 && o.mix <= 1)) throw new UserError(`--mix must be in [0, 1], the share of augmented documents (got ${o.mix})`);
  if (!Number.isSafeInteger(o.seed)) throw new UserError(`--seed must be an integer (got ${o.seed})`);
  if (!(o.valFraction >= 0 && o.valFraction < 1)) throw new UserError(`--val-fraction must be in [0, 1) (got ${o.valFraction})`);
}

/** One recap as step 3 wrote it (the fields augmenting uses). */
export interface Recap {
  doc: string;
  segment_start: number;
  segment_end: number;
  /** Key-token positions sharing the recap, ascending. */
  positions: number[];
  recap: string;
}

/** A recap placed in its document. */
export interface PlacedRecap extends Recap {
  /** Token offset in the original document where `<recap>` goes: the start of the first key token's sentence. */
  at: number;
  /** Sum of the step-2 gains (nats) of the key tokens sharing the recap. */
  gain: number;
}

/** Why a recap was not inserted. */
export type Dropped = 'no_boundary' | 'empty' | 'over_cap';

/**
 * Where each recap goes and which are kept. A recap goes at the start of the sentence holding its
 * first key token, which must not lie before the end of the recapped segment (else the recap would
 * come ahead of what it summarises); recaps whose text is empty once any marker strings are taken
 * out are dropped; then the `cap` of highest gain are kept (ties: earlier segment first).
 */
export function placeRecaps(document: Pick<KeyTokenDocument, 'sentence_starts'>, recaps: readonly (Recap & { gain: number })[], cap: number): { placed: PlacedRecap[]; dropped: Record<Dropped, number> } {
  const dropped: Record<Dropped, number> = { no_boundary: 0, empty: 0, over_cap: 0 };
  const candidates: PlacedRecap[] = [];
  for (const recap of recaps) {
    const first = recap.positions[0];
    let at = -1;
    for (const start of document.sentence_starts) if (start <= first) at = start;
    const text = cleanRecap(recap.recap);
    if (at < recap.segment_end || at < 1) dropped.no_boundary++;
    else if (text === '') dropped.empty++;
    else candidates.push({ ...recap, recap: text, at });
  }
  candidates.sort((a, b) => b.gain - a.gain || a.segment_start - b.segment_start || a.segment_end - b.segment_end);
  dropped.over_cap = Math.max(0, candidates.length - cap);
  const placed = candidates.slice(0, cap).sort((a, b) => a.at - b.at || a.segment_start - b.segment_start || a.segment_end - b.segment_end);
  return { placed, dropped };
}

/** Recap text as inserted: marker strings removed (they would end the recap early) and whitespace collapsed. */
export function cleanRecap(text: string): string {
  return replaceRecapMarkers(text).replace(/\s+/g, ' ').trim();
}

/**
 * The document's tokens with `<recap>` + encode(recap) + `</recap>` spliced in before token `at` of each placed
 * recap, and each token's lookback (format.ts): for the tokens of a recap, markers included, the distance back to
 * the start of its segment; 0 for the document's own tokens.
 */
export function insertRecaps(tokens: readonly number[], placed: readonly PlacedRecap[], tokenizer: Tokenizer): { tokens: number[]; lookback: number[] } {
  const out: number[] = [];
  const lookback: number[] = [];
  /** Where each original token landed in `out`. */
  const moved = new Int32Array(tokens.length);
  let next = 0;
  const copyUpTo = (end: number): void => {
    for (; next < end; next++) {
      moved[next] = out.length;
      out.push(tokens[next]);
      lookback.push(0);
    }
  };
  for (const recap of placed) {
    copyUpTo(recap.at);
    const segmentStart = moved[recap.segment_start]; // segment_start < at, so it is in place already
    for (const id of [tokenizer.recapOpenId, ...tokenizer.encode(recap.recap), tokenizer.recapCloseId]) {
      lookback.push(out.length - segmentStart);
      out.push(id);
    }
  }
  copyUpTo(tokens.length);
  return { tokens: out, lookback };
}

/** One line of augmented.jsonl: a document that has at least one recap to insert. */
export interface AugmentedRecord {
  doc: string;
  /** The augmented document as text, recaps between literal `<recap>` and `</recap>`. */
  text: string;
  /** Whether the mix put this augmented version in the shards (else the original went in). */
  in_shards: boolean;
  recaps: { at: number; segment_start: number; segment_end: number; positions: number[]; gain: number; recap: string }[];
}

export interface AugmentTotals {
  documents: number;
  documents_with_recaps: number;
  /** Documents written with their recaps; the rest of `documents` went in as they were. */
  augmented_documents: number;
  augmented_share: number;
  recaps_read: number;
  recaps_inserted: number;
  recaps_dropped_no_boundary: number;
  recaps_dropped_empty: number;
  recaps_dropped_over_cap: number;
  /** Tokens in the shards, and how many of them are recap tokens (markers included). */
  tokens: number;
  recap_tokens: number;
  /**
   * Tokens from the start of each inserted recap's segment to the end of the recap: a recap is trained only in rows
   * that hold all of it (the loader weighs the rest 0), so rows shorter than this never teach it.
   */
  recap_reach: { median: number | null; max: number | null };
  train: Omit<SplitInfo, 'shards'>;
  val: Omit<SplitInfo, 'shards'>;
}

export interface AugmentRun {
  tokenizer: Tokenizer;
  /** Folder of steps 1-3 (documents.jsonl, segments.jsonl, recaps.jsonl), or all the shard folders of a `--shard` run, merged. */
  keyTokensDir: string | readonly string[];
  /** Where augmented.jsonl, the summary and the shard folder go (default: keyTokensDir; for shard folders, the folder holding them). */
  outDir?: string;
  /** How the summary and the prepared data name the input (default: the input folders), e.g. the folder a merge of shards stands for. */
  source?: string;
  options: AugmentOptions;
}

function positiveIntegers(line: JsonLine, name: string): number[] {
  const value = line.fields[name];
  if (!Array.isArray(value) || value.length === 0 || !value.every((v, i) => Number.isInteger(v) && v > 0 && (i === 0 || v > value[i - 1]))) {
    throw new UserError(`${line.where}: field "${name}" must be a non-empty ascending array of positive integers; rerun \`arl recaps\``);
  }
  return value as number[];
}

/** The recaps.jsonl files grouped by document, checked against the documents' lengths; a repeated segment is read once. */
async function readRecaps(files: readonly string[], documents: Map<string, KeyTokenDocument>): Promise<{ byDoc: Map<string, Recap[]>; count: number }> {
  const missing = files.find((file) => !existsSync(file));
  if (missing !== undefined) throw new UserError(`${missing}: missing; run \`arl recaps\` first`);
  const byDoc = new Map<string, Recap[]>();
  const seen = new Set<string>();
  let count = 0;
  for (const file of files) for await (const line of readJsonObjects(file)) {
    const { doc, segment_start: start, segment_end: end, recap } = line.fields;
    if (typeof doc !== 'string' || !documents.has(doc)) throw new UserError(`${line.where}: document ${JSON.stringify(doc)} is not in ${KEY_TOKEN_FILES.documents}; the recaps belong to another run, rerun \`arl recaps\``);
    if (typeof recap !== 'string') throw new UserError(`${line.where}: field "recap" must be a string; rerun \`arl recaps\``);
    const positions = positiveIntegers(line, 'positions');
    const length = documents.get(doc)!.tokens.length;
    if (!Number.isInteger(start) || !Number.isInteger(end) || (start as number) < 0 || (end as number) <= (start as number) || positions.at(-1)! >= length) {
      throw new UserError(`${line.where}: segment ${start}-${end} or key positions outside document ${doc} (${length} tokens); rerun \`arl recaps\``);
    }
    const key = segmentKey(doc, start as number, end as number);
    if (seen.has(key)) continue;
    seen.add(key);
    count++;
    const forDoc = byDoc.get(doc) ?? [];
    forDoc.push({ doc, segment_start: start as number, segment_end: end as number, positions, recap });
    byDoc.set(doc, forDoc);
  }
  return { byDoc, count };
}

/** Sum of the step-2 gains of each recap's key tokens, keyed like readRecaps. */
function segmentGains(dirs: readonly string[]): Map<string, number> {
  const gains = new Map<string, number>();
  for (const dir of dirs) {
    const file = join(dir, SEGMENT_FILES.records);
    if (!existsSync(file)) throw new UserError(`${file}: missing; run \`arl segments --keytokens ${dir}\` first`);
    for (const r of readJsonLines<SegmentRecord>(file)) {
      const key = segmentKey(r.doc, r.segment_start, r.segment_end);
      gains.set(key, (gains.get(key) ?? 0) + r.gain);
    }
  }
  return gains;
}

/** Seeded choice of which documents with recaps carry them: round(mix * total) of them, or all. */
function chooseAugmented(withRecaps: string[], total: number, o: AugmentOptions): Set<string> {
  const order = shuffleInPlace(makeRng(o.seed), [...withRecaps]);
  return new Set(order.slice(0, Math.min(order.length, Math.round(o.mix * total))));
}

/**
 * Writes augmented.jsonl, augment-summary.json and a prepared-data folder (`arl train --data`) from a
 * folder of steps 1-3. The output depends only on the inputs and options, and every file is replaced
 * atomically, so a rerun (after a crash, or to change the options) gives the same result as one run.
 */
export async function augmentDocuments(run: AugmentRun): Promise<AugmentTotals> {
  const { tokenizer, options } = run;
  validateAugmentOptions(options);
  const inputs = readKeyTokenInputs(typeof run.keyTokensDir === 'string' ? [run.keyTokensDir] : run.keyTokensDir);
  const { dirs, summary } = inputs;
  const source = run.source ?? dirs.join(', ');
  const outDir = augmentOutDir(dirs, run.outDir);
  checkRunTokenizer(dirs[0], summary.tokenizer, tokenizer, 'documents were tokenized', 'pass --tokenizer with the one step 1 used');
  const documents = new Map(inputs.documents.map((d) => [d.doc, d]));
  if (documents.size !== inputs.documents.length) throw new UserError(`${source}: a document id appears twice; the corpus needs unique document ids`);
  const { byDoc, count } = await readRecaps(dirs.map((dir) => join(dir, RECAP_FILE)), documents);
  const gains = segmentGains(dirs);

  const totals = { recaps_read: count, recaps_inserted: 0, recaps_dropped_no_boundary: 0, recaps_dropped_empty: 0, recaps_dropped_over_cap: 0, tokens: 0, recap_tokens: 0 };
  const placedByDoc = new Map<string, PlacedRecap[]>();
  for (const [doc, recaps] of byDoc) {
    const withGain = recaps.map((r) => ({ ...r, gain: gains.get(segmentKey(doc, r.segment_start, r.segment_end)) ?? 0 }));
    const { placed, dropped } = placeRecaps(documents.get(doc)!, withGain, options.maxRecapsPerDoc);
    totals.recaps_dropped_no_boundary += dropped.no_boundary;
    totals.recaps_dropped_empty += dropped.empty;
    totals.recaps_dropped_over_cap += dropped.over_cap;
    if (placed.length > 0) placedByDoc.set(doc, placed);
  }
  const withRecaps = [...documents.keys()].filter((doc) => placedByDoc.has(doc));
  const augmented = chooseAugmented(withRecaps, documents.size, options);

  const records: AugmentedRecord[] = [];
  const reaches: number[] = [];
  const shardDocuments = [...documents.values()].map((document) => {
    const placed = placedByDoc.get(document.doc);
    const { tokens, lookback } = placed ? insertRecaps(document.tokens, placed, tokenizer) : { tokens: document.tokens, lookback: undefined };
    if (placed) {
      records.push({
        doc: document.doc,
        text: tokenizer.decode(tokens),
        in_shards: augmented.has(document.doc),
        recaps: placed.map((p) => ({ at: p.at, segment_start: p.segment_start, segment_end: p.segment_end, positions: p.positions, gain: Math.round(p.gain * 1e6) / 1e6, recap: p.recap })),
      });
    }
    if (!augmented.has(document.doc)) {
      totals.tokens += document.tokens.length + 1;
      return { id: document.doc, tokens: [...document.tokens, tokenizer.eosId] };
    }
    totals.recaps_inserted += placed!.length;
    totals.recap_tokens += tokens.length - document.tokens.length;
    totals.tokens += tokens.length + 1;
    // A recap's reach is its closing marker's lookback: a training row shorter than that never trains it.
    for (let i = 0; i < tokens.length; i++) if (tokens[i] === tokenizer.recapCloseId && lookback![i] > 0) reaches.push(lookback![i]);
    return { id: document.doc, tokens: [...tokens, tokenizer.eosId], lookback: [...lookback!, 0] };
  });
  reaches.sort((a, b) => a - b);

  const meta = await writePrepared(shardDocuments, {
    tokenizer,
    outDir: join(outDir, AUGMENT_FILES.prepared),
    source: `${source} (ARL augmented, mix ${options.mix})`,
    valFraction: options.valFraction,
    seed: options.seed,
    lookback: true,
  });
  writeFileAtomic(join(outDir, AUGMENT_FILES.records), records.map((r) => `${JSON.stringify(r)}\n`).join(''));
  const split = (s: SplitInfo): Omit<SplitInfo, 'shards'> => ({ tokens: s.tokens, docs: s.docs });
  const result: AugmentTotals = {
    documents: documents.size,
    documents_with_recaps: withRecaps.length,
    augmented_documents: augmented.size,
    augmented_share: documents.size > 0 ? augmented.size / documents.size : 0,
    ...totals,
    recap_reach: { median: reaches.length > 0 ? reaches[reaches.length >> 1] : null, max: reaches.at(-1) ?? null },
    train: split(meta.splits.train),
    val: split(meta.splits.val),
  };
  const settings = { keytokens: source, tokenizer: tokenizer.sha256, max_recaps_per_doc: options.maxRecapsPerDoc, mix: options.mix, seed: options.seed, val_fraction: options.valFraction };
  writeFileAtomic(join(outDir, AUGMENT_FILES.summary), `${JSON.stringify({ ...result, ...settings }, null, 2)}\n`);
  return result;
}

/** Where step 4 writes: `outDir`, else the one folder of steps 1-3, else the folder holding all the shard folders. */
export function augmentOutDir(keyTokensDirs: readonly string[], outDir?: string): string {
  if (outDir !== undefined) return resolve(outDir);
  if (keyTokensDirs.length === 1) return resolve(keyTokensDirs[0]);
  const parent = mergeOutDir(keyTokensDirs);
  if (parent === null) throw new UserError(`the shard folders ${keyTokensDirs.join(', ')} are not side by side in one folder; pass --out for the merged output`);
  return parent;
}

/** The tokenizer step 1 used: `given`, else the checkpoint's tokenizer.model, else null (the caller falls back to the bundled one). */
export function keyTokenTokenizerPath(dir: string, given?: string): string | null {
  if (given) return given;
  const checkpoint = readKeyTokenSummary(resolve(dir)).checkpoint;
  const path = typeof checkpoint === 'string' ? join(checkpoint, 'tokenizer.model') : '';
  return path && existsSync(path) ? path : null;
}

/** Reads a finished augment summary, or null when there is none. */
export function readAugmentSummary(outDir: string): (AugmentTotals & Record<string, unknown>) | null {
  const file = join(outDir, AUGMENT_FILES.summary);
  return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as AugmentTotals & Record<string, unknown>) : null;
}
