// Run from the repository root: node --import tsx docs/gpu-runs/2026-12-04-h200-4key-pilot/export-rows.mts OUT TASKS ROWS
// Writes OUT/: the base's task rows for TASKS (comma-separated RULER tasks), ROWS of them, the answer mask as
// packed bits, the training text, and a development set (dev documents, never the experiment's test documents).
import { mkdirSync, writeFileSync } from 'node:fs';
import { Tokenizer, BUNDLED_TOKENIZER_PATH } from '../../../src/tokenizer/sentencepiece.ts';
import { TaskRows, DEFAULT_TASK_ROWS } from '../../../src/data/task-rows.ts';
import { Haystack } from '../../../src/eval/ruler-haystack.ts';
import { generateRulerSample } from '../../../src/eval/ruler.ts';
import type { RulerTask } from '../../../src/eval/ruler-tasks.ts';
import { readDocuments } from '../../../src/data/corpus.ts';
import { makeConfig } from '../../../src/model/config.ts';
const [out, taskList, rowCount] = process.argv.slice(2) as [string, string, string];
mkdirSync(out, { recursive: true });
const tok = await Tokenizer.load(BUNDLED_TOKENIZER_PATH);
const docs: any[] = [];
for await (const d of readDocuments('brown')) { docs.push(d); if (docs.length === 460) break; }
// The experiment's split of the first 500 Brown documents: base 0-379, CPT 380-439, dev 440-459, held out 460-499.
const base = docs.slice(0, 380), dev = docs.slice(440, 460);
const seq = 512, n = Number(rowCount);
const cfg = makeConfig('base', { vocabSize: tok.vocabSize, maxSeq: 512, kvHeads: 8, hiddenDim: 1368 });
writeFileSync(`${out}/cfg.json`, JSON.stringify({ ...cfg, bos: tok.bosId, eos: tok.eosId, rows: n }));
const rows = await TaskRows.open({ ...DEFAULT_TASK_ROWS, fraction: 0.5, tasks: taskList.split(',') as RulerTask[] }, tok, seq, 1, Haystack.fromDocuments(base));
const toks = new Int16Array(n * (seq + 1));
const mask = new Uint8Array((n * seq) / 8); // np.packbits order: first position in the high bit
for (let i = 0; i < n; i++) {
  const r = rows.row(i);
  toks.set(r.tokens, i * (seq + 1));
  r.weights.forEach((w, j) => { if (w > 0) { const k = i * seq + j; mask[k >> 3]! |= 0x80 >> (k & 7); } });
  if (i % 4000 === 0) console.log('row', i);
}
writeFileSync(`${out}/task_tokens.i16`, Buffer.from(toks.buffer));
writeFileSync(`${out}/task_mask.bits`, Buffer.from(mask.buffer));
const text: number[] = [];
for (const d of base) text.push(tok.bosId, ...tok.encode(d.text), tok.eosId);
writeFileSync(`${out}/text_tokens.i16`, Buffer.from(new Int16Array(text).buffer));
const hay = Haystack.fromDocuments(dev);
const lines: string[] = [];
for (const task of ['niah_single', 'niah_multikey'] as const) for (let i = 0; i < 200; i++) {
  const s = generateRulerSample({ task, lengthTokens: 384, seed: 2000, split: 'test', count: 200, tokenizer: tok, haystack: hay }, i);
  lines.push(JSON.stringify({ task, ids: [tok.bosId, ...tok.encode(s.input)], gold: s.outputs[0], goldIds: tok.encode(`${s.outputs.join(', ')}\n`) }));
}
writeFileSync(`${out}/dev.jsonl`, lines.join('\n') + '\n');
console.log('text tokens', text.length, 'task rows', n);
