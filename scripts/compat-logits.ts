/**
 * Writes our logits for a fixed prompt to JSON, for the Hugging Face transformers parity check
 * (scripts/compat-hf-check.py compares an `arl export --format hf` directory against it):
 *   node --import tsx scripts/compat-logits.ts CHECKPOINT OUT.json
 * The prompt is the first 32 token ids of a fixed sentence; logits are for every position.
 */
import * as tf from '@tensorflow/tfjs';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { selectBackend } from '../src/backend.ts';
import { loadModel, resolveCheckpointDir } from '../src/io/checkpoint.ts';
import { Tokenizer } from '../src/tokenizer/sentencepiece.ts';

const [checkpoint, out] = process.argv.slice(2);
if (!checkpoint || !out) throw new Error('usage: compat-logits.ts CHECKPOINT OUT.json');
await selectBackend('cpu');
const { model } = loadModel(checkpoint);
const tokenizer = await Tokenizer.load(join(resolveCheckpointDir(checkpoint), 'tokenizer.model'));
const text = 'The jury further said in term-end presentments that the City Executive Committee, which had over-all charge of the election, deserves the praise.';
const ids = tokenizer.encode(text).slice(0, 32);
const logits = tf.tidy(() => model.logits(tf.tensor2d(ids, [1, ids.length], 'int32')));
const values = Array.from(await logits.data());
logits.dispose();
writeFileSync(out, JSON.stringify({ checkpoint, prompt: ids, vocab: model.config.vocabSize, logits: values }));
console.log(`wrote ${out}: ${ids.length} positions x ${model.config.vocabSize} logits`);
