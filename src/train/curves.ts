/**
 * Training curves: loss (train and validation), learning rate and throughput from a run's
 * metrics.jsonl, drawn as SVG into <run>/plots/. The trainer redraws them at every checkpoint save
 * and `arl plot --run DIR` on demand; each file is replaced atomically.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { readJsonLines } from '../io/jsonl.ts';
import { writeFileAtomic } from '../io/atomic.ts';
import { UserError } from '../io/errors.ts';
import { lineChartSvg } from '../eval/plot.ts';
import type { StepMetrics } from './trainer.ts';

export const METRICS_FILE = 'metrics.jsonl';
export const PLOTS_DIR = 'plots';

/** Writes loss.svg, lr.svg and tokens-per-s.svg under <runDir>/plots/ and returns their paths. */
export function writeTrainingCurves(runDir: string): string[] {
  const file = join(runDir, METRICS_FILE);
  if (!existsSync(file)) throw new UserError(`${runDir}: no ${METRICS_FILE}; pass the --out folder of an \`arl train\` run`);
  const metrics = readJsonLines<StepMetrics>(file);
  const points = (pick: (m: StepMetrics) => number | undefined): [number, number][] =>
    metrics.filter((m) => pick(m) !== undefined).map((m) => [m.step, pick(m)!]);
  const charts: Record<string, Parameters<typeof lineChartSvg>[0]> = {
    'loss.svg': {
      title: 'Loss',
      xLabel: 'step',
      yLabel: 'cross-entropy (nats)',
      series: [
        { name: 'train', points: points((m) => m.loss) },
        { name: 'validation', points: points((m) => m.val_loss) },
      ],
    },
    'lr.svg': { title: 'Learning rate', xLabel: 'step', yLabel: 'learning rate', series: [{ name: 'lr', points: points((m) => m.lr) }], logY: true },
    'tokens-per-s.svg': { title: 'Throughput', xLabel: 'step', yLabel: 'tokens per second', series: [{ name: 'tokens/s', points: points((m) => m.tokens_per_s) }] },
  };
  return Object.entries(charts).map(([name, chart]) => {
    const path = join(runDir, PLOTS_DIR, name);
    writeFileAtomic(path, lineChartSvg(chart));
    return path;
  });
}
