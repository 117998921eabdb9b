/** The backward pass that frees as it goes: tfjs's gradients, a lower peak, no tensor left behind. */
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { makeConfig } from '../src/model/config.ts';
import { LlamaModel } from '../src/model/llama.ts';
import { residualAdd } from '../src/ops/residual.ts';
import { variableGradients } from '../src/train/gradients.ts';
import { languageModelLoss } from '../src/train/loss.ts';
import { tf, useCpu } from './helpers.ts';

before(useCpu);

const config = makeConfig(null, { vocabSize: 97, dim: 48, layers: 3, heads: 6, kvHeads: 2, maxSeq: 32 });
const batch = 2;
const seq = 32;
const x = Int32Array.from({ length: batch * seq }, (_, i) => (i * 31 + 5) % config.vocabSize);
const y = Int32Array.from({ length: batch * seq }, (_, i) => (i * 17 + 3) % config.vocabSize);

test('variableGradients gives tf.variableGrads\' loss and gradients, bit for bit', () => {
  const model = new LlamaModel(config, 3);
  const variables = model.variables();
  const loss = () => languageModelLoss(model, x, y, batch, seq);
  const theirs = tf.tidy(() => tf.variableGrads(loss, variables));
  const ours = variableGradients(loss, variables);
  assert.equal(ours.value.dataSync()[0], theirs.value.dataSync()[0]);
  variables.forEach((v, i) => {
    const got = ours.grads[i];
    assert.ok(got, `no gradient for ${v.name}`);
    assert.deepEqual(got.dataSync(), theirs.grads[v.name].dataSync(), v.name);
  });
  tf.dispose([ours.value, theirs.value, ...Object.values(theirs.grads), ...ours.grads.filter((g) => g !== null)]);
  model.dispose();
});

test('variableGradients peaks lower than tf.variableGrads and leaves no tensor behind', async () => {
  const model = new LlamaModel(config, 3);
  const variables = model.variables();
  const loss = () => languageModelLoss(model, x, y, batch, seq);
  const before = tf.memory().numTensors;
  const peak = async (take: () => tf.Tensor[]) => (await tf.profile(() => tf.dispose(take()))).peakBytes;
  const theirs = await peak(() => {
    const { value, grads } = tf.tidy(() => tf.variableGrads(loss, variables));
    return [value, ...Object.values(grads)];
  });
  const ours = await peak(() => {
    const { value, grads } = variableGradients(loss, variables);
    return [value, ...grads.filter((g) => g !== null)];
  });
  assert.equal(tf.memory().numTensors, before);
  // Weights and their gradients take the same room either way; the rest is what each backward holds at once.
  const weightBytes = variables.reduce((n, v) => n + v.size * 4, 0);
  assert.ok(ours - 2 * weightBytes < 0.8 * (theirs - 2 * weightBytes), `peak ${ours} bytes, tf.variableGrads ${theirs}, weights ${weightBytes}`);
  model.dispose();
});

test('a variable the loss does not reach gets null, and a gradient handed on unchanged is not freed early', () => {
  const used = tf.variable(tf.tensor1d([1, 2, 3]));
  const unused = tf.variable(tf.tensor1d([4]));
  const before = tf.memory().numTensors;
  // add's gradient passes dy on to both inputs; the sum then reaches `used` twice.
  const { value, grads } = variableGradients(() => tf.sum(tf.add(used, used)) as tf.Scalar, [used, unused]);
  assert.equal(value.dataSync()[0], 12);
  assert.deepEqual(Array.from(grads[0]!.dataSync()), [2, 2, 2]);
  assert.equal(grads[1], null);
  tf.dispose([value, grads[0]!]);
  assert.equal(tf.memory().numTensors, before);
  tf.dispose([used, unused]);
});

test('residualAdd: the value and both gradients of tf.add, for same-shaped tensors only', () => {
  const a = tf.randomNormal([3, 5], 0, 1, 'float32', 1);
  const b = tf.randomNormal([3, 5], 0, 1, 'float32', 2);
  const dy = tf.randomNormal([3, 5], 0, 1, 'float32', 3);
  const ours = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(residualAdd(x, y), dy)))([a, b]);
  const theirs = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(tf.add(x, y), dy)))([a, b]);
  tf.tidy(() => assert.deepEqual(residualAdd(a, b).dataSync(), tf.add(a, b).dataSync()));
  ours.forEach((g, i) => assert.deepEqual(g.dataSync(), theirs[i].dataSync()));
  assert.throws(() => residualAdd(a, tf.zeros([5])), /same-shaped/);
  tf.dispose([a, b, dy, ...ours, ...theirs]);
});

test('variableGradients refuses to run inside another gradient', () => {
  const v = tf.variable(tf.scalar(2));
  assert.throws(() => tf.grad((a: tf.Tensor) => {
    variableGradients(() => tf.mul(v, a) as tf.Scalar, [v]);
    return tf.mul(a, a);
  })(tf.scalar(3)), /cannot be nested/);
  v.dispose();
});
