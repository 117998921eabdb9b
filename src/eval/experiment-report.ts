/** The experiment's report: results.md (tables with intervals and verdicts) and SVG plots (accuracy vs length, recap behaviour, training loss). */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { readJsonLines } from '../io/jsonl.ts';
import { writeFileAtomic } from '../io/atomic.ts';
import type { StepMetrics } from '../train/trainer.ts';
import { exampleKey, type MethodLengthResult } from './experiment-claims.ts';
import type { ExperimentResults } from './experiment.ts';
import { meanInterval } from './paired-stats.ts';
import { lineChartSvg, type Series } from './plot.ts';

export const REPORT_FILES = {
  markdown: 'results.md',
  accuracyPlot: 'plots/accuracy-vs-length.svg',
  recapPlot: 'plots/recap-behaviour.svg',
  lossPlot: 'plots/training-loss.svg',
};

const format = (value: number | null | undefined, digits = 2): string => (value === null || value === undefined || !Number.isFinite(value) ? 'n/a' : value.toFixed(digits));
const interval = (ci: [number, number] | null, digits = 3): string => (ci ? `[${format(ci[0], digits)}, ${format(ci[1], digits)}]` : 'n/a');

function table(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  return [`| ${header.join(' | ')} |`, `| ${header.map(() => '---').join(' | ')} |`, ...rows.map((row) => `| ${row.join(' | ')} |`)].join('\n');
}

/** Accuracy (0-100) of a result and a bootstrap 95% interval over its documents. */
function accuracy(r: MethodLengthResult): { mean: number; ci: [number, number] } {
  const { mean, ci95 } = meanInterval(r.examples.map((e) => 100 * e.score));
  return { mean, ci: ci95 };
}

/**
 * For each ARL arm and length, its answers split by whether a recap held the answer, each part's accuracy set against
 * plain CPT of the same seed on the same documents: what the recaps do where they work, and how often they do.
 */
export function recapMechanismRows(ruler: readonly MethodLengthResult[]): string[][] {
  const percent = (ok: number, n: number) => (n === 0 ? 'n/a' : `${format((100 * ok) / n, 1)}% (${ok})`);
  return ruler
    .filter((r) => /^ARL-CPT s\d+$/.test(r.method) && r.examples.some((e) => e.recaps_written !== undefined))
    .flatMap((r) => {
      const plain = ruler.find((p) => p.method === r.method.replace('ARL-CPT', 'plain-CPT') && p.multiple === r.multiple);
      if (!plain) return [];
      const plainScore = new Map(plain.examples.map((e) => [exampleKey(e), e.score]));
      return [true, false].map((held) => {
        const part = r.examples.filter((e) => Boolean(e.recaps_hold_answer) === held && plainScore.has(exampleKey(e)));
        const arlRight = part.filter((e) => e.score === 1).length;
        const plainRight = part.filter((e) => plainScore.get(exampleKey(e)) === 1).length;
        return [r.method, `${r.multiple}x`, held ? 'a recap held the answer' : 'no recap held it', String(part.length), percent(arlRight, part.length), percent(plainRight, part.length)];
      });
    });
}

