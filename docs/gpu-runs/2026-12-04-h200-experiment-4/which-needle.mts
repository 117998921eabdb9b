// Run from the repository root: node --import tsx docs/gpu-runs/2026-12-04-h200-experiment-4/which-needle.mts [scores.json ...]
// (with paths: the base answers of those runs' scores.json files instead of this run's state.json)
// Which needle did each model copy on the 4-key test at 1x? The run's answers (state.json) against the test inputs,
// regenerated as the experiment makes them (small size: held-out documents 460-499, seed 1000, 300 samples).
import { readFileSync } from 'node:fs';
import { readDocuments } from '../../../src/data/corpus.ts';
import { testLength } from '../../../src/eval/experiment.ts';
import { generateRulerSample } from '../../../src/eval/ruler.ts';
import { Haystack } from '../../../src/eval/ruler-haystack.ts';
import { BUNDLED_TOKENIZER_PATH, Tokenizer } from '../../../src/tokenizer/sentencepiece.ts';

const tokenizer = await Tokenizer.load(BUNDLED_TOKENIZER_PATH);
const docs: { id: string; text: string }[] = [];
for await (const d of readDocuments('brown')) {
  docs.push(d);
  if (docs.length === 500) break;
}
const heldout = Haystack.fromDocuments(docs.slice(460, 500));
const state = JSON.parse(readFileSync(new URL('./state.json', import.meta.url), 'utf8')) as { stages: Record<string, { result?: { examples?: Answer[] } }> };
const samples = new Map<number, { outputs: string[]; needles: string[] }>();
const sample = (index: number) => {
  if (!samples.has(index)) {
    const s = generateRulerSample({ task: 'niah_multikey', lengthTokens: testLength(512, 1), seed: 1000, split: 'test', count: 300, tokenizer, haystack: heldout }, index);
    samples.set(index, { outputs: s.outputs, needles: [...s.input.matchAll(/special magic numbers? for [\w-]+ is: (\d+)/g)].map((m) => m[1]!) });
  }
  return samples.get(index)!;
};
type Answer = { task: string; index: number; pred: string; score: number };
const runs: [string, Answer[]][] = process.argv.length > 2
  ? process.argv.slice(2).map((path) => [path, (JSON.parse(readFileSync(path, 'utf8')) as { examples: Answer[] }).examples])
  : ['eval base 1x', 'eval plain-CPT s1 1x', 'eval ARL-CPT s1 1x'].map((name) => [name.replace(/^eval | 1x$/g, ''), state.stages[name]!.result!.examples!]);
for (const [name, examples] of runs) {
  const answers = examples.filter((e) => e.task === 'niah_multikey');
  let gold = 0;
  let otherNeedle = 0;
  let notANeedle = 0;
  const byGoldOrder = [0, 0, 0, 0].map(() => ({ n: 0, correct: 0 }));
  for (const a of answers) {
    const { outputs, needles } = sample(a.index);
    const pred = String(a.pred).trim().split(/\s/)[0];
    const g = needles.indexOf(outputs[0]!);
    byGoldOrder[g]!.n++;
    if (pred === outputs[0]) {
      gold++;
      byGoldOrder[g]!.correct++;
    } else if (needles.includes(pred)) otherNeedle++;
    else notANeedle++;
  }
  const accuracyByGoldOrder = byGoldOrder.map((o) => `${o.correct}/${o.n}`).join(' ');
  console.log(JSON.stringify({ model: name, n: answers.length, gold, otherNeedle, notANeedle, accuracyByGoldOrder }));
}
