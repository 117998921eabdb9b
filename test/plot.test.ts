/** SVG line charts: well-formed XML, every point inside the plot area, ticks spanning the data, log axes; training curves and `arl plot`. */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { lineChartSvg, niceTicks, PLOT_AREA } from '../src/eval/plot.ts';
import { chromiumSkip, withPage } from './browser.ts';
import { assertUserError, prepareTinyCorpus, runArl } from './helpers.ts';

/** Checks tags nest and close, attributes are quoted and no raw `<` or `&` appears in text; returns the element names in order. */
function assertWellFormedXml(xml: string): string[] {
  const names: string[] = [];
  const stack: string[] = [];
  const tag = /<(\/?)([a-zA-Z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/gy;
  let pos = 0;
  while (pos < xml.length) {
    const next = xml.indexOf('<', pos);
    const text = xml.slice(pos, next < 0 ? xml.length : next);
    assert.doesNotMatch(text, /&(?!(lt|gt|amp|quot|apos);)/, `bare & in text: ${text}`);
    if (next < 0) break;
    tag.lastIndex = next;
    const m = tag.exec(xml);
    assert.ok(m, `malformed tag at ${next}: ${xml.slice(next, next + 60)}`);
    const [, closing, name, , selfClosing] = m;
    if (closing) assert.equal(stack.pop(), name, `</${name}> closes the wrong element`);
    else {
      names.push(name);
      if (!selfClosing) stack.push(name);
    }
    pos = tag.lastIndex;
  }
  assert.deepEqual(stack, [], 'unclosed elements');
  return names;
}

function plottedPoints(svg: string): [number, number][] {
  const out: [number, number][] = [];
  for (const m of svg.matchAll(/<polyline class="series" points="([^"]+)"/g)) {
    for (const pair of m[1].split(' ')) out.push(pair.split(',').map(Number) as [number, number]);
  }
  for (const m of svg.matchAll(/<circle class="series" cx="([^"]+)" cy="([^"]+)"/g)) out.push([Number(m[1]), Number(m[2])]);
  return out;
}

function assertInsidePlotArea(points: [number, number][]): void {
  for (const [x, y] of points) {
    assert.ok(x >= PLOT_AREA.left - 0.01 && x <= PLOT_AREA.right + 0.01, `x ${x} outside the plot area`);
    assert.ok(y >= PLOT_AREA.top - 0.01 && y <= PLOT_AREA.bottom + 0.01, `y ${y} outside the plot area`);
  }
}

describe('lineChartSvg', () => {
  test('two series: well-formed, every point inside the plot area, a legend entry each, text escaped', () => {
    const train = Array.from({ length: 50 }, (_, i): [number, number] => [i + 1, 5 * Math.exp(-i / 20) + 0.3 * Math.sin(i)]);
    const val: [number, number][] = [[10, 4.1], [20, 3.2], [50, 2.05]];
    const svg = lineChartSvg({ title: 'loss <train & val>', xLabel: 'step', yLabel: 'loss', series: [{ name: 'train', points: train }, { name: 'val "held out"', points: val }] });
    const names = assertWellFormedXml(svg);
    assert.equal(names[0], 'svg');
    assert.match(svg, /loss &lt;train &amp; val&gt;/);
    assert.match(svg, /val &quot;held out&quot;/);
    const points = plottedPoints(svg);
    assert.equal(points.length, train.length + val.length);
    assertInsidePlotArea(points);
    // The extremes touch or lie inside the plot area's opposite sides: the axes span the data.
    assert.ok(Math.min(...points.map((p) => p[0])) >= PLOT_AREA.left && Math.max(...points.map((p) => p[0])) <= PLOT_AREA.right);
    assert.equal(names.filter((n) => n === 'polyline').length, 2);
  });

  test('log y: ticks are powers of ten around the data; non-positive and non-finite points are dropped', () => {
    const points: [number, number][] = [[0, 1e-4], [1, 3e-3], [2, 0], [3, 0.2], [4, NaN], [5, 7]];
    const svg = lineChartSvg({ title: 'lr', xLabel: 'step', yLabel: 'lr', series: [{ name: 'lr', points }], logY: true });
    assertWellFormedXml(svg);
    const plotted = plottedPoints(svg);
    assert.equal(plotted.length, 4);
    assertInsidePlotArea(plotted);
    const yTickLabels = [...svg.matchAll(/text-anchor="end">([^<]+)</g)].map((m) => Number(m[1]));
    assert.deepEqual(yTickLabels, [1e-4, 1e-3, 1e-2, 1e-1, 1, 10]);
    assert.match(svg, /\(log scale\)/);
  });

  test('a single point, a constant series and no data all give valid charts', () => {
    for (const series of [[{ name: 'one', points: [[3, 2]] as [number, number][] }], [{ name: 'flat', points: [[0, 1], [1, 1], [2, 1]] as [number, number][] }], [], [{ name: 'empty', points: [] }]]) {
      const svg = lineChartSvg({ title: 't', xLabel: 'x', yLabel: 'y', series });
      assertWellFormedXml(svg);
      assertInsidePlotArea(plottedPoints(svg));
      if (series.every((s) => s.points.length === 0)) assert.match(svg, /no data/);
    }
  });

  test('niceTicks: round steps that cover the range', () => {
    for (const [min, max] of [[0, 1], [0.37, 4.2], [-3, 17], [1000, 1003], [5, 5], [1e-5, 3e-5]]) {
      const ticks = niceTicks(min, max);
      assert.ok(ticks[0] <= min && ticks[ticks.length - 1] >= max, `${ticks} covers [${min}, ${max}]`);
      assert.ok(ticks.length >= 3 && ticks.length <= 12, `${ticks.length} ticks`);
      const step = ticks[1] - ticks[0];
      const mantissa = step / 10 ** Math.floor(Math.log10(step));
      assert.ok([1, 2, 5, 10].some((m) => Math.abs(mantissa - m) < 1e-6), `step ${step}`);
    }
  });
});

test('training writes loss/lr/throughput curves at each save; `arl plot` redraws them', async () => {
  const data = await prepareTinyCorpus(6);
  const out = join(data, '..', 'run');
  const r = await runArl('train', '--data', data, '--out', out, '--backend', 'cpu', '--dim', '32', '--layers', '1', '--heads', '2', '--max-seq', '32', '--seq', '16', '--batch', '2', '--eval-every', '2', '--eval-batches', '1', '--steps', '3', '--save-every', '2');
  assert.equal(r.code, 0, r.stderr);
  const steps = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').length;
  const charts = ['loss.svg', 'lr.svg', 'tokens-per-s.svg'].map((name) => join(out, 'plots', name));
  const check = (): void => {
    for (const chart of charts) {
      const svg = readFileSync(chart, 'utf8');
      assertWellFormedXml(svg);
      const points = plottedPoints(svg);
      assertInsidePlotArea(points);
      // loss: every step's train loss plus the two validation points (steps 2 and 3)
      assert.equal(points.length, chart.endsWith('loss.svg') ? steps + 2 : steps, chart);
    }
  };
  check();
  for (const chart of charts) rmSync(chart);
  const redraw = await runArl('plot', '--run', out);
  assert.equal(redraw.code, 0, redraw.stderr);
  assert.ok(charts.every((c) => existsSync(c)));
  check();
  assertUserError(await runArl('plot', '--run', join(out, 'nowhere')), /nowhere: no metrics\.jsonl; pass the --out folder/);
});

test('a chart renders in headless Chromium: the SVG has its size, one drawn line per series and the legend text', { skip: chromiumSkip() }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'arl-plot-'));
  const series = [
    { name: 'train', points: [[0, 5], [10, 4], [20, 3.5]] as [number, number][] },
    { name: 'val', points: [[10, 4.2], [20, 3.9]] as [number, number][] },
  ];
  writeFileSync(join(dir, 'chart.svg'), lineChartSvg({ title: 'loss', xLabel: 'step', yLabel: 'loss', series }));
  writeFileSync(join(dir, 'index.html'), '<!doctype html><img id="chart" src="chart.svg"><object id="doc" data="chart.svg" type="image/svg+xml"></object>');
  const seen = await withPage({ '/': dir }, '/index.html', async (page) => {
    await page.waitForFunction(() => (document.getElementById('chart') as HTMLImageElement).complete);
    await page.waitForFunction(() => (document.getElementById('doc') as HTMLObjectElement).contentDocument?.querySelector('svg') != null);
    return page.evaluate(() => {
      const img = document.getElementById('chart') as HTMLImageElement;
      const svg = (document.getElementById('doc') as HTMLObjectElement).contentDocument!.querySelector('svg')!;
      const lines = Array.from(svg.querySelectorAll('polyline.series'), (p) => (p as SVGPolylineElement).getBBox().width);
      return { width: img.naturalWidth, height: img.naturalHeight, lines, text: svg.textContent ?? '' };
    });
  });
  rmSync(dir, { recursive: true, force: true });
  assert.ok(seen.width > 100 && seen.height > 100, `image decoded at ${seen.width}x${seen.height}`);
  assert.equal(seen.lines.length, 2);
  assert.ok(seen.lines.every((w) => w > 10), `drawn line widths ${seen.lines}`);
  assert.match(seen.text, /train/);
  assert.match(seen.text, /val/);
});
