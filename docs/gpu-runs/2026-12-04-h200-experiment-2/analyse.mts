// Run from the repository root: node --import tsx docs/gpu-runs/2026-12-04-h200-experiment-2/analyse.mts
// The base and LIFT results of this run, with the experiment's own statistics (src/eval/paired-stats.ts).
import { readFileSync } from 'node:fs';
import { comparePaired, wilsonInterval } from '../../../src/eval/paired-stats.ts';
const state = JSON.parse(readFileSync('docs/gpu-runs/2026-12-04-h200-experiment-2/state.json', 'utf8'));
const base = state.stages['eval base 1x'].result;
for (const task of ['niah_single', 'niah_multikey']) {
  const ex = base.examples.filter((e: any) => e.task === task);
  const ok = ex.filter((e: any) => e.score === 1).length;
  const [lo, hi] = wilsonInterval(ok, ex.length);
  console.log(`base 1x ${task}: ${ok}/${ex.length} = ${(100 * ok / ex.length).toFixed(1)}% [${(100 * lo).toFixed(1)}, ${(100 * hi).toFixed(1)}]`);
}
const fmt = (c: ReturnType<typeof comparePaired>) => `${c.difference.toFixed(2)} [${c.difference_ci95.map((v) => v.toFixed(2)).join(', ')}]`;
for (const stage of ['lift paper', 'lift more-steps', 'lift paper, 64-word values']) {
  const ex: any[] = state.stages[stage].result;
  const gain = (e: any) => e.gold_logprob - e.icl_gold_logprob;
  const controlGain = (e: any) => e.control_logprob - e.icl_control_logprob;
  const gold = comparePaired(ex.map((e) => e.gold_logprob), ex.map((e) => e.icl_gold_logprob), { seed: 0 });
  const control = comparePaired(ex.map((e) => e.control_logprob), ex.map((e) => e.icl_control_logprob), { seed: 0 });
  const stores = comparePaired(ex.map(gain), ex.map(controlGain), { seed: 0 });
  console.log(`${stage}: n=${ex.length}; gold gain ${fmt(gold)} nats, higher on ${ex.filter((e) => gain(e) > 0).length}; control gain ${fmt(control)}; gold gain minus control gain ${fmt(stores)}; exact match LIFT ${ex.filter((e) => e.score === 1).length}, ICL ${ex.filter((e) => e.icl_score === 1).length}`);
}
