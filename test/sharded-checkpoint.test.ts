/** Checkpoints split into shards: save -> load -> resume -> export keeps weights and AdamW moments bit-equal, and the CLI reads either layout. */
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { loadCheckpoint, modelFromCheckpoint, restoreOptimizer, saveCheckpoint, type TrainState, weightsSha256 } from '../src/io/checkpoint.ts';
import { UserError } from '../src/io/errors.ts';
import { readSafetensors } from '../src/io/safetensors.ts';
import { sha256File } from '../src/io/sha256.ts';
import { makeConfig } from '../src/model/config.ts';
import { LlamaModel } from '../src/model/llama.ts';
import { AdamW } from '../src/train/optimizer.ts';
import { assertUserError, runArl, TEST_FIXTURES, tf, useCpu } from './helpers.ts';

const config = makeConfig(null, { vocabSize: 256, dim: 32, layers: 2, heads: 4, kvHeads: 2, maxSeq: 32 });
const ADAMW = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 };
const work = mkdtempSync(join(tmpdir(), 'arl-shards-'));
const sharded = join(work, 'sharded');

before(useCpu);

async function bits(t: tf.Tensor): Promise<Buffer> {
  return Buffer.from(((await t.data()) as Float32Array).buffer);
}

const shardsOf = (dir: string, stem: string): string[] => readdirSync(dir).filter((f) => new RegExp(`^${stem}-\\d{5}-of-\\d{5}\\.safetensors$`).test(f));

test('weights and AdamW moments saved in several shards load back bit-equal, resume, and export to one file', async () => {
  const tensorsBefore = tf.memory().numTensors;
  const model = new LlamaModel(config, 7);
  const optimizer = new AdamW(model.variables(), ADAMW);
  // Moments with values of their own, so a mix-up of m, v or names shows.
  optimizer.m.forEach((m, i) => tf.tidy(() => m.assign(tf.randomNormal(m.shape, 0, 1, 'float32', i))));
  optimizer.v.forEach((v, i) => tf.tidy(() => v.assign(tf.randomUniform(v.shape, 0, 1, 'float32', 100 + i))));
  const state: TrainState = { step: 3, tokensSeen: 96, optimizerStep: 3, dataPosition: { offset: 0 }, options: {}, bestValLoss: null };
  await saveCheckpoint(sharded, model, null, { optimizer, state }, 16 * 1024);

  const files = readdirSync(sharded);
  assert.ok(shardsOf(sharded, 'model').length >= 3, files.join(' '));
  assert.ok(shardsOf(sharded, 'optimizer').length >= 3, files.join(' '));
  assert.ok(!files.includes('model.safetensors') && !files.includes('optimizer.safetensors'), files.join(' '));
  assert.ok(!files.some((f) => f.endsWith('.tmp')), files.join(' '));
  const index = JSON.parse(readFileSync(join(sharded, 'model.safetensors.index.json'), 'utf8'));
  assert.deepEqual(Object.keys(index.weight_map).sort(), model.namedWeights().map((w) => w.name).sort());
  const totalSize = model.namedWeights().reduce((sum, w) => sum + w.variable.read().size * 4, 0);
  assert.equal(index.metadata.total_size, totalSize);

  const ckpt = loadCheckpoint(sharded);
  assert.deepEqual(ckpt.state, state);
  const loaded = modelFromCheckpoint(ckpt);
  const restored = new AdamW(loaded.variables(), ADAMW);
  restoreOptimizer(loaded, restored, ckpt.optimizer!, ckpt.state!.optimizerStep, sharded);
  assert.equal(restored.step, 3);
  const original = model.variables();
  for (const [i, variable] of loaded.variables().entries()) {
    assert.ok((await bits(variable)).equals(await bits(original[i])), `weight ${i}`);
    assert.ok((await bits(restored.m[i])).equals(await bits(optimizer.m[i])), `m ${i}`);
    assert.ok((await bits(restored.v[i])).equals(await bits(optimizer.v[i])), `v ${i}`);
  }

  // Below the default shard size the export is one model.safetensors, bit-equal to the shards.
  const exported = join(work, 'exported');
  await saveCheckpoint(exported, loaded, null);
  assert.ok(existsSync(join(exported, 'model.safetensors')) && !existsSync(join(exported, 'model.safetensors.index.json')));
  const single = readSafetensors(join(exported, 'model.safetensors'));
  assert.deepEqual([...single.keys()].sort(), ckpt.weights.names.sort());
  for (const name of ckpt.weights.names) assert.ok(Buffer.from(single.get(name)!.data.buffer).equals(Buffer.from(ckpt.weights.get(name)!.data.buffer)), name);
  assert.equal(weightsSha256(exported), sha256File(join(exported, 'model.safetensors')));
  assert.match(weightsSha256(sharded), /^[0-9a-f]{64}$/);
  assert.notEqual(weightsSha256(sharded), weightsSha256(exported));

  for (const m of [model, loaded]) m.dispose();
  for (const o of [optimizer, restored]) o.dispose();
  assert.equal(tf.memory().numTensors, tensorsBefore);
});

test('the CLI generates from and exports a sharded checkpoint, and imports a sharded HF folder', async () => {
  const generated = await runArl('generate', '--checkpoint', sharded, '--prompt-ids', '1,2,3', '--max-new-tokens', '4', '--greedy', '--json', '--backend', 'cpu');
  assert.equal(generated.code, 0, generated.stderr);
  assert.equal(JSON.parse(generated.stdout).ids.length, 4);

  const exported = join(work, 'cli-exported');
  const r = await runArl('export', '--checkpoint', sharded, '--format', 'hf', '--out', exported);
  assert.equal(r.code, 0, r.stderr);
  const fromShards = loadCheckpoint(sharded).weights;
  const single = readSafetensors(join(exported, 'model.safetensors'));
  for (const name of fromShards.names) assert.ok(Buffer.from(single.get(name)!.data.buffer).equals(Buffer.from(fromShards.get(name)!.data.buffer)), name);

  const imported = join(work, 'imported');
  const i = await runArl('import', '--hf', join(TEST_FIXTURES, 'hf', 'sharded-3layers'), '--out', imported);
  assert.equal(i.code, 0, i.stderr);
  assert.ok(existsSync(join(imported, 'model.safetensors')));
});

test('a sharded checkpoint with a missing or truncated shard fails with one line naming it', async () => {
  const missing = join(work, 'missing-shard');
  cpSync(join(TEST_FIXTURES, 'hf', 'sharded-3layers'), missing, { recursive: true });
  rmSync(join(missing, 'model-00004-of-00009.safetensors'));
  assertUserError(await runArl('import', '--hf', missing, '--out', join(work, 'x1')), /model\.safetensors\.index\.json: names shard model-00004-of-00009\.safetensors, which is missing/);

  const noWeights = join(work, 'no-weights');
  cpSync(sharded, noWeights, { recursive: true });
  for (const f of readdirSync(noWeights).filter((f) => f.startsWith('model'))) rmSync(join(noWeights, f));
  assert.throws(() => loadCheckpoint(noWeights), (err: Error) => err instanceof UserError && /no-weights: no model\.safetensors or model\.safetensors\.index\.json found/.test(err.message));

  const truncated = join(work, 'truncated-shard');
  cpSync(sharded, truncated, { recursive: true });
  const last = shardsOf(truncated, 'model').sort().at(-1)!;
  truncateSync(join(truncated, last), 200);
  assertUserError(
    await runArl('generate', '--checkpoint', truncated, '--prompt-ids', '1,2', '--backend', 'cpu'),
    new RegExp(`${last.replace(/\./g, '\\.')}: .*truncated`),
  );
});
