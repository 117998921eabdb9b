/**
 * tfjs export: `arl export --format tfjs` writes a LayersModel that plain @tensorflow/tfjs loads in
 * headless Chromium once our browser bundle has registered the layers, and its logits there equal ours.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { buildBrowserLayers } from '../scripts/build-browser.ts';
import { saveCheckpoint } from '../src/io/checkpoint.ts';
import { makeConfig } from '../src/model/config.ts';
import { BUNDLED_TOKENIZER_PATH } from '../src/tokenizer/sentencepiece.ts';
import { chromiumSkip, withPage } from './browser.ts';
import { assertUserError, runArl, sharpModel, tf, useCpu } from './helpers.ts';

const TFJS_DIST = join(dirname(createRequire(import.meta.url).resolve('@tensorflow/tfjs/package.json')), 'dist');

const PAGE = `<!doctype html><html><head><meta charset="utf-8">
<script src="/tf.min.js"></script><script src="/arl-tfjs-layers.js"></script></head><body></body></html>`;

test('the tfjs export loads in headless Chromium with plain tfjs plus our layer bundle, and its logits equal ours', { skip: chromiumSkip() }, async () => {
  await useCpu();
  const work = mkdtempSync(join(tmpdir(), 'arl-tfjs-'));
  const checkpoint = join(work, 'ckpt');
  // Tied embeddings, GQA and a sliding window: the export carries what the GGUF format cannot.
  const config = makeConfig(null, { vocabSize: 4096, dim: 64, layers: 2, heads: 4, kvHeads: 2, maxSeq: 64, tieEmbeddings: true, attentionWindow: 12 });
  const model = sharpModel(config);
  await saveCheckpoint(checkpoint, model, BUNDLED_TOKENIZER_PATH);
  const ids = [1, 339, 503, 1147, 555, 332, 265, 953, 280, 265, 12, 99, 7, 3000, 42, 17, 5, 1000, 2048, 333];
  const oursTensor = tf.tidy(() => model.logits(tf.tensor2d([ids], [1, ids.length], 'int32')));
  const ours = (await oursTensor.data()) as Float32Array;
  oursTensor.dispose();
  model.dispose();

  const out = join(work, 'exported');
  const r = await runArl('export', '--checkpoint', checkpoint, '--format', 'tfjs', '--out', out);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /tfjs LayersModel, 1 weight shard/);
  assert.deepEqual(readdirSync(out).sort(), ['group1-shard1of1.bin', 'model.json', 'tokenizer.model']);
  const manifest = JSON.parse(readFileSync(join(out, 'model.json'), 'utf8'));
  assert.equal(manifest.format, 'layers-model');
  assert.ok(manifest.weightsManifest[0].weights.some((w: { name: string }) => w.name === 'layers.1.self_attn/q_proj'));

  const bundle = join(work, 'web', 'arl-tfjs-layers.js');
  await buildBrowserLayers(bundle);
  writeFileSync(join(work, 'web', 'index.html'), PAGE);
  const theirs = await withPage({ '/tf.min.js': join(TFJS_DIST, 'tf.min.js'), '/arl-tfjs-layers.js': bundle, '/': join(work, 'web'), '/model/': out }, '/index.html', (page) =>
    page.evaluate(async (input) => {
      const tf = (globalThis as unknown as { tf: typeof import('@tensorflow/tfjs') }).tf;
      await tf.setBackend('cpu');
      const loaded = await tf.loadLayersModel('/model/model.json');
      const logits = loaded.predict(tf.tensor2d([input], [1, input.length], 'int32')) as import('@tensorflow/tfjs').Tensor;
      return { shape: logits.shape, values: Array.from(await logits.data()) };
    }, ids),
  );
  assert.deepEqual(theirs.shape, [1, ids.length, 4096]);
  let maxDiff = 0;
  let scale = 0;
  ours.forEach((v, i) => {
    maxDiff = Math.max(maxDiff, Math.abs(v - theirs.values[i]));
    scale = Math.max(scale, Math.abs(v));
  });
  assert.ok(scale > 1, `logits too flat to be a meaningful check (max |logit| ${scale})`);
  assert.ok(maxDiff <= 1e-5 * scale, `browser logits differ from ours by ${maxDiff} (max |logit| ${scale})`);

  const occupied = join(work, 'occupied');
  mkdirSync(occupied);
  writeFileSync(join(occupied, 'notes.txt'), 'keep me');
  assertUserError(await runArl('export', '--checkpoint', checkpoint, '--format', 'tfjs', '--out', occupied), /occupied: exists and is not a tfjs export/);
  assert.equal(readFileSync(join(occupied, 'notes.txt'), 'utf8'), 'keep me');
});