export function experimentMarkdown(results: ExperimentResults): string {
  const s = results.settings;
  const window = Number(s.window);
  const tasks = [...new Set(results.ruler.flatMap((r) => Object.keys(r.tasks)))];
  const rows = results.ruler.map((r) => {
    const a = accuracy(r);
    const recaps = r.examples.filter((e) => e.recaps_written !== undefined);
    const recapCells = recaps.length
      ? [
          format(recaps.reduce((t, e) => t + e.recaps_written!, 0) / recaps.length),
          `${format((100 * recaps.filter((e) => e.recaps_hold_answer).length) / recaps.length, 1)}%`,
          `${format((100 * recaps.filter((e) => e.recaps_pair_key).length) / recaps.length, 1)}%`,
        ]
      : ['-', '-', '-'];
    const wrong = r.examples.filter((e) => e.answered_other_needle !== undefined);
    const otherNeedle = wrong.length ? `${wrong.filter((e) => e.answered_other_needle).length} of ${wrong.length}` : '-';
    return [r.method, `${r.multiple}x (${r.length} tok)`, String(r.examples.length), format(a.mean, 1), interval(a.ci, 1), ...tasks.map((t) => (t in r.tasks ? format(r.tasks[t], 1) : '-')), otherNeedle, ...recapCells];
  });
  const claims = results.claims.map((c) => [c.claim, c.target, String(c.n), format(c.baseline, 3), format(c.method, 3), format(c.gain, 3), interval(c.ci95), c.met === null ? 'n/a' : c.met ? 'met' : 'missed', c.note]);
  const thresholds = Object.entries(results.thresholds).map(([seed, t]) => [
    seed,
    String(t.chosen),
    Object.entries(t.dev_accuracy).map(([k, v]) => `${k}: ${format(v, 1)}`).join(', '),
    Object.entries(t.dev_gold_logprob ?? {}).map(([k, v]) => `${k}: ${format(v, 2)}`).join(', ') || '-',
  ]);
  const longppl = Object.entries(results.longppl).map(([model, r]) => [model, format(r.perplexity), format(r.longppl), String(r.tokens_scored), String(r.key_tokens)]);
  return [
    `# Experiment results`,
    '',
    `Window T = ${window} tokens; model: ${s.preset ?? 'custom'} ${JSON.stringify(s.model)}; base ${s.baseSteps} steps, each continued-pretraining arm ${s.cptSteps} steps per seed (${s.seeds} seeds), batch ${s.batch} x ${window} tokens, task rows ${s.taskFraction} and copy rows ${s.copyFraction} of each base batch (${s.cptTaskFraction} and ${s.cptCopyFraction} in continued pretraining); recapper ${s.recapper}; tasks ${(s.tasks as string[]).join(', ')}; ARL data ${JSON.stringify(s.arl_data)}.`,
    s.command ? `\nCommand: \`${s.command}\`` : '',
    results.complete ? '' : `\n**Unfinished run:** written after the comparisons of seed ${Object.keys(results.thresholds).map((k) => k.replace(/^s/, '')).join(', ')}; the claims cover the finished seeds, and LongPPL and LIFT are not yet run.`,
    '',
    `## Claims and falsifiers (declared before the run; paired bootstrap 95% intervals)`,
    '',
    table(['claim', 'target', 'n', 'baseline', 'method', 'gain', '95% interval', 'verdict', 'note'], claims),
    '',
    `## Accuracy by method and length`,
    '',
    table(['method', 'length', 'n', 'accuracy', '95% interval', ...tasks, "wrong answers that name another needle's value", 'recaps per answer', 'recaps holding the answer', '...with its key'], rows),
    '',
    `## Where the recaps held the answer (the ARL arm's answers, and plain CPT of the same seed on the same documents)`,
    '',
    table(['ARL arm', 'length', 'answers', 'n', 'ARL accuracy', 'plain-CPT accuracy'], recapMechanismRows(results.ruler)),
    '',
    `## Recap threshold, chosen on development documents (4x T, single needle and 4 keys, training-pool keys)`,
    '',
    table(['ARL model', 'chosen', 'dev accuracy by threshold', 'dev mean gold log-prob by threshold (chooses)'], thresholds),
    '',
    `## LongPPL on held-out documents (key tokens chosen by the base model, Top-16 by long-short gap per document)`,
    '',
    table(['model', 'perplexity', 'LongPPL', 'tokens', 'key tokens'], longppl),
    '',
    `## Stage timings (seconds)`,
    '',
    table(['stage', 'seconds'], Object.entries(results.timings).map(([stage, seconds]) => [stage, seconds.toFixed(1)])),
    '',
    `Plots: [${REPORT_FILES.accuracyPlot}](${REPORT_FILES.accuracyPlot}), [${REPORT_FILES.recapPlot}](${REPORT_FILES.recapPlot}), [${REPORT_FILES.lossPlot}](${REPORT_FILES.lossPlot}).`,
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
  const methods = [...new Set(results.ruler.map((r) => r.method))];
  const byMethod = (method: string) => results.ruler.filter((r) => r.method === method).sort((a, b) => a.length - b.length);
  writeFileAtomic(join(outDir, REPORT_FILES.accuracyPlot), lineChartSvg({
    title: 'Accuracy vs input length (95% intervals)',
    xLabel: 'input length (tokens)',
    yLabel: 'accuracy (0-100)',
    series: methods.map((method) => {
      const points = byMethod(method).map((r) => ({ r, a: accuracy(r) }));
      return { name: method, points: points.map(({ r, a }): [number, number] => [r.length, a.mean]), intervals: points.map(({ a }) => a.ci) };
    }),
  }));
  const agents = methods.filter((m) => byMethod(m).some((r) => r.examples.some((e) => e.recaps_written !== undefined)));
  writeFileAtomic(join(outDir, REPORT_FILES.recapPlot), lineChartSvg({
    title: 'Recap agent: share of answers with a recap holding the answer',
    xLabel: 'input length (tokens)',
    yLabel: 'answers with the answer in a recap (%)',
    series: agents.map((method) => ({
      name: method,
      points: byMethod(method).map((r): [number, number] => [r.length, (100 * r.examples.filter((e) => e.recaps_hold_answer).length) / Math.max(1, r.examples.length)]),
    })),
  }));
  const baseSteps = Number(results.settings.baseSteps);
  const runs = [...new Set(results.ruler.map((r) => r.model))].filter((m) => m !== 'base');
  writeFileAtomic(join(outDir, REPORT_FILES.lossPlot), lineChartSvg({
    title: 'Training loss (weighted: task rows count their answers only)',
    xLabel: 'step (continued pretraining after the base run)',
    yLabel: 'cross-entropy (nats)',
    series: [lossSeries('base', join(outDir, 'runs', 'base'), 0), ...runs.map((m) => lossSeries(m, join(outDir, 'runs', m), baseSteps))],
  }));
}
