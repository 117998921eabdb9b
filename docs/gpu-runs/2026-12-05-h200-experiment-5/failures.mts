// Run from the repository root: node --import tsx docs/gpu-runs/2026-12-05-h200-experiment-5/failures.mts [PREDICTIONS SEED]
// (default: this run's predictions folder, seed 1; files may be gzipped, FILE.gz).
// Where the ARL model's 4x answers went wrong: the test inputs regenerated as the experiment makes them (held-out
// documents 460-499, seed 1000, test-pool keys), each answer's recaps read against the document's needles.
import { existsSync, readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { entityPool, needlesIn } from '../../../src/eval/ruler-tasks.ts';
import { testPrompt } from './test-prompts.mts';

type Answer = { task: 'niah_single' | 'niah_multikey'; index: number; pred: string; recaps: string[] };
type Scored = { task: string; index: number; score: number; in_context?: boolean };
const [dir = 'docs/gpu-runs/2026-12-05-h200-experiment-5/predictions', seed = '1'] = process.argv.slice(2);
const recapPair = /magic numbers? for ([\w-]+)(?: mentioned in the provided text)? is:? (\d+)/g;
const read = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8') : gunzipSync(readFileSync(`${file}.gz`)).toString('utf8'));
const lines = (file: string) => read(file).trim().split('\n').map((l) => JSON.parse(l));
const answers: Answer[] = lines(`${dir}/ARL-CPT_s${seed}/4x/predictions.jsonl`);
const scored = new Map((JSON.parse(read(`${dir}/ARL-CPT_s${seed}/4x/scores.json`)).examples as Scored[]).map((e) => [`${e.task}#${e.index}`, e]));
const plain = new Map((JSON.parse(read(`${dir}/plain-CPT_s${seed}/4x/scores.json`)).examples as Scored[]).map((e) => [`${e.task}#${e.index}`, e]));

const counts: Record<string, Record<string, number>> = {};
const add = (task: string, what: string) => {
  counts[task] ??= {};
  counts[task]![what] = (counts[task]![what] ?? 0) + 1;
};
for (const a of answers) {
  const sample = testPrompt(a.task, a.index, 4);
  const docNeedles = needlesIn(sample.input);
  const gold = sample.outputs[0]!;
  const asked = docNeedles.find((n) => n.value === gold)!.key;
  const pairs = a.recaps.flatMap((r) => [...r.matchAll(recapPair)].map((m) => ({ key: m[1]!, value: m[2]! })));
  const right = scored.get(`${a.task}#${a.index}`)!.score === 1;
  const task = a.task;
  add(task, 'answers');
  if (right) add(task, 'right');
  if (plain.get(`${a.task}#${a.index}`)!.score === 1) add(task, 'plain right');
  if (scored.get(`${a.task}#${a.index}`)!.in_context) add(task, 'needle in the last window');
  add(task, `recaps ${Math.min(a.recaps.length, 6)}${a.recaps.length >= 6 ? '+' : ''}`);
  const needlePairs = pairs.length;
  counts[task]!['needle-form recaps'] = (counts[task]!['needle-form recaps'] ?? 0) + needlePairs;
  // Where each needle-form recap's key came from: the asked key, another needle of the document, or words of the
  // training pool (the keys of the base's task rows and of the CPT recall documents).
  for (const p of pairs) {
    const [adjective, noun] = p.key.split('-');
    const [askedAdjective, askedNoun] = asked.split('-');
    if (p.key === asked) add(task, 'recap key: the asked key');
    else if (docNeedles.some((n) => n.key === p.key)) add(task, "recap key: another needle's key");
    else if (adjective === askedAdjective || noun === askedNoun) add(task, 'recap key: one word of the asked key');
    else if (entityPool(adjective ?? '') === 'train' && entityPool(noun ?? '') === 'train') add(task, 'recap key: both words from the training pool');
    else add(task, 'recap key: other');
  }
  const withGold = pairs.filter((p) => p.value === gold);
  if (withGold.some((p) => p.key === asked)) add(task, 'a recap pairs the asked key with its value');
  else if (withGold.length) add(task, "a recap holds the value under another key");
  else if (pairs.some((p) => docNeedles.some((n) => n.value === p.value))) add(task, "recaps hold only another needle's value");
  else if (pairs.some((p) => gold.startsWith(p.value) || p.value.startsWith(gold.slice(0, 5)))) add(task, 'a recap holds the value with digits lost or changed');
  else if (needlePairs) add(task, 'needle-form recaps with made-up values only');
  else add(task, 'no needle-form recap');
  const pred = a.pred.replace(/\D+$/, '');
  if (right) add(task, 'answer: right');
  else if (pairs.some((p) => p.value === pred)) add(task, "answer: wrong, a recap's value");
  else if (docNeedles.some((n) => n.value === pred)) add(task, "answer: wrong, another needle's value");
  else add(task, 'answer: wrong, other');
  if (withGold.length && !right) add(task, 'recap held the value, answer wrong');
}
for (const [task, c] of Object.entries(counts)) console.log(task, JSON.stringify(c, Object.keys(c).sort(), 1));
