/** `arl inspect`: the HTML report renders in headless Chromium and the counts on the page match the JSONL files. */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { renderInspectReport } from '../src/arl/inspect-report.ts';
import { readJsonLines } from '../src/io/jsonl.ts';
import type { KeyTokenDocument, KeyTokenRecord, KeyTokenSummary } from '../src/arl/key-tokens.ts';
import type { RecapRecord } from '../src/arl/recap.ts';
import type { SegmentRecord } from '../src/arl/relevant-segment.ts';
import { BUNDLED_TOKENIZER_PATH, Tokenizer } from '../src/tokenizer/sentencepiece.ts';
import { chromiumSkip, withPage } from './browser.ts';
import { assertUserError, makeTinyArlSegments, runArl, useCpu } from './helpers.ts';

test('arl inspect: key tokens, segments and inline recaps in one page whose counts match the JSONL', { skip: chromiumSkip() }, async () => {
  await useCpu();
  const work = mkdtempSync(join(tmpdir(), 'arl-inspect-'));
  const { arlDir } = await makeTinyArlSegments(work, 2);
  const keyTokens = readJsonLines(join(arlDir, 'keytokens.jsonl'));
  const documents = readJsonLines(join(arlDir, 'documents.jsonl'));
  const segments = readJsonLines<SegmentRecord>(join(arlDir, 'segments.jsonl'));
  // recaps.jsonl as `arl recaps` writes it (contracts.md): one line per distinct segment.
  const distinct = new Map<string, SegmentRecord[]>();
  for (const s of segments) distinct.set(`${s.doc}:${s.segment_start}:${s.segment_end}`, [...(distinct.get(`${s.doc}:${s.segment_start}:${s.segment_end}`) ?? []), s]);
  const recaps = [...distinct.values()].map((group, i) => ({
    doc: group[0].doc,
    segment_start: group[0].segment_start,
    segment_end: group[0].segment_end,
    positions: group.map((s) => s.pos),
    segment_text: group[0].segment_text,
    recap: `recap number ${i} <b>&`,
    recapper: 'openai',
    model: 'fake',
    cache_key: String(i),
  }));
  writeFileSync(join(arlDir, 'recaps.jsonl'), recaps.map((r) => JSON.stringify(r)).join('\n'));
  assert.ok(keyTokens.length > 0 && segments.length > 0);

  const report = join(work, 'report', 'report.html');
  const r = await runArl('inspect', '--keytokens', arlDir, '--out', report);
  assert.equal(r.code, 0, r.stderr);

  // Page code as a string: tsx would otherwise compile helpers into it that do not exist in the page.
  const pageCode = `(() => {
    const count = (id) => Number(document.getElementById(id).textContent);
    const keys = Array.from(document.querySelectorAll('.key'));
    const linked = keys.filter((k) => k.dataset.segment);
    const brokenLinks = linked.filter((k) => !document.getElementById(k.dataset.segment) || document.querySelectorAll('.' + k.dataset.segment).length === 0).length;
    if (linked[0]) linked[0].dispatchEvent(new MouseEvent('mouseenter'));
    return {
      counts: ['count-documents', 'count-key-tokens', 'count-segments', 'count-recaps', 'count-recaps-inline'].map(count),
      sections: document.querySelectorAll('section.doc').length,
      keys: keys.length,
      linked: linked.length,
      brokenLinks,
      titlesWithLogProbs: keys.filter((k) => /long log-prob -?\\d/.test(k.title) && /short log-prob -?\\d/.test(k.title)).length,
      recapsShown: document.querySelectorAll('.recap').length,
      recapText: document.querySelector('.recap') ? document.querySelector('.recap').textContent : '',
      activeAfterHover: document.querySelectorAll('.seg.active').length,
      perDocKeys: Array.from(document.querySelectorAll('section.doc')).reduce((sum, s) => sum + Number(s.querySelector('.n-key').textContent), 0),
    };
  })()`;
  const page = (await withPage({ '/': dirname(report) }, '/report.html', (p) => p.evaluate(pageCode))) as {
    counts: number[];
    sections: number;
    keys: number;
    linked: number;
    brokenLinks: number;
    titlesWithLogProbs: number;
    recapsShown: number;
    recapText: string;
    activeAfterHover: number;
    perDocKeys: number;
  };
  const [docs, keys, segs, recapCount, inline] = page.counts;
  assert.deepEqual([docs, keys, segs, recapCount], [documents.length, keyTokens.length, segments.length, recaps.length]);
  assert.equal(page.sections, documents.length);
  assert.equal(page.keys, keyTokens.length);
  assert.equal(page.perDocKeys, keyTokens.length);
  assert.equal(page.linked, segments.length);
  assert.equal(page.brokenLinks, 0);
  assert.equal(page.titlesWithLogProbs, keyTokens.length);
  assert.equal(page.recapsShown, inline);
  assert.ok(inline > 0 && inline <= recaps.length, `${inline} recaps inline of ${recaps.length}`);
  assert.match(page.recapText, /^recap number \d+ <b>&$/);
  assert.ok(page.activeAfterHover > 0);

  assertUserError(await runArl('inspect', '--keytokens', join(work, 'nowhere'), '--out', join(work, 'x.html')), /nowhere: no summary\.json; run `arl keytokens/);
});

test('arl inspect: the index marks documents with segments and with recaps, and its select shows only those', async () => {
  const tokenizer = await Tokenizer.load(BUNDLED_TOKENIZER_PATH);
  const tokens = tokenizer.encode('The cat sat on the mat. Then the cat slept on the mat all day long.');
  const document = (doc: string): KeyTokenDocument => ({ doc, tokens, sentence_starts: [0, 7], skipped_short: false, tokens_scored: tokens.length - 1, long_logprob_sum: -20, key_tokens: 1, key_long_logprob_sum: -1 });
  const key = (doc: string): KeyTokenRecord => ({ doc, pos: 10, token: tokens[10]!, piece: 'cat', long_logprob: -1, short_logprob: -4, lsg: 3 });
  const segment = (doc: string): SegmentRecord => ({ ...key(doc), segment_start: 1, segment_end: 4, segment_text: 'cat sat on', gain: 1, baseline_logprob: -4, segment_logprob: -1 });
  const recap: RecapRecord = { doc: 'both', segment_start: 1, segment_end: 4, positions: [10], segment_text: 'cat sat on', recap: 'a cat sat', recapper: 'extractive', model: 'm', cache_key: 'k' };
  const html = renderInspectReport(
    {
      summary: { checkpoint: 'ckpt', corpus: 'c.jsonl', S: 16, W: 48, K: 8, select: 'topk', alpha: 2, beta: -2, perplexity: 10, longppl: 12 } as unknown as KeyTokenSummary,
      documents: ['both', 'none', 'segments-only'].map(document),
      keyTokens: ['both', 'none', 'segments-only'].map(key),
      segments: [segment('both'), segment('segments-only')],
      recaps: [recap],
      sources: { keyTokens: 'kt', segments: 'kt/segments.jsonl', recaps: 'kt/recaps.jsonl' },
    },
    tokenizer,
  );
  const entries = [...html.matchAll(/<div data-doc-index="(\d+)" data-has="([^"]*)"><a href="#doc-\1">([^<]+)<\/a> \(\d+\)(.*?)<\/div>/g)];
  assert.deepEqual(
    entries.map((m) => [m[3], m[2], [...m[4]!.matchAll(/class="mark mark-(\w+)"/g)].map((mark) => mark[1]).join(' ')]),
    [['both', 'segments recaps', 'segments recaps'], ['none', '', ''], ['segments-only', 'segments', 'segments']],
  );
  assert.match(html, /<select id="doc-filter"><option value="all">all documents<\/option><option value="segments">documents with segments<\/option><option value="recaps">documents with recaps<\/option><\/select>/);
  assert.doesNotMatch(html, /<script src=|<link /);

  // The page's own script, run on a minimal stand-in for the DOM of this page.
  const script = /<script>([\s\S]*)<\/script>/.exec(html)![1]!;
  const element = (dataset: Record<string, string> = {}) => ({ dataset, hidden: false, textContent: '', value: 'all', listeners: {} as Record<string, () => void>, addEventListener(type: string, f: () => void) { this.listeners[type] = f; } });
  const nav = entries.map((m) => element({ docIndex: m[1]!, has: m[2]! }));
  const byId: Record<string, ReturnType<typeof element>> = { 'doc-filter': element(), 'doc-filter-shown': element() };
  entries.forEach((m) => (byId[`doc-${m[1]}`] = element()));
  const dom = { getElementById: (id: string) => byId[id], querySelectorAll: (selector: string) => (selector === 'nav [data-doc-index]' ? nav : []) };
  new Function('document', script)(dom);
  const shownAfter = (value: string) => {
    byId['doc-filter']!.value = value;
    byId['doc-filter']!.listeners.change!();
    const shownNav = nav.filter((e) => !e.hidden).map((e) => entries[Number(e.dataset.docIndex)]![3]);
    const shownSections = entries.filter((m) => !byId[`doc-${m[1]}`]!.hidden).map((m) => m[3]);
    assert.deepEqual(shownSections, shownNav);
    assert.equal(byId['doc-filter-shown']!.textContent, shownNav.length);
    return shownNav;
  };
  assert.deepEqual(shownAfter('segments'), ['both', 'segments-only']);
  assert.deepEqual(shownAfter('recaps'), ['both']);
  assert.deepEqual(shownAfter('all'), ['both', 'none', 'segments-only']);
});
