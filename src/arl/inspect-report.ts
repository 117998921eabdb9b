/**
 * `arl inspect`: one self-contained HTML page (inline CSS and a few lines of script, nothing fetched)
 * showing what ARL found in a corpus. Each document's text with its key tokens highlighted on a
 * colour scale of their long-short gap (LSG; hover: long and short log-probs), each key token
 * linked to its retrieved segment (hover lights the segment up, click jumps to it), and the recaps
 * shown inline where `arl augment` inserts them (before the first key token's sentence).
 * The index marks the documents with segments and those with recaps, and a select shows only those.
 * Steps 2 and 3 are optional: without segments.jsonl / recaps.jsonl the page shows what exists.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../io/errors.ts';
import { readJsonLines } from '../io/jsonl.ts';
import type { Tokenizer } from '../tokenizer/sentencepiece.ts';
import { placeRecaps } from './augment.ts';
import { KEY_TOKEN_FILES, type KeyTokenDocument, type KeyTokenRecord, type KeyTokenSummary } from './key-tokens.ts';
import { RECAP_FILES, type RecapRecord } from './recap.ts';
import { SEGMENT_FILES, type SegmentRecord } from './relevant-segment.ts';

export interface InspectInput {
  summary: KeyTokenSummary;
  documents: KeyTokenDocument[];
  keyTokens: KeyTokenRecord[];
  segments: SegmentRecord[];
  recaps: RecapRecord[];
  /** Where the inputs were read from, for the page's header. */
  sources: { keyTokens: string; segments: string | null; recaps: string | null };
}

/** Reads the step outputs; segments and recaps are optional (null folders, or files not there). */
export function readInspectInput(keyTokensDir: string, summary: KeyTokenSummary, segmentsDir: string, recapsDir: string): InspectInput {
  const documentsFile = join(keyTokensDir, KEY_TOKEN_FILES.documents);
  if (!existsSync(documentsFile)) throw new UserError(`${keyTokensDir}: no ${KEY_TOKEN_FILES.documents}; run \`arl keytokens --out ${keyTokensDir}\` to the end first`);
  const segmentsFile = join(segmentsDir, SEGMENT_FILES.records);
  const recapsFile = join(recapsDir, RECAP_FILES.records);
  return {
    summary,
    documents: readJsonLines<KeyTokenDocument>(documentsFile),
    keyTokens: readJsonLines<KeyTokenRecord>(join(keyTokensDir, KEY_TOKEN_FILES.records)),
    segments: readJsonLines<SegmentRecord>(segmentsFile),
    recaps: readJsonLines<RecapRecord>(recapsFile),
    sources: { keyTokens: keyTokensDir, segments: existsSync(segmentsFile) ? segmentsFile : null, recaps: existsSync(recapsFile) ? recapsFile : null },
  };
}

function escapeHtml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&#39;' })[c]!);
}

const BYTE_PIECE = /^<0x([0-9A-Fa-f]{2})>$/;

/**
 * The text each token stands for: pieces with the word-boundary marker as a space, control tokens
 * as nothing, and runs of byte pieces decoded together (a multi-byte character shows on the run's
 * last token).
 */
export function tokenSurfaces(tokenizer: Tokenizer, ids: readonly number[]): string[] {
  const out: string[] = [];
  let bytes: number[] = [];
  const flushBytes = (): void => {
    if (bytes.length === 0) return;
    out[out.length - 1] = new TextDecoder().decode(new Uint8Array(bytes));
    bytes = [];
  };
  for (const id of ids) {
    const { piece, type } = tokenizer.vocabulary[id] ?? { piece: '', type: 0 };
    const byte = BYTE_PIECE.exec(piece);
    if (!byte) flushBytes();
    if (byte) {
      bytes.push(parseInt(byte[1], 16));
      out.push('');
    } else if (type === 3) out.push(''); // control: BOS, EOS
    else out.push(piece.replace(/\u2581/g, ' '));
  }
  flushBytes();
  return out;
}

