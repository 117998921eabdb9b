// Run from the repository root: node --import tsx docs/gpu-runs/2026-12-04-h200-experiment-3/analyse.mts
// Every number of this run in docs/experiment.md, with the experiment's own scoring and statistics.
import { readFileSync } from 'node:fs';
import { comparePaired, wilsonInterval } from '../../../src/eval/paired-stats.ts';
import { scoreRulerExample } from '../../../src/eval/ruler-score.ts';
import type { RulerTask } from '../../../src/eval/ruler-tasks.ts';

const dir = 'docs/gpu-runs/2026-12-04-h200-experiment-3';
const state = JSON.parse(readFileSync(`${dir}/state.json`, 'utf8'));
const jsonl = (name: string): any[] => readFileSync(`${dir}/${name}`, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
const pct = (ok: number, n: number) => {
  const [lo, hi] = wilsonInterval(ok, n);
  return `${ok}/${n} = ${((100 * ok) / n).toFixed(1)}% [${(100 * lo).toFixed(1)}, ${(100 * hi).toFixed(1)}]`;
};
const interval = (c: ReturnType<typeof comparePaired>) => `${c.difference.toFixed(3)} [${c.difference_ci95.map((v) => v.toFixed(3)).join(', ')}]`;

console.log('stage seconds:', Object.fromEntries(Object.entries(state.stages).map(([k, v]: [string, any]) => [k, Math.round(v.seconds)])));

// 1x: the base and the plain arm (seed 1), 300 held-out samples per task.
for (const stage of ['eval base 1x', 'eval plain-CPT s1 1x']) {
  const examples: any[] = state.stages[stage].result.examples;
  for (const task of ['niah_single', 'niah_multikey']) {
    const ex = examples.filter((e) => e.task === task);
    console.log(`${stage} ${task}: ${pct(ex.filter((e) => e.score === 1).length, ex.length)}`);
  }
}

// The recap threshold grid on the 24 development samples (4x, single needle): accuracy and recap behaviour.
const off = state.stages['eval dev ARL-CPT s1 t0.5 dev-4x'].result.examples.map((e: any) => e.score);
for (const t of ['0.5', '0.2', '0.1', '0.05', '0.02', '0.01']) {
  const ex: any[] = state.stages[`eval dev ARL-CPT s1 t${t} dev-4x`].result.examples;
  const recaps = ex.reduce((s, e) => s + e.recaps_written, 0);
  const holding = ex.filter((e) => e.recaps_hold_answer).length;
  const vsNone = comparePaired(ex.map((e) => e.score), off, { seed: 0 });
  console.log(`dev t${t}: ${pct(ex.filter((e) => e.score === 1).length, ex.length)}; recaps/doc ${(recaps / ex.length).toFixed(1)}; docs with a recap holding the value ${holding}; minus t0.5 (no recaps) ${interval(vsNone)}`);
}

// ARL-CPT s1 at 1x, cut off by the machine's time: the 200 single-needle answers made, paired with the plain arm's.
const answers = new Map(jsonl('tests-1x-answers.jsonl').map((a) => [`${a.task}#${a.index}`, a.outputs as string[]]));
const partial = jsonl('arl-cpt-s1-1x-partial-predictions.jsonl');
const plain = new Map(state.stages['eval plain-CPT s1 1x'].result.examples.map((e: any) => [`${e.task}#${e.index}`, e.score as number]));
const arlScores = partial.map((p) => scoreRulerExample(p.task as RulerTask, p.pred, answers.get(`${p.task}#${p.index}`)!));
const plainScores = partial.map((p) => plain.get(`${p.task}#${p.index}`)!);
const withValue = partial.filter((p) => p.recaps.some((r: string) => answers.get(`${p.task}#${p.index}`)!.every((v) => r.includes(v)))).length;
console.log(`ARL-CPT s1 1x (partial, ${[...new Set(partial.map((p) => p.task))].join(', ')}): ${pct(arlScores.reduce((s, x) => s + x, 0), partial.length)}; plain-CPT on the same: ${pct(plainScores.reduce((s, x) => s + x, 0), partial.length)}; ARL minus plain ${interval(comparePaired(arlScores, plainScores, { seed: 0 }))}; recaps/doc ${(partial.reduce((s, p) => s + p.recaps.length, 0) / partial.length).toFixed(2)}, docs with a recap holding the value ${withValue}`);
const digits = (text: string) => text.replace(/\D/g, '');
const misses = partial.filter((_, i) => arlScores[i] === 0);
const copiedRecap = misses.filter((p) => p.recaps.some((r: string) => digits(r).includes(digits(p.pred).slice(0, 7)))).length;
console.log(`ARL-CPT s1 1x misses: ${misses.length}; the answer's seven digits are in one of the agent's own recaps in ${copiedRecap}`);
