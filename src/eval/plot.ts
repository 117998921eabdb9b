/**
 * Line charts as self-contained SVG (no fonts, scripts or external references), so a plot opens in
 * any browser or image viewer and can be committed next to the data it shows. Axes get "nice" tick
 * values (1, 2, 5 x 10^k steps; powers of ten on a log axis), every series a colour and a legend entry.
 */

export interface Series {
  name: string;
  points: [number, number][];
  /** Interval [low, high] drawn as a bar at each point (same order as points), e.g. a 95% interval. */
  intervals?: [number, number][];
}

export interface LineChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  /** Logarithmic y axis; points with y <= 0 are left out. */
  logY?: boolean;
}

const WIDTH = 720;
const HEIGHT = 420;
/** The plot area inside the margins; exported so tests can check every point lies inside it. */
export const PLOT_AREA = { left: 72, top: 40, right: WIDTH - 190, bottom: HEIGHT - 56 } as const;
const COLOURS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#7f7f7f', '#bcbd22'];

function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!);
}

/** About `count` evenly spaced round values covering [min, max]. */
export function niceTicks(min: number, max: number, count = 5): number[] {
  if (min === max) {
    const pad = min === 0 ? 1 : Math.abs(min) * 0.1;
    return niceTicks(min - pad, max + pad, count);
  }
  const raw = (max - min) / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw)!;
  const ticks: number[] = [];
  for (let v = Math.floor(min / step) * step; v <= max + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  if (ticks[ticks.length - 1] < max) ticks.push(Number((ticks[ticks.length - 1] + step).toPrecision(12)));
  return ticks;
}

/** Tick values for a log axis over [min, max] (both > 0): powers of ten, or 1-2-5 multiples within a short range. */
function logTicks(min: number, max: number): number[] {
  const low = Math.floor(Math.log10(min));
  const high = Math.ceil(Math.log10(max));
  const multiples = high - low <= 2 ? [1, 2, 5] : [1];
  const ticks: number[] = [];
  for (let e = low; e <= high; e++) for (const m of multiples) ticks.push(Number((m * 10 ** e).toPrecision(12)));
  // Keep one tick at or beyond each end, so the axis spans every point.
  const first = ticks.filter((t) => t <= min).length - 1;
  const last = ticks.findIndex((t) => t >= max);
  return ticks.slice(Math.max(0, first), last < 0 ? undefined : last + 1);
}

function formatTick(v: number): string {
  if (v === 0) return '0';
  const abs = Math.abs(v);
  if (abs >= 1e5 || abs < 1e-3) return v.toExponential(0).replace('e+', 'e');
  return String(Number(v.toPrecision(6)));
}

export function lineChartSvg(o: LineChartOptions): string {
  const logY = o.logY === true;
  const keep = ([x, y]: [number, number]) => Number.isFinite(x) && Number.isFinite(y) && (!logY || y > 0);
  const series = o.series.map((s) => ({
    name: s.name,
    points: s.points.filter(keep),
    bars: (s.intervals ?? []).flatMap(([low, high], k) => (s.points[k] && keep(s.points[k]) ? [{ x: s.points[k][0], low, high }] : [])),
  }));
  const all = [...series.flatMap((s) => s.points), ...series.flatMap((s) => s.bars.flatMap((b): [number, number][] => [[b.x, b.low], [b.x, b.high]]))];
  const { left, top, right, bottom } = PLOT_AREA;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="sans-serif" font-size="12">`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="#ffffff"/>`,
    `<text x="${WIDTH / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(o.title)}</text>`,
    `<rect class="plot-area" x="${left}" y="${top}" width="${right - left}" height="${bottom - top}" fill="none" stroke="#333333"/>`,
    `<text x="${(left + right) / 2}" y="${HEIGHT - 14}" text-anchor="middle">${escapeXml(o.xLabel)}</text>`,
    `<text transform="translate(18 ${(top + bottom) / 2}) rotate(-90)" text-anchor="middle">${escapeXml(o.yLabel)}${logY ? ' (log scale)' : ''}</text>`,
  ];
  if (all.length === 0) {
    parts.push(`<text x="${(left + right) / 2}" y="${(top + bottom) / 2}" text-anchor="middle" fill="#777777">no data</text>`, '</svg>');
    return parts.join('\n');
  }

  const xs = all.map((p) => p[0]);
  const ys = all.map((p) => p[1]);
  const xTicks = niceTicks(Math.min(...xs), Math.max(...xs));
  const yTicks = logY ? logTicks(Math.min(...ys), Math.max(...ys)) : niceTicks(Math.min(...ys), Math.max(...ys));
  const [x0, x1] = [xTicks[0], xTicks[xTicks.length - 1]];
  const yScale = (v: number): number => (logY ? Math.log10(v) : v);
  const [y0, y1] = [yScale(yTicks[0]), yScale(yTicks[yTicks.length - 1])];
  const px = (x: number): number => left + ((x - x0) / (x1 - x0 || 1)) * (right - left);
  const py = (y: number): number => bottom - ((yScale(y) - y0) / (y1 - y0 || 1)) * (bottom - top);
  const fixed = (v: number): string => v.toFixed(2);

  for (const t of xTicks) {
    const x = fixed(px(t));
    parts.push(`<line x1="${x}" y1="${top}" x2="${x}" y2="${bottom + 5}" stroke="#e5e5e5"/>`, `<text x="${x}" y="${bottom + 18}" text-anchor="middle">${formatTick(t)}</text>`);
  }
  for (const t of yTicks) {
    const y = fixed(py(t));
    parts.push(`<line x1="${left - 5}" y1="${y}" x2="${right}" y2="${y}" stroke="#e5e5e5"/>`, `<text x="${left - 8}" y="${y}" dy="4" text-anchor="end">${formatTick(t)}</text>`);
  }
  series.forEach((s, i) => {
    const colour = COLOURS[i % COLOURS.length];
    const coords = s.points.map(([x, y]) => `${fixed(px(x))},${fixed(py(y))}`);
    if (coords.length === 1) {
      const [cx, cy] = coords[0].split(',');
      parts.push(`<circle class="series" cx="${cx}" cy="${cy}" r="3" fill="${colour}"/>`);
    } else if (coords.length > 1) {
      parts.push(`<polyline class="series" points="${coords.join(' ')}" fill="none" stroke="${colour}" stroke-width="1.5" stroke-linejoin="round"/>`);
    }
    for (const bar of s.bars) {
      const x = fixed(px(bar.x));
      parts.push(`<line class="interval" x1="${x}" y1="${fixed(py(bar.low))}" x2="${x}" y2="${fixed(py(bar.high))}" stroke="${colour}" stroke-width="1.5"/>`);
    }
    const ly = top + 10 + i * 20;
    parts.push(`<line x1="${right + 14}" y1="${ly}" x2="${right + 38}" y2="${ly}" stroke="${colour}" stroke-width="3"/>`, `<text x="${right + 44}" y="${ly}" dy="4">${escapeXml(s.name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}