/** Background colour of a key token with gap `lsg` on a scale whose top is `maxLsg`: pale yellow to deep red. */
export function lsgColour(lsg: number, maxLsg: number): string {
  const t = maxLsg > 0 ? Math.min(1, Math.max(0, lsg / maxLsg)) : 1;
  return `hsl(${Math.round(55 - 55 * t)}, 100%, ${Math.round(82 - 32 * t)}%)`;
}

const fmt = (v: number | null | undefined, digits = 3): string => (v === null || v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(digits));

const STYLE = `
body { font: 15px/1.5 Georgia, serif; margin: 2em auto; max-width: 60em; padding: 0 1em; color: #222; }
h1, h2, .summary, .legend, nav, .doc-stats, dl { font-family: system-ui, sans-serif; }
h2 { font-size: 1.1em; margin-top: 2em; border-bottom: 1px solid #ccc; }
.summary span { font-weight: bold; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 0 1em; font-size: 0.85em; color: #555; }
dt { font-weight: bold; }
.legend .bar { display: inline-block; width: 12em; height: 0.9em; vertical-align: middle; background: linear-gradient(to right, ${lsgColour(0, 1)}, ${lsgColour(0.5, 1)}, ${lsgColour(1, 1)}); }
nav { font-size: 0.85em; columns: 3; }
nav div { break-inside: avoid; }
.filter { font-family: system-ui, sans-serif; font-size: 0.85em; }
.mark { font-size: 0.8em; border-radius: 2px; padding: 0 0.25em; margin-left: 0.2em; }
.mark-segments { border: 1px dotted #39c; color: #39c; }
.mark-recaps { border: 1px solid #7b7; color: #393; }
.doc-stats { font-size: 0.85em; color: #555; }
.text { white-space: pre-wrap; }
.key { border-radius: 2px; color: #000; text-decoration: none; outline: 1px solid #0003; }
.seg { border-bottom: 2px dotted #39c; }
.seg.active { background: #bde4ff; }
.key.active-key { outline: 2px solid #039; }
.recap { background: #e9f7e9; border: 1px solid #7b7; border-radius: 3px; padding: 0 0.3em; font-family: system-ui, sans-serif; font-size: 0.9em; }
.recap::before { content: '<recap> '; color: #393; }
.recap::after { content: ' </recap>'; color: #393; }
`;

const SCRIPT = `
const filter = document.getElementById('doc-filter');
const showDocuments = () => {
  let shown = 0;
  for (const entry of document.querySelectorAll('nav [data-doc-index]')) {
    const show = filter.value === 'all' || entry.dataset.has.split(' ').includes(filter.value);
    entry.hidden = !show;
    document.getElementById('doc-' + entry.dataset.docIndex).hidden = !show;
    if (show) shown++;
  }
  document.getElementById('doc-filter-shown').textContent = shown;
};
filter.addEventListener('change', showDocuments);
showDocuments();
for (const key of document.querySelectorAll('.key[data-segment]')) {
  const parts = () => document.querySelectorAll('.' + key.dataset.segment);
  key.addEventListener('mouseenter', () => { key.classList.add('active-key'); parts().forEach((p) => p.classList.add('active')); });
  key.addEventListener('mouseleave', () => { key.classList.remove('active-key'); parts().forEach((p) => p.classList.remove('active')); });
}
`;

interface DocumentCounts {
  keyTokens: number;
  segments: number;
  recapsInline: number;
}

