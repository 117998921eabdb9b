// Run from the repository root (node --import tsx docs/gpu-runs/2026-12-04-h200-copy-rows/export-rows.mts): writes .gpu/pilot/, which torch_pilot.py reads.
// Dump the experiment's base training rows and 1x test prompts for a PyTorch cross-check.
import { writeFileSync } from 'node:fs';
import { Tokenizer, BUNDLED_TOKENIZER_PATH } from '../../../src/tokenizer/sentencepiece.ts';
import { TaskRows, DEFAULT_TASK_ROWS } from '../../../src/data/task-rows.ts';
import { Haystack } from '../../../src/eval/ruler-haystack.ts';
import { generateRulerSample } from '../../../src/eval/ruler.ts';
import { readDocuments } from '../../../src/data/corpus.ts';
import { makeConfig } from '../../../src/model/config.ts';
const tok = await Tokenizer.load(BUNDLED_TOKENIZER_PATH);
const docs: any[] = [];
for await (const d of readDocuments('brown')) { docs.push(d); if (docs.length === 500) break; }
const base = docs.slice(0, 380), heldout = docs.slice(460, 500);
const seq = 512, steps = Number(process.env.STEPS ?? 1500), taskPerBatch = 12;
const cfg = makeConfig('base', { vocabSize: tok.vocabSize, maxSeq: 512, kvHeads: 8, hiddenDim: 1368 });
writeFileSync('.gpu/pilot/cfg.json', JSON.stringify({ ...cfg, bos: tok.bosId, eos: tok.eosId, steps, taskPerBatch }));
const rows = await TaskRows.open({ ...DEFAULT_TASK_ROWS, fraction: 0.75, tasks: ['niah_single', 'niah_multikey'] }, tok, seq, 1, Haystack.fromDocuments(base));
const n = steps * taskPerBatch;
const toks = new Int16Array(n * (seq + 1));
const wts = new Float32Array(n * seq);
for (let i = 0; i < n; i++) { const r = rows.row(i); toks.set(r.tokens, i * (seq + 1)); wts.set(r.weights, i * seq); if (i % 2000 === 0) console.log('row', i); }
writeFileSync('.gpu/pilot/task_tokens.i16', Buffer.from(toks.buffer));
// weights: store as uint8 mask of answer tokens (haystack weight 0); python rescales per row to sum seq
const mask = new Uint8Array(n * seq); for (let i = 0; i < wts.length; i++) mask[i] = wts[i]! > 0 ? 1 : 0;
writeFileSync('.gpu/pilot/task_mask.u8', Buffer.from(mask.buffer));
const text: number[] = [];
for (const d of base) { text.push(tok.bosId, ...tok.encode(d.text), tok.eosId); }
writeFileSync('.gpu/pilot/text_tokens.i16', Buffer.from(new Int16Array(text).buffer));
const hay = Haystack.fromDocuments(heldout);
const lines: string[] = [];
for (const task of ['niah_single', 'niah_multikey'] as const) for (let i = 0; i < 300; i++) {
  const s = generateRulerSample({ task, lengthTokens: 384, seed: 1000, split: 'test', count: 300, tokenizer: tok, haystack: hay }, i);
  lines.push(JSON.stringify({ task, ids: [tok.bosId, ...tok.encode(s.input)], gold: s.outputs[0], goldIds: tok.encode(`${s.outputs.join(', ')}\n`) }));
}
writeFileSync('.gpu/pilot/test.jsonl', lines.join('\n') + '\n');
console.log('text tokens', text.length, 'task rows', n);
