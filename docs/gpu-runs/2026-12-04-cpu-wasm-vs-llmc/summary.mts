// Prints the per-round ratios (ours / llm.c, training tokens/s) of run-a.jsonl and run-b.jsonl:
// node --import tsx docs/gpu-runs/2026-12-04-cpu-wasm-vs-llmc/summary.mts
import { readFileSync } from 'node:fs';

interface Row { config: number; round: number; side: 'llm.c' | 'ours'; tokens_per_s: number }

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
for (const run of ['run-a', 'run-b']) {
  const rows = readFileSync(new URL(`./${run}.jsonl`, import.meta.url), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Row);
  for (const config of [1, 2]) {
    const ratios: number[] = [];
    for (const round of new Set(rows.filter((r) => r.config === config).map((r) => r.round))) {
      const side = (s: Row['side']) => rows.find((r) => r.config === config && r.round === round && r.side === s)!.tokens_per_s;
      ratios.push(side('ours') / side('llm.c'));
      console.log(`${run} config ${config} round ${round}: llm.c ${side('llm.c').toFixed(0)}, ours ${side('ours').toFixed(0)}, ratio ${(side('ours') / side('llm.c')).toFixed(3)}`);
    }
    console.log(`${run} config ${config}: median ratio ${median(ratios).toFixed(3)}, range ${Math.min(...ratios).toFixed(3)}-${Math.max(...ratios).toFixed(3)} (${ratios.length} rounds)`);
  }
}
