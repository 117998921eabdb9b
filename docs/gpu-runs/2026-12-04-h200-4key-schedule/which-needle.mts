// Run from the repository root: node --import tsx docs/gpu-runs/2026-12-04-h200-4key-schedule/which-needle.mts
// Which needle did the base copy on the 4-key test? The earlier run's predictions against its regenerated test inputs.
import { readFileSync } from 'node:fs';
import { Tokenizer, BUNDLED_TOKENIZER_PATH } from '../../../src/tokenizer/sentencepiece.ts';
import { Haystack } from '../../../src/eval/ruler-haystack.ts';
import { generateRulerSample } from '../../../src/eval/ruler.ts';
import { readDocuments } from '../../../src/data/corpus.ts';
const tok = await Tokenizer.load(BUNDLED_TOKENIZER_PATH);
const docs: any[] = [];
for await (const d of readDocuments('brown')) { docs.push(d); if (docs.length === 500) break; }
const heldout = Haystack.fromDocuments(docs.slice(460, 500));
const preds = readFileSync('docs/gpu-runs/2026-12-04-h200-lift/base-1x-predictions.jsonl', 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((p) => p.task === 'niah_multikey');
let gold = 0, other = 0, none = 0; const pos: number[] = [0, 0, 0, 0];
for (const p of preds) {
  const s = generateRulerSample({ task: 'niah_multikey', lengthTokens: 512 - 128, seed: 1000, split: 'test', count: 300, tokenizer: tok, haystack: heldout }, p.index);
  const values = [...s.input.matchAll(/special magic numbers? for [\w-]+ is: (\d+)/g)].map((m) => m[1]);
  const pred = String(p.pred).trim().split(/\s/)[0];
  if (pred === s.outputs[0]) gold++; else if (values.includes(pred)) other++; else none++;
  const k = values.indexOf(pred); if (k >= 0) pos[k]!++;
}
console.log({ n: preds.length, gold, otherNeedle: other, notANeedle: none, byNeedleOrder: pos });
