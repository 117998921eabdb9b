/**
 * A real local LLM in CI: `arl recaps --recapper llama-cpp` on our own exported tiny GGUF, run by
 * llama.cpp (node-llama-cpp's prebuilt CPU binaries). The recaps must come from that model: every
 * record names the llama-cpp recapper and the GGUF, and no recap is text copied out of its segment
 * (which is what the extractive recapper writes).
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { readJsonLines } from '../src/io/jsonl.ts';
import type { RecapRecord } from '../src/arl/recap.ts';
import type { SegmentRecord } from '../src/arl/relevant-segment.ts';
import { writeGguf } from '../src/io/gguf.ts';
import { hfWeights } from '../src/io/hf.ts';
import { makeConfig } from '../src/model/config.ts';
import { BUNDLED_TOKENIZER_PATH, Tokenizer } from '../src/tokenizer/sentencepiece.ts';
import { makeTinyArlSegments, runArl, sharpModel, useCpu } from './helpers.ts';

test('arl recaps --recapper llama-cpp runs our exported GGUF and writes its replies as the recaps', async () => {
  await useCpu();
  const work = mkdtempSync(join(tmpdir(), 'arl-llama-cpp-'));
  const { checkpoint, arlDir } = await makeTinyArlSegments(work, 1);
  const tokenizer = await Tokenizer.load(BUNDLED_TOKENIZER_PATH);
  const segments = readJsonLines<SegmentRecord>(join(arlDir, 'segments.jsonl')).filter((s) => s.segment_text.trim() !== '');
  assert.ok(segments.length > 0, 'no segments to recap');

  // The "LLM": a tiny model with a context long enough for the recap prompt.
  const gguf = join(work, 'tiny-llm.gguf');
  const llm = sharpModel(makeConfig(null, { vocabSize: tokenizer.vocabSize, dim: 32, layers: 1, heads: 2, maxSeq: 1024 }));
  try {
    writeGguf(gguf, llm.config, await hfWeights(llm), tokenizer, 'tiny-llm');
  } finally {
    llm.dispose();
  }

  const r = await runArl('recaps', '--keytokens', arlDir, '--recapper', 'llama-cpp', '--llm-gguf', gguf, '--llm-concurrency', '2', '--checkpoint', checkpoint, '--max-recap-tokens', '12', '--backend', 'cpu');
  assert.equal(r.code, 0, r.stderr);
  const recaps = readJsonLines<RecapRecord>(join(arlDir, 'recaps.jsonl'));
  const failed = readJsonLines<{ error: string }>(join(arlDir, 'recaps-failed.jsonl'));
  assert.deepEqual(failed, [], 'recaps that failed');
  assert.equal(recaps.length, new Set(segments.map((s) => `${s.doc}:${s.segment_start}:${s.segment_end}`)).size);
  for (const recap of recaps) {
    assert.equal(recap.recapper, 'llama-cpp');
    assert.equal(recap.model, 'tiny-llm.gguf');
    assert.ok(recap.recap.trim().length > 0, 'empty recap');
    assert.ok(!recap.segment_text.includes(recap.recap.trim()), `recap copied from its segment: ${recap.recap}`);
  }
  assert.ok(existsSync(gguf));
});
