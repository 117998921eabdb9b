// Run from the repository root: node --import tsx docs/gpu-runs/2026-12-04-h200-experiment-4/analyse.mts
// Every number of this run in docs/experiment.md, with the experiment's own scoring and statistics.
import { readFileSync } from 'node:fs';
import { comparePaired, wilsonInterval } from '../../../src/eval/paired-stats.ts';

const dir = 'docs/gpu-runs/2026-12-04-h200-experiment-4';
const state = JSON.parse(readFileSync(`${dir}/state.json`, 'utf8'));
const pct = (ok: number, n: number) => {
  const [lo, hi] = wilsonInterval(ok, n);
  return `${ok}/${n} = ${((100 * ok) / n).toFixed(1)}% [${(100 * lo).toFixed(1)}, ${(100 * hi).toFixed(1)}]`;
};
const interval = (c: ReturnType<typeof comparePaired>) => `${(100 * c.difference).toFixed(1)} points [${c.difference_ci95.map((v) => (100 * v).toFixed(1)).join(', ')}]`;
const examples = (stage: string): any[] => state.stages[stage].result.examples;
const key = (e: any) => `${e.task}#${e.index}`;

console.log('stage seconds:', Object.fromEntries(Object.entries(state.stages).map(([k, v]: [string, any]) => [k, Math.round(v.seconds)])));

// 1x: the base and both arms of seed 1, 300 held-out samples per task.
for (const stage of ['eval base 1x', 'eval plain-CPT s1 1x', 'eval ARL-CPT s1 1x']) {
  for (const task of ['niah_single', 'niah_multikey']) {
    const ex = examples(stage).filter((e) => e.task === task);
    console.log(`${stage} ${task}: ${pct(ex.filter((e) => e.score === 1).length, ex.length)}`);
  }
}

// The recap threshold grid on the 24 development samples (4x, single needle): accuracy and recap behaviour.
const off = examples('eval dev ARL-CPT s1 t0.5 dev-4x').map((e) => e.score);
for (const t of ['0.5', '0.2', '0.1', '0.05', '0.02', '0.01']) {
  const ex = examples(`eval dev ARL-CPT s1 t${t} dev-4x`);
  const recaps = ex.reduce((s, e) => s + e.recaps_written, 0);
  const holding = ex.filter((e) => e.recaps_hold_answer).length;
  console.log(`dev t${t}: ${pct(ex.filter((e) => e.score === 1).length, ex.length)}; recaps/doc ${(recaps / ex.length).toFixed(1)}; docs with a recap holding the value ${holding}; minus t0.5 (no recaps) ${interval(comparePaired(ex.map((e) => e.score), off, { seed: 0 }))}`);
}

// The declared 1x falsifier (ARL loses more than 5 points at 1x): ARL-CPT + agent against plain CPT, paired, per task and pooled.
const plain = new Map(examples('eval plain-CPT s1 1x').map((e) => [key(e), e.score as number]));
const arl = examples('eval ARL-CPT s1 1x');
for (const task of ['niah_single', 'niah_multikey', 'both']) {
  const ex = arl.filter((e) => task === 'both' || e.task === task);
  const c = comparePaired(ex.map((e) => e.score), ex.map((e) => plain.get(key(e))!), { seed: 0 });
  const recaps = ex.reduce((s, e) => s + e.recaps_written, 0);
  console.log(`1x ${task} (n ${ex.length}): ARL minus plain ${interval(c)}; recaps/doc ${(recaps / ex.length).toFixed(2)}; answers with a recap holding every value ${ex.filter((e) => e.recaps_hold_answer).length}`);
}
