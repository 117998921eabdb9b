// Run from the repository root: node --import tsx docs/gpu-runs/2026-12-05-h200-experiment-5/base-failures.mts
// What the base's wrong 4-key answers at 1x are: the test inputs regenerated as the experiment makes them (held-out
// documents 460-499, seed 1000, test-pool keys), each wrong answer read against the prompt's needles.
import { readFileSync } from 'node:fs';
import { otherNeedleField } from '../../../src/eval/ruler-eval.ts';
import { needlesIn } from '../../../src/eval/ruler-tasks.ts';
import { scoreRulerExample } from '../../../src/eval/ruler-score.ts';
import { testPrompt } from './test-prompts.mts';

const file = 'docs/gpu-runs/2026-12-05-h200-experiment-5/predictions/base/1x/predictions.jsonl';
const answers = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { task: 'niah_single' | 'niah_multikey'; index: number; pred: string });
const counts: Record<string, number> = {};
const add = (what: string) => (counts[what] = (counts[what] ?? 0) + 1);
for (const a of answers.filter((x) => x.task === 'niah_multikey')) {
  const sample = testPrompt(a.task, a.index, 1);
  const score = scoreRulerExample(a.task, a.pred, sample.outputs);
  // Which of the four needles (in the order they appear) was asked for.
  const asked = needlesIn(sample.input).findIndex((n) => n.value === sample.outputs[0]);
  add(`asked needle ${asked + 1} of 4: ${score === 1 ? 'right' : 'wrong'}`);
  if (score === 1) add('right');
  else add(otherNeedleField(sample.input, sample.outputs, a.pred, score).answered_other_needle ? "wrong: another needle's value" : 'wrong: a value of no needle');
}
console.log(JSON.stringify(counts, Object.keys(counts).sort(), 1));
