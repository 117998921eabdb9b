// Run from the repository root: node --import tsx docs/gpu-runs/2026-12-04-h200-lift/analyse.mts
// The LIFT comparisons of this run, with the experiment's own paired bootstrap (src/eval/paired-stats.ts).
import { readFileSync } from 'node:fs';
import { comparePaired, wilsonInterval } from '../../../src/eval/paired-stats.ts';
const here = 'docs/gpu-runs/2026-12-04-h200-lift';
const lines = (f: string) => readFileSync(`${here}/${f}`, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
const state = JSON.parse(readFileSync(`${here}/state.json`, 'utf8'));
const base = state.stages['eval base 1x'].result;
for (const task of ['niah_single', 'niah_multikey']) {
  const ex = base.examples.filter((e: any) => e.task === task);
  const ok = ex.filter((e: any) => e.score === 1).length;
  const [lo, hi] = wilsonInterval(ok, ex.length);
  console.log(`base 1x ${task}: ${ok}/${ex.length} = ${(100 * ok / ex.length).toFixed(1)}% [${(100 * lo).toFixed(1)}, ${(100 * hi).toFixed(1)}]`);
}
const variants: [string, any[]][] = [['paper (3 + 5 epochs)', state.stages['lift paper'].result], ['more-steps (6 + 10 epochs), first 24 of 40 documents', lines('lift-more-steps-predictions-24of40.jsonl')]];
for (const [name, ex] of variants) {
  const lp = comparePaired(ex.map((e) => e.gold_logprob), ex.map((e) => e.icl_gold_logprob), { seed: 0 });
  const wins = ex.filter((e) => e.gold_logprob > e.icl_gold_logprob).length;
  const em = ex.filter((e) => e.pred === e.gold || e.score === 1).length;
  console.log(`LIFT ${name}: n=${lp.n}; gold log-prob ${lp.method.toFixed(2)} vs ICL ${lp.baseline.toFixed(2)}; paired gain ${lp.difference.toFixed(2)} nats [${lp.difference_ci95.map((v) => v.toFixed(2)).join(', ')}]; higher on ${wins}/${ex.length}; exact match LIFT ${ex.filter((e) => e.score === 1).length}, ICL ${ex.filter((e) => e.icl_score === 1).length}${em ? '' : ''}`);
  const preds = new Map<string, number>();
  for (const e of ex) preds.set(e.pred, (preds.get(e.pred) ?? 0) + 1);
  console.log(`  LIFT answers: ${[...preds].sort((a, b) => b[1] - a[1]).slice(0, 5).map(([p, c]) => `${p} x${c}`).join(', ')}`);
}
