/** `arl inspect`: the HTML report renders in headless Chromium and the counts on the page match the JSONL files. */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { readJsonLines } from '../src/io/jsonl.ts';
import type { SegmentRecord } from '../src/arl/relevant-segment.ts';
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
