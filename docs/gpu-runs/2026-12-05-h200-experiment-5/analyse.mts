// Run from the repository root: node --import tsx docs/gpu-runs/2026-12-05-h200-experiment-5/analyse.mts
// Every number of the fifth run in docs/experiment.md, from the scored examples each evaluation stage wrote
// (predictions/<stage>/<test>/scores.json), with the experiment's own statistics. The recaps-off stage and the
// results files were made by a later call whose copy missed them (see README.md): their claim lines are quoted there.
import { readFileSync } from 'node:fs';
import { comparePaired, wilsonInterval } from '../../../src/eval/paired-stats.ts';

type Example = { task: string; index: number; score: number; pred: string; gold_logprob?: number; recaps_written?: number; recaps_hold_answer?: boolean; recaps?: string[] };
const dir = 'docs/gpu-runs/2026-12-05-h200-experiment-5';
const examples = (stage: string): Example[] => JSON.parse(readFileSync(`${dir}/${stage}/scores.json`, 'utf8')).examples;
const pct = (ok: number, n: number) => {
  const [lo, hi] = wilsonInterval(ok, n);
  return `${ok}/${n} = ${((100 * ok) / n).toFixed(1)}% [${(100 * lo).toFixed(1)}, ${(100 * hi).toFixed(1)}]`;
};
const accuracy = (ex: Example[]) => pct(ex.filter((e) => e.score === 1).length, ex.length);
const byTask = (ex: Example[], task: string) => ex.filter((e) => task === 'both' || e.task === task);
const key = (e: Example) => `${e.task}#${e.index}`;
/** ARL minus plain on the same documents, as the experiment's claims pair them. */
function paired(method: Example[], baseline: Example[], value: (e: Example) => number | undefined = (e) => e.score) {
  const base = new Map(baseline.filter((e) => value(e) !== undefined).map((e) => [key(e), value(e)!]));
  const pairs = method.filter((e) => value(e) !== undefined && base.has(key(e)));
  const c = comparePaired(pairs.map((e) => value(e)!), pairs.map((e) => base.get(key(e))!));
  const rel = c.relative === null ? '-' : `${(100 * c.relative).toFixed(1)}% [${c.relative_ci95!.map((v) => (100 * v).toFixed(1)).join(', ')}]`;
  return `n ${pairs.length}; difference ${c.difference.toFixed(3)} [${c.difference_ci95.map((v) => v.toFixed(3)).join(', ')}]; relative ${rel}`;
}

for (const [name, stage] of [['base 1x', 'predictions/base/1x'], ['base 1x, multiquery rows', 'multiquery-base/predictions/base/1x'], ['plain-CPT 1x', 'predictions/plain-CPT_s1/1x'], ['ARL-CPT 1x', 'predictions/ARL-CPT_s1/1x'], ['plain-CPT 4x', 'predictions/plain-CPT_s1/4x'], ['ARL-CPT 4x', 'predictions/ARL-CPT_s1/4x']] as const) {
  const ex = examples(stage);
  console.log(`${name}: single ${accuracy(byTask(ex, 'niah_single'))}; 4 keys ${accuracy(byTask(ex, 'niah_multikey'))}`);
}
const arl4 = examples('predictions/ARL-CPT_s1/4x');
const plain4 = examples('predictions/plain-CPT_s1/4x');
for (const task of ['niah_single', 'niah_multikey', 'both']) {
  console.log(`4x ${task}: ARL minus plain, accuracy: ${paired(byTask(arl4, task), byTask(plain4, task))}`);
  console.log(`4x ${task}: ARL minus plain, gold log-prob: ${paired(byTask(arl4, task), byTask(plain4, task), (e) => e.gold_logprob)}`);
}
console.log(`1x both: ARL minus plain, accuracy: ${paired(examples('predictions/ARL-CPT_s1/1x'), examples('predictions/plain-CPT_s1/1x'))}`);
const recaps = arl4.reduce((s, e) => s + (e.recaps_written ?? 0), 0);
console.log(`ARL 4x recaps: ${(recaps / arl4.length).toFixed(2)} per answer; answers with a recap holding the value ${arl4.filter((e) => e.recaps_hold_answer).length} of ${arl4.length}`);
const holding = arl4.filter((e) => e.recaps_hold_answer);
console.log(`  accuracy where a recap held the value ${pct(holding.filter((e) => e.score === 1).length, holding.length)}; elsewhere ${accuracy(arl4.filter((e) => !e.recaps_hold_answer))}`);
const plainByKey = new Map(plain4.map((e) => [key(e), e.score]));
console.log(`  plain CPT on those same answers ${pct(holding.filter((e) => plainByKey.get(key(e)) === 1).length, holding.length)}`);

const thresholds = ['0.5', '0.2', '0.1', '0.05', '0.02', '0.01'];
const off = examples('predictions/dev_ARL-CPT_s1_t0.5/dev-4x');
for (const t of thresholds) {
  const ex = examples(`predictions/dev_ARL-CPT_s1_t${t}/dev-4x`);
  const mean = ex.reduce((s, e) => s + (e.gold_logprob ?? 0), 0) / ex.length;
  console.log(`dev t${t}: ${accuracy(ex)}; recaps/doc ${(ex.reduce((s, e) => s + (e.recaps_written ?? 0), 0) / ex.length).toFixed(1)}; holding the value ${ex.filter((e) => e.recaps_hold_answer).length}; mean gold log-prob ${mean.toFixed(2)}; minus no recaps ${paired(ex, off)}`);
}