/** One document's text with key tokens, segments and inline recaps. */
function renderDocument(
  index: number,
  document: KeyTokenDocument,
  keyTokens: KeyTokenRecord[],
  segments: SegmentRecord[],
  recaps: RecapRecord[],
  tokenizer: Tokenizer,
  maxLsg: number,
): { html: string; counts: DocumentCounts } {
  const surfaces = tokenSurfaces(tokenizer, document.tokens);
  const segmentIds = new Map<string, string>();
  for (const s of segments) {
    const key = `${s.segment_start}:${s.segment_end}`;
    if (!segmentIds.has(key)) segmentIds.set(key, `seg-${index}-${segmentIds.size}`);
  }
  const segmentOfKey = new Map(segments.map((s) => [s.pos, s]));
  const keyAt = new Map(keyTokens.map((k) => [k.pos, k]));
  // Segment classes per token, and the anchor opening each segment.
  const classesAt: string[][] = document.tokens.map(() => []);
  const anchorsAt = new Map<number, string[]>();
  for (const [key, id] of segmentIds) {
    const [start, end] = key.split(':').map(Number);
    for (let t = start; t < end && t < classesAt.length; t++) classesAt[t].push(id);
    anchorsAt.set(start, [...(anchorsAt.get(start) ?? []), id]);
  }
  const gainOf = (r: RecapRecord): number => r.positions.reduce((sum, p) => sum + (segmentOfKey.get(p)?.gain ?? 0), 0);
  const { placed } = placeRecaps(document, recaps.map((r) => ({ ...r, gain: gainOf(r) })), Number.POSITIVE_INFINITY);
  const recapsAt = new Map<number, typeof placed>();
  for (const r of placed) recapsAt.set(r.at, [...(recapsAt.get(r.at) ?? []), r]);
  const recapSource = new Map(recaps.map((r) => [`${r.segment_start}:${r.segment_end}`, r]));

  let text = '';
  for (let t = 0; t < document.tokens.length; t++) {
    for (const r of recapsAt.get(t) ?? []) {
      const source = recapSource.get(`${r.segment_start}:${r.segment_end}`);
      const title = `recap of tokens ${r.segment_start}-${r.segment_end} for key tokens at ${r.positions.join(', ')} (${source?.recapper ?? ''} ${source?.model ?? ''})`;
      text += `<span class="recap" title="${escapeHtml(title)}">${escapeHtml(r.recap)}</span>`;
    }
    for (const id of anchorsAt.get(t) ?? []) text += `<span id="${id}"></span>`;
    const surface = escapeHtml(surfaces[t]);
    const classes = classesAt[t].length > 0 ? ['seg', ...classesAt[t]] : [];
    const key = keyAt.get(t);
    if (key) {
      const segment = segmentOfKey.get(t);
      const segmentId = segment ? segmentIds.get(`${segment.segment_start}:${segment.segment_end}`) : undefined;
      const title = [
        `long log-prob ${fmt(key.long_logprob)}`,
        `short log-prob ${fmt(key.short_logprob)}`,
        `LSG ${fmt(key.lsg)}`,
        segment ? `segment ${segment.segment_start}-${segment.segment_end}: gain ${fmt(segment.gain)} nats` : 'no segment kept',
      ].join('\n');
      const attrs = `class="${['key', ...classes].join(' ')}" id="key-${index}-${t}" data-lsg="${key.lsg}" style="background:${lsgColour(key.lsg, maxLsg)}" title="${escapeHtml(title)}"`;
      text += segmentId ? `<a ${attrs} href="#${segmentId}" data-segment="${segmentId}">${surface}</a>` : `<mark ${attrs}>${surface}</mark>`;
    } else if (classes.length > 0) text += `<span class="${classes.join(' ')}">${surface}</span>`;
    else text += surface;
  }
  const counts = { keyTokens: keyTokens.length, segments: segments.length, recapsInline: placed.length };
  const stats = `${document.tokens.length} tokens · <span class="n-key">${counts.keyTokens}</span> key tokens · <span class="n-seg">${counts.segments}</span> with a segment · <span class="n-recap">${counts.recapsInline}</span> recaps inline${document.skipped_short ? ' · too short to score' : ''}`;
  const html = `<section class="doc" id="doc-${index}" data-doc="${escapeHtml(document.doc)}">
<h2>${escapeHtml(document.doc)}</h2>
<p class="doc-stats">${stats}</p>
<div class="text">${text}</div>
</section>`;
  return { html, counts };
}

