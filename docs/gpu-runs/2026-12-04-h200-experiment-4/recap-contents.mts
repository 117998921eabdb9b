// Run from the repository root: node --import tsx docs/gpu-runs/2026-12-04-h200-experiment-4/recap-contents.mts [PREDICTIONS]
// (PREDICTIONS: an experiment's predictions folder, for its dev_ARL-CPT_s1_t*/dev-4x answers; default this run's copies)
// What the ARL model's recaps held on the development documents (4x, single needle), against the needle each
// document really had (the development inputs regenerated as the experiment makes them: documents 440-459,
// seed 2000, training-pool keys), and how often the training rows of this run could show the model the needle
// it was taught to recap (the 400 recall documents regenerated as the experiment makes them, rows of 512).
// Recall documents have changed since (several needles, corpus-word keys): for the figures in docs/experiment.md, run
// this at commit e1ca796 (`git worktree add /tmp/e1ca796 e1ca796`).
import { readFileSync } from 'node:fs';
import { recallDocuments } from '../../../src/arl/recall-documents.ts';
import { readDocuments } from '../../../src/data/corpus.ts';
import { testLength } from '../../../src/eval/experiment.ts';
import { generateRulerSample } from '../../../src/eval/ruler.ts';
import { Haystack } from '../../../src/eval/ruler-haystack.ts';
import { BUNDLED_TOKENIZER_PATH, Tokenizer } from '../../../src/tokenizer/sentencepiece.ts';

const W = 512;
const tokenizer = await Tokenizer.load(BUNDLED_TOKENIZER_PATH);
const docs: { id: string; text: string }[] = [];
for await (const d of readDocuments('brown')) {
  docs.push(d);
  if (docs.length === 460) break;
}
const dev = Haystack.fromDocuments(docs.slice(440, 460));
const needlePattern = /magic numbers? for ([\w-]+)(?: mentioned in the provided text)? is:? (\d+)/;
for (const threshold of ['0.1', '0.05', '0.02', '0.01']) {
  const predictions = process.argv[2];
  const file = predictions ? `${predictions}/dev_ARL-CPT_s1_t${threshold}/dev-4x/predictions.jsonl` : new URL(`./dev-arl-cpt-s1-t${threshold}-predictions.jsonl`, import.meta.url);
  const answers = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { index: number; recaps: string[] });
  let recaps = 0;
  let needleLike = 0;
  let rightValue = 0;
  let rightKey = 0;
  for (const answer of answers) {
    const sample = generateRulerSample({ task: 'niah_single', lengthTokens: testLength(W, 4), seed: 2000, split: 'train', count: 24, tokenizer, haystack: dev }, answer.index);
    const [, key, value] = sample.input.match(needlePattern)!;
    recaps += answer.recaps.length;
    for (const recap of answer.recaps) {
      const m = recap.match(needlePattern);
      if (!m) continue;
      needleLike++;
      if (m[2] === value) rightValue++;
      if (m[1] === key) rightKey++;
    }
  }
  console.log(JSON.stringify({ threshold: Number(threshold), documents: answers.length, recaps, needle_like: needleLike, with_the_needles_value: rightValue, with_the_needles_key: rightKey }));
}

// The needle recap of each recall document reaches from the needle sentence to the end of the recap, which goes
// before the restatement. A row of W tokens at a uniformly random phase holds all of it with chance 1 - reach/W.
const recall = recallDocuments({ haystack: Haystack.fromDocuments(docs.slice(380, 440)), tokenizer, window: W, shortContext: W / 4, seed: 0 }, 400);
const reaches = recall.map((d) => {
  const needle = d.text.indexOf(' One of the special magic numbers');
  const needleSentence = d.text.slice(needle + 1, d.text.indexOf('\n', needle));
  const restatement = tokenizer.encode(d.text.slice(0, d.text.indexOf('The special magic number for'))).length + 1;
  return restatement + tokenizer.encode(needleSentence).length + 2 - (tokenizer.encode(d.text.slice(0, needle)).length + 1);
}).sort((a, b) => a - b);
const held = reaches.reduce((sum, r) => sum + Math.max(0, 1 - r / W), 0) / reaches.length;
console.log(JSON.stringify({ recall_documents: recall.length, needle_recap_reach: { min: reaches[0], median: reaches[reaches.length >> 1], max: reaches.at(-1) }, share_of_rows_holding_the_needle_too: Number(held.toFixed(3)) }));
