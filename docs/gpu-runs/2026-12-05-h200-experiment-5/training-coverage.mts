// Run from the repository root: node --import tsx docs/gpu-runs/2026-12-05-h200-experiment-5/training-coverage.mts
// How often continued pretraining at the small size shows the model a needle recap together with its needle (the
// only rows in which the loader trains it), by simulating the loader's rows over the CPT text: the 60 Brown CPT
// documents and the 400 recall documents as the experiment makes them now, a recap (the needle sentence and its two
// markers) before each restatement, documents in a seeded order. Two row policies over 300 steps of 16 rows:
// before (8 task rows, 4 copy rows, 4 text rows; rows cut at multiples of 512 in every epoch) and now (4 task rows,
// 2 copy rows, 10 text rows; each epoch after the first cut at a new phase).
import { recallDocuments } from '../../../src/arl/recall-documents.ts';
import { makeRng, randomInt, shuffleInPlace } from '../../../src/core/random.ts';
import { readDocuments } from '../../../src/data/corpus.ts';
import { Haystack } from '../../../src/eval/ruler-haystack.ts';
import { BUNDLED_TOKENIZER_PATH, Tokenizer } from '../../../src/tokenizer/sentencepiece.ts';

const W = 512;
const tokenizer = await Tokenizer.load(BUNDLED_TOKENIZER_PATH);
const docs: { id: string; text: string }[] = [];
for await (const d of readDocuments('brown')) {
  docs.push(d);
  if (docs.length === 440) break;
}
const cpt = docs.slice(380, 440);
const recall = recallDocuments({ haystack: Haystack.fromDocuments(cpt), tokenizer, window: W, shortContext: W / 4, seed: 0 }, 400);
const tokensOf = (text: string) => tokenizer.encode(text).length;

// Each document's length in tokens (recaps included) and its needle recaps as [segment start, recap end] offsets.
type Doc = { length: number; recaps: Array<[number, number]> };
const laidOut: Doc[] = cpt.map((d) => ({ length: tokensOf(d.text) + 1, recaps: [] }));
for (const d of recall) {
  const recaps: Array<[number, number]> = [];
  const needles = [...d.text.matchAll(/ One of the special magic numbers for (\S+) is: (\d{7})\./g)];
  // Restatements in reading order, each with its needle.
  const restated = needles
    .map((n) => ({ n, at: d.text.indexOf(`The special magic number for ${n[1]} is ${n[2]}.`) }))
    .sort((a, b) => a.at - b.at);
  // Each recap goes before its restatement, so it shifts everything after that point.
  const recapTokens = restated.map(({ n }) => tokensOf(n[0].trim()) + 2);
  const shiftAt = (char: number) => restated.reduce((sum, r, i) => sum + (r.at < char ? recapTokens[i]! : 0), 0);
  restated.forEach(({ n, at }, i) => {
    const segmentStart = tokensOf(d.text.slice(0, n.index! + 1)) + shiftAt(n.index!);
    const recapEnd = tokensOf(d.text.slice(0, at)) + shiftAt(at) + recapTokens[i]!;
    recaps.push([segmentStart, recapEnd]);
  });
  const inserted = recapTokens.reduce((a, b) => a + b, 0);
  laidOut.push({ length: tokensOf(d.text) + 1 + inserted, recaps });
}
shuffleInPlace(makeRng(7), laidOut);
const spans: Array<[number, number]> = [];
let total = 0;
for (const d of laidOut) {
  for (const [s, e] of d.recaps) spans.push([total + s, total + e]);
  total += d.length;
}

function trained(textRows: number, loadedRows: number, newPhase: boolean): { times: number[] } {
  const times = new Array<number>(spans.length).fill(0);
  const rows: number[] = [];
  for (let epoch = 0; rows.length < 300 * loadedRows; epoch++) {
    const rng = makeRng(1000 + epoch);
    const phase = newPhase && epoch > 0 ? randomInt(rng, 0, W) : 0;
    const starts = Array.from({ length: Math.floor((total - 1 - phase) / W) }, (_, i) => phase + i * W);
    rows.push(...shuffleInPlace(rng, starts));
  }
  for (let step = 0; step < 300; step++) {
    // The first loaded rows of a step become copy rows; the rest are text rows.
    for (const start of rows.slice(step * loadedRows + (loadedRows - textRows), (step + 1) * loadedRows)) {
      spans.forEach(([s, e], i) => {
        if (s >= start && e <= start + W) times[i]!++;
      });
    }
  }
  return { times };
}
const summary = (label: string, { times }: { times: number[] }) => {
  const trainedAtAll = times.filter((t) => t > 0).length;
  console.log(JSON.stringify({ policy: label, needle_recaps: spans.length, trainings: times.reduce((a, b) => a + b, 0), recaps_trained_at_least_once: trainedAtAll, share: Number((trainedAtAll / spans.length).toFixed(3)) }));
};
console.log(JSON.stringify({ cpt_tokens: total, epochs_before: Number(((300 * 8 * W) / total).toFixed(2)), epochs_now: Number(((300 * 12 * W) / total).toFixed(2)) }));
summary('before: 4 text rows of 8 loaded, fixed cuts', trained(4, 8, false));
summary('now: 10 text rows of 12 loaded, a new phase each epoch', trained(10, 12, true));
summary('(now without the phase shift)', trained(10, 12, false));