function groupByDoc<T extends { doc: string }>(records: T[]): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const r of records) out.set(r.doc, [...(out.get(r.doc) ?? []), r]);
  return out;
}

/** The whole page. */
export function renderInspectReport(input: InspectInput, tokenizer: Tokenizer): string {
  const { summary, documents, keyTokens, segments, recaps, sources } = input;
  const keyByDoc = groupByDoc(keyTokens);
  const segByDoc = groupByDoc(segments);
  const recapByDoc = groupByDoc(recaps);
  const maxLsg = Math.max(0, ...keyTokens.map((k) => k.lsg));
  let recapsInline = 0;
  const sections = documents.map((d, i) => {
    const { html, counts } = renderDocument(i, d, keyByDoc.get(d.doc) ?? [], segByDoc.get(d.doc) ?? [], recapByDoc.get(d.doc) ?? [], tokenizer, maxLsg);
    recapsInline += counts.recapsInline;
    return html;
  });
  const settings: [string, unknown][] = [
    ['key tokens', sources.keyTokens],
    ['segments', sources.segments ?? 'none (run arl segments)'],
    ['recaps', sources.recaps ?? 'none (run arl recaps)'],
    ['checkpoint', summary.checkpoint],
    ['corpus', summary.corpus],
    ['S / W / K', `${summary.S} / ${summary.W} / ${summary.K}`],
    ['selection', `${summary.select} (alpha ${summary.alpha}, beta ${summary.beta})`],
  ];
  const recappers = [...new Set(recaps.map((r) => `${r.recapper} (${r.model})`))].join(', ');
  if (recappers) settings.push(['recapper', recappers]);
  const nav = documents
    .map((d, i) => {
      const has = [segByDoc.has(d.doc) ? 'segments' : '', recapByDoc.has(d.doc) ? 'recaps' : ''].filter(Boolean);
      const marks = has.map((what) => `<span class="mark mark-${what}" title="has ${what}">${what === 'segments' ? 'seg' : 'recap'}</span>`).join('');
      return `<div data-doc-index="${i}" data-has="${has.join(' ')}"><a href="#doc-${i}">${escapeHtml(d.doc)}</a> (${keyByDoc.get(d.doc)?.length ?? 0})${marks}</div>`;
    })
    .join('\n');
  const filter = `<p class="filter"><label>Show <select id="doc-filter"><option value="all">all documents</option><option value="segments">documents with segments</option><option value="recaps">documents with recaps</option></select></label> · <span id="doc-filter-shown">${documents.length}</span> shown</p>`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>ARL inspection: ${escapeHtml(sources.keyTokens)}</title>
<style>${STYLE}</style>
</head>
<body>
<h1>Key tokens, segments and recaps</h1>
<p class="summary">documents <span id="count-documents">${documents.length}</span> · key tokens <span id="count-key-tokens">${keyTokens.length}</span> · with a segment <span id="count-segments">${segments.length}</span> · recaps <span id="count-recaps">${recaps.length}</span>, inline <span id="count-recaps-inline">${recapsInline}</span> · perplexity ${fmt(summary.perplexity, 2)} · LongPPL ${fmt(summary.longppl, 2)}</p>
<dl>${settings.map(([k, v]) => `<dt>${escapeHtml(k)}</dt><dd>${escapeHtml(String(v))}</dd>`).join('')}</dl>
<p class="legend">LSG (long minus short log-prob) of a key token: 0 <span class="bar"></span> ${fmt(maxLsg, 2)} nats. In the index, <span class="mark mark-segments">seg</span> marks a document with segments and <span class="mark mark-recaps">recap</span> one with recaps. Hover a key token for its log-probs and to light up its segment (dotted underline); click to jump to it.</p>
${filter}
<nav>${nav}</nav>
${sections.join('\n')}
<script>${SCRIPT}</script>
</body>
</html>
`;
}
