/** The experiment's report: results.md (markdown tables) and SVG plots (RULER average against length, training loss). */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { readJsonLines } from '../arl/journal.ts';
import { writeFileAtomic } from '../io/atomic.ts';
import type { StepMetrics } from '../train/trainer.ts';
import type { ExperimentResults } from './experiment.ts';
import { lineChartSvg, type Series } from './plot.ts';

export const REPORT_FILES = { markdown: 'results.md', accuracyPlot: 'plots/ruler-vs-length.svg', lossPlot: 'plots/training-loss.svg' };

const format = (value: number | null | undefined, digits = 2): string => (value === null || value === undefined ? 'n/a' : value.toFixed(digits));
const percent = (value: number | null): string => (value === null ? 'n/a' : `${value >= 0 ? '+' : ''}${(100 * value).toFixed(1)}%`);

function table(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  return [`| ${header.join(' | ')} |`, `| ${header.map(() => '---').join(' | ')} |`, ...rows.map((row) => `| ${row.join(' | ')} |`)].join('\n');
}

export function experimentMarkdown(results: ExperimentResults): string {
  const window = Number(results.settings.window);
  const methods = [...new Set(results.ruler.map((r) => r.method))];
  const multiples = [...new Set(results.ruler.map((r) => r.multiple))].sort((a, b) => a - b);
  const cell = (method: string, multiple: number) => {
    const r = results.ruler.find((x) => x.method === method && x.multiple === multiple);
    return r === undefined || r.skipped ? 'not run' : format(r.average);
  };
  const skipped = results.ruler.filter((r) => r.skipped && r.multiple === multiples[0]).map((r) => `- ${r.method}: not run (${r.skipped})`);
  const tasks = [...new Set(results.ruler.flatMap((r) => Object.keys(r.tasks)))];
  const perTask = methods.flatMap((method) =>
    multiples.map((multiple) => {
      const r = results.ruler.find((x) => x.method === method && x.multiple === multiple)!;
      return [method, `${multiple}x`, ...tasks.map((t) => (r.skipped ? '-' : format(r.tasks[t])))];
    }),
  );
  const outside = methods.map((method) => {
    const examples = results.ruler.filter((r) => r.method === method && !r.skipped).flatMap((r) => r.examples);
    const out = examples.filter((e) => !e.in_context);
    const inside = examples.filter((e) => e.in_context);
    const avg = (list: typeof examples) => (list.length === 0 ? null : (100 * list.reduce((a, e) => a + e.score, 0)) / list.length);
    return [method, `${format(avg(inside))} (${inside.length})`, `${format(avg(out))} (${out.length})`];
  });
  const longppl = Object.entries(results.longppl).map(([model, r]) => [model, format(r.perplexity), format(r.longppl), String(r.tokens_scored), String(r.key_tokens)]);
  const claims = results.claims.map((c) => [c.claim, c.target, format(c.baseline), format(c.method), percent(c.relative), c.met === null ? 'n/a' : c.met ? 'met' : 'missed', c.note]);
  const s = results.settings;
  return [
    `# Experiment results`,
    '',
    `Window T = ${window} tokens; model: ${s.preset ?? 'custom'} ${JSON.stringify(s.model)}; base ${s.baseSteps} steps, each CPT copy ${s.cptSteps} steps (batch ${s.batch} x ${window} tokens); recapper ${s.recapper}; ${s.perLength} test sample(s) per task and length; tasks: ${(s.tasks as string[]).join(', ')}.`,
    s.command ? `\nCommand: \`${s.command}\`` : '',
    '',
    `## RULER-style average by test length (score 0-100)`,
    '',
    table(['method', ...multiples.map((m) => `${m}x T (${m * window - Math.floor(window / 4)} tok)`)], methods.map((m) => [m, ...multiples.map((x) => cell(m, x))])),
    ...(skipped.length > 0 ? ['', ...skipped] : []),
    '',
    `## Targets (issue 5)`,
    '',
    table(['claim', 'target', 'baseline', 'method', 'relative', 'verdict', 'note'], claims),
    '',
    `## Answers inside vs outside the truncated window (mean score, examples in brackets)`,
    '',
    table(['method', 'inside', 'outside'], outside),
    '',
    `## LongPPL on held-out documents (key tokens chosen by the base model, Top-16 by long-short gap per document)`,
    '',
    table(['model', 'perplexity', 'LongPPL', 'tokens', 'key tokens'], longppl),
    '',
    `## Per task`,
    '',
    table(['method', 'length', ...tasks], perTask),
    '',
    `## Stage timings (seconds)`,
    '',
    table(['stage', 'seconds'], Object.entries(results.timings).map(([stage, seconds]) => [stage, seconds.toFixed(1)])),
    '',
    `Plots: [${REPORT_FILES.accuracyPlot}](${REPORT_FILES.accuracyPlot}), [${REPORT_FILES.lossPlot}](${REPORT_FILES.lossPlot}).`,
    '',
  ].join('\n');
}

/** Loss per step of a training run; continued-pretraining runs are drawn after the base run's last step. */
function lossSeries(name: string, runDir: string, offset: number): Series {
  const file = join(runDir, 'metrics.jsonl');
  const metrics = existsSync(file) ? readJsonLines<StepMetrics>(file) : [];
  return { name, points: metrics.map((m) => [offset + m.step, m.loss]) };
}

export function writeExperimentReport(outDir: string, results: ExperimentResults): void {
  writeFileAtomic(join(outDir, REPORT_FILES.markdown), experimentMarkdown(results));
  const methods = [...new Set(results.ruler.filter((r) => !r.skipped).map((r) => r.method))];
  const accuracy = lineChartSvg({
    title: 'RULER-style average vs input length',
    xLabel: 'input length (tokens)',
    yLabel: 'average score (0-100)',
    series: methods.map((method) => ({ name: method, points: results.ruler.filter((r) => r.method === method && !r.skipped).map((r): [number, number] => [r.length, r.average]) })),
  });
  writeFileAtomic(join(outDir, REPORT_FILES.accuracyPlot), accuracy);
  const baseSteps = Number(results.settings.baseSteps);
  const loss = lineChartSvg({
    title: 'Training loss',
    xLabel: 'step (continued pretraining after the base run)',
    yLabel: 'cross-entropy (nats)',
    series: [
      lossSeries('base', join(outDir, 'runs', 'base'), 0),
      lossSeries('plain-CPT', join(outDir, 'runs', 'cpt-plain'), baseSteps),
      lossSeries('ARL-CPT', join(outDir, 'runs', 'cpt-arl'), baseSteps),
    ],
  });
  writeFileAtomic(join(outDir, REPORT_FILES.lossPlot), loss);
}
