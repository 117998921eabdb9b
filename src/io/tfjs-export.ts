/**
 * `arl export --format tfjs`: a tfjs LayersModel folder, loadable with tf.loadLayersModel once the
 * custom layers are registered (dist/browser/arl-tfjs-layers.js in a page, src/io/tfjs-layers.ts in Node):
 *   model.json                 topology, weights manifest, and our config under userDefinedMetadata
 *   group1-shard<i>of<n>.bin   the float32 weights in 4 MiB shards (tfjs's default shard size)
 *   tokenizer.model            the SentencePiece model the ids belong to, when the checkpoint has one
 */
import * as tf from '@tensorflow/tfjs';
import { copyFileSync, existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { LlamaModel } from '../model/llama.ts';
import { replaceDirAtomic, writeFileAtomic } from './atomic.ts';
import { UserError } from './errors.ts';
import { type ArlLMHead, type ArlMlp, type ArlSelfAttention, buildTfjsModel } from './tfjs-layers.ts';

const SHARD_BYTES = 4 * 2 ** 20;

/** Copies the model's weights into the LayersModel of the same config. */
function copyWeights(model: LlamaModel, exported: tf.LayersModel): void {
  const layer = <T extends tf.layers.Layer>(name: string): T => exported.getLayer(name) as T;
  /** The weight of a one-weight layer (embedding, norms). */
  const weightOf = (name: string): tf.LayerVariable => (exported.getLayer(name) as unknown as { weight: tf.LayerVariable }).weight;
  const pairs: [tf.LayerVariable, tf.Tensor][] = [[weightOf('embed_tokens'), model.embedding.weight.read()]];
  model.blocks.forEach((block, i) => {
    const p = `layers.${i}`;
    const attention = layer<ArlSelfAttention>(`${p}.self_attn`);
    const mlp = layer<ArlMlp>(`${p}.mlp`);
    pairs.push(
      [weightOf(`${p}.input_layernorm`), block.attnNorm.weight.read()],
      [attention.q, block.wq.read()],
      [attention.k, block.wk.read()],
      [attention.v, block.wv.read()],
      [attention.o, block.wo.read()],
      [weightOf(`${p}.post_attention_layernorm`), block.mlpNorm.weight.read()],
      [mlp.gate, block.wGate.read()],
      [mlp.up, block.wUp.read()],
      [mlp.down, block.wDown.read()],
    );
  });
  pairs.push([weightOf('norm'), model.finalNorm.weight.read()]);
  const head = layer<ArlLMHead>('lm_head').weight;
  tf.tidy(() => {
    for (const [target, value] of pairs) target.write(value);
    head.write(model.lmHead ? model.lmHead.weight.read() : tf.transpose(model.embedding.weight.read()));
  });
}

/** Writes `dir` (replacing an earlier tfjs export there, never another folder) from `model`. */
export async function exportTfjs(model: LlamaModel, dir: string, tokenizerPath: string | null): Promise<{ shards: number; bytes: number }> {
  const target = resolve(dir);
  if (existsSync(target) && readdirSync(target).length > 0 && !existsSync(join(target, 'model.json'))) {
    throw new UserError(`${dir}: exists and is not a tfjs export (no model.json); choose another output directory`);
  }
  const exported = buildTfjsModel(model.config);
  let artifacts: tf.io.ModelArtifacts | undefined;
  try {
    copyWeights(model, exported);
    await exported.save(tf.io.withSaveHandler(async (a) => {
      artifacts = a;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }));
  } finally {
    exported.dispose();
  }
  const { modelTopology, weightSpecs, weightData } = artifacts!;
  const data = new Uint8Array(tf.io.concatenateArrayBuffers(Array.isArray(weightData) ? weightData : [weightData!]));
  const shardCount = Math.max(1, Math.ceil(data.length / SHARD_BYTES));
  const paths = Array.from({ length: shardCount }, (_, i) => `group1-shard${i + 1}of${shardCount}.bin`);

  const tmp = `${target}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  paths.forEach((path, i) => writeFileAtomic(join(tmp, path), data.subarray(i * SHARD_BYTES, (i + 1) * SHARD_BYTES)));
  const modelJson = {
    format: 'layers-model',
    generatedBy: `TensorFlow.js tfjs-layers v${tf.version.tfjs}`,
    convertedBy: 'arl export --format tfjs',
    modelTopology,
    weightsManifest: [{ paths, weights: weightSpecs }],
    userDefinedMetadata: { arl: { config: model.config, tokenizer: tokenizerPath ? 'tokenizer.model' : null } },
  };
  writeFileAtomic(join(tmp, 'model.json'), JSON.stringify(modelJson));
  if (tokenizerPath) copyFileSync(tokenizerPath, join(tmp, 'tokenizer.model'));
  replaceDirAtomic(tmp, target);
  return { shards: shardCount, bytes: data.length };
}
