// The experiment's test prompts regenerated as it makes them (held-out Brown documents 460-499, seed 1000, test-pool
// keys, 300 per task and length, window 512), for the analysis scripts of this folder.
import { readDocuments } from '../../../src/data/corpus.ts';
import { testLength } from '../../../src/eval/experiment.ts';
import { generateRulerSample, type RulerSample } from '../../../src/eval/ruler.ts';
import { Haystack } from '../../../src/eval/ruler-haystack.ts';
import type { RulerTask } from '../../../src/eval/ruler-tasks.ts';
import { BUNDLED_TOKENIZER_PATH, Tokenizer } from '../../../src/tokenizer/sentencepiece.ts';

const tokenizer = await Tokenizer.load(BUNDLED_TOKENIZER_PATH);
const docs: { id: string; text: string }[] = [];
for await (const d of readDocuments('brown')) {
  docs.push(d);
  if (docs.length === 500) break;
}
const heldout = Haystack.fromDocuments(docs.slice(460, 500));

/** Test sample `index` of `task` at `multiple` times the window. */
export function testPrompt(task: RulerTask, index: number, multiple: number): RulerSample {
  return generateRulerSample({ task, lengthTokens: testLength(512, multiple), seed: 1000, split: 'test', count: 300, tokenizer, haystack: heldout }, index);
}
