/** Parity with Hugging Face transformers: logits within 1e-4 and greedy continuation token for token. */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { generate } from '../src/infer/generate.ts';
import { assignHfWeights, readHfCheckpoint } from '../src/io/hf.ts';
import { LlamaModel } from '../src/model/llama.ts';
import { maxAbsDiff, TEST_FIXTURES, tf, useCpu } from './helpers.ts';

interface Reference {
  input_ids: number[][];
  logits: number[][][];
  greedy: { prompt: number[]; output: number[] };
}

/** test/fixtures/tiny-llama, plus every reference checkpoint made by scripts/make-hf-fixtures.py. */
const fixtureDirs = [join(TEST_FIXTURES, 'tiny-llama')];
if (existsSync(join(TEST_FIXTURES, 'hf'))) {
  for (const name of readdirSync(join(TEST_FIXTURES, 'hf')).sort()) fixtureDirs.push(join(TEST_FIXTURES, 'hf', name));
}

before(useCpu);

for (const dir of fixtureDirs) {
  describe(`HF parity: ${dir.split('/').slice(-1)[0]}`, () => {
    const ref = JSON.parse(readFileSync(join(dir, 'reference.json'), 'utf8')) as Reference;
    const { config, tensors } = readHfCheckpoint(dir);

    test('logits match within 1e-4', () => {
      const model = new LlamaModel(config);
      assignHfWeights(model, tensors, dir);
      const ids = tf.tensor2d(ref.input_ids, undefined, 'int32');
      const logits = tf.tidy(() => model.logits(ids));
      const diff = maxAbsDiff(logits.dataSync(), ref.logits.flat(2));
      tf.dispose([ids, logits]);
      model.dispose();
      assert.ok(diff < 1e-4, `max abs logit difference ${diff}`);
    });

    test('greedy continuation matches token for token (with and without KV cache)', async () => {
      const model = new LlamaModel(config);
      assignHfWeights(model, tensors, dir);
      const { prompt, output } = ref.greedy;
      const wanted = output.slice(prompt.length);
      for (const useCache of [true, false]) {
        const got = await generate(model, prompt, { greedy: true, maxNewTokens: wanted.length, useCache });
        assert.deepEqual(got, wanted, `useCache=${useCache}`);
      }
      model.dispose();
    });
  });
}
