/** LIFT training and answering: segmentation, examples, auxiliary QA, frozen base, flat memory, and the CLI's bad input. */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { saveCheckpoint } from '../src/io/checkpoint.ts';
import { ChatError } from '../src/io/chat.ts';
import { detachAdapter } from '../src/lift/adapter.ts';
import { clozeQaPairs, generateQaPairs, parseQaReply, qaExample } from '../src/lift/auxiliary-qa.ts';
import { makeRng } from '../src/core/random.ts';
import { UserError } from '../src/io/errors.ts';
import { contextualizedExample, headTail, promptPieces } from '../src/lift/contextualized-training.ts';
import { liftAnswer, trainLiftAdapter } from '../src/lift/lift.ts';
import { demoDocument, factSentence } from '../src/lift/demo-set.ts';
import { defaultSegmentSizes, segmentRanges } from '../src/lift/segmentation.ts';
import { withSentenceOrders } from '../src/lift/sentence-orders.ts';
import { makeConfig } from '../src/model/config.ts';
import { LlamaModel } from '../src/model/llama.ts';
import { BUNDLED_TOKENIZER_PATH, Tokenizer } from '../src/tokenizer/sentencepiece.ts';
import { assertUserError, maxAbsDiff, runArl, tf, useCpu } from './helpers.ts';

let tokenizer: Tokenizer;
before(async () => {
  await useCpu();
  tokenizer = await Tokenizer.load(BUNDLED_TOKENIZER_PATH);
});

const config = () => makeConfig(null, { vocabSize: tokenizer.vocabSize, dim: 32, layers: 2, heads: 4, kvHeads: 2, maxSeq: 96 });
const TEXT = 'The jury said it did find that many of the laws were outmoded. The grand jury commented on a number of other topics. It urged that the city take steps to remedy the problem. The mayor said the report was fair and that the county would act on it soon. ';

test('segments cover the input with the given stride; the paper sizes scale with the window', () => {
  assert.deepEqual(defaultSegmentSizes(8192), { length: 2048, stride: 768, context: 4096 });
  assert.deepEqual(defaultSegmentSizes(256), { length: 64, stride: 24, context: 128 });
  assert.deepEqual(segmentRanges(100, 40, 25), [[0, 40], [25, 65], [50, 90], [60, 100]]);
  assert.deepEqual(segmentRanges(30, 40, 25), [[0, 30]]);
  assert.throws(() => segmentRanges(0, 40, 25), /empty/);
});

test('head + tail truncation and a contextualized example with the loss on the segment only', () => {
  const tokens = Array.from({ length: 50 }, (_, i) => 100 + i);
  assert.deepEqual(headTail(tokens, 60, [9]), tokens);
  assert.deepEqual(headTail(tokens, 11, [9]), [100, 101, 102, 103, 104, 9, 145, 146, 147, 148, 149]);
  const pieces = promptPieces(tokenizer);
  const segment = tokens.slice(20, 30);
  const ex = contextualizedExample(tokens, segment, 21, pieces, () => 0.5);
  assert.deepEqual(ex.ids.slice(ex.lossFrom), segment);
  assert.equal(ex.ids[0], tokenizer.bosId);
  assert.ok(ex.ids.length <= 1 + 21 + pieces.recite.length + segment.length);
  const qa = qaExample(tokenizer, tokens, { question: 'Who?', answer: 'the jury' }, '{context}\nQ: {question}\nA:', pieces, 40);
  assert.ok(qa.ids.length <= 40);
  assert.deepEqual(qa.ids.slice(qa.lossFrom), [...tokenizer.encode('the jury'), tokenizer.eosId]);
});

test('demo documents state each fact once in a seed-dependent order; base documents repeat only earlier facts', () => {
  const count = (text: string, sentence: string) => text.split(sentence).length - 1;
  const doc = demoDocument(0);
  assert.ok(doc.facts.every((f) => count(doc.text, factSentence(f)) === 1));
  assert.notDeepEqual(doc.facts.map((f) => f.person), demoDocument(1).facts.map((f) => f.person));
  const base = demoDocument(7, 0.5);
  const sentences = base.text.split(/(?<=\.) /);
  assert.ok(sentences.length > base.facts.length);
  // First statements come in the facts' order, so every other sentence repeats an earlier fact.
  assert.deepEqual(sentences.filter((s, i) => sentences.indexOf(s) === i), base.facts.map(factSentence));
});

test('sentence orders: the input as given, then copies holding exactly its sentences in other orders', () => {
  const sentences = TEXT.trim().split(/(?<=\.) /);
  const text = withSentenceOrders(TEXT, 3, () => 0.3);
  assert.ok(text.startsWith(TEXT.trim()));
  const all = text.split(/(?<=\.) /);
  assert.equal(all.length, 3 * sentences.length);
  assert.deepEqual([...all.slice(sentences.length)].sort(), [...sentences, ...sentences].sort());
  assert.notDeepEqual(all.slice(sentences.length, 2 * sentences.length), sentences);
  assert.equal(withSentenceOrders(TEXT, 1, () => 0.3), TEXT.trim());
  assert.throws(() => withSentenceOrders(TEXT, 0, () => 0.3), /sentence-orders/);
});

test('LLM-written QA: evidence must be verbatim; bad replies and failed calls are retried', async () => {
  const passage = 'The jury said it did find that many of the laws were outmoded.';
  assert.deepEqual(parseQaReply('Question: What did the jury find?\nAnswer: outmoded laws\nEvidence: many of the laws were outmoded', passage), { question: 'What did the jury find?', answer: 'outmoded laws' });
  assert.equal(parseQaReply('Question: Q\nAnswer: A\nEvidence: the laws were new', passage), null);
  assert.equal(parseQaReply('Question: Q\nAnswer: A', passage), null);
  const replies = ['no format at all', 'Question: Q\nAnswer: A\nEvidence: not in the text', 'fail', 'Question: What did it urge?\nAnswer: steps\nEvidence: It urged that the city take steps'];
  let calls = 0;
  const writer = {
    complete: async () => {
      const reply = replies[calls++] ?? 'no format at all';
      if (reply === 'fail') throw new ChatError('server error', 'http', true, false);
      return reply;
    },
  };
  const { pairs, failed } = await generateQaPairs(writer, TEXT, () => 0, 2, 16);
  // Pair 1 takes four tries (the fourth reply is good); pair 2 gets five unusable ones and fails.
  assert.deepEqual(pairs, [{ question: 'What did it urge?', answer: 'steps' }]);
  assert.equal(failed, 1);
  assert.equal(calls, 4 + 5);
});

test('cloze QA: pairs from the input alone, the same for a seed, lengths capped, bad settings refused', () => {
  const pairs = clozeQaPairs(TEXT, tokenizer, makeRng(1), { count: 3 });
  assert.equal(pairs.length, 3);
  assert.deepEqual(clozeQaPairs(TEXT, tokenizer, makeRng(1), { count: 3 }), pairs);
  assert.notDeepEqual(clozeQaPairs(TEXT, tokenizer, makeRng(2), { count: 4 }).map((p) => p.answer), clozeQaPairs(TEXT, tokenizer, makeRng(1), { count: 4 }).map((p) => p.answer));
  const squashed = TEXT.replace(/\s+/g, ' ');
  for (const { question, answer } of pairs) {
    // The question quotes the first part of one sentence of the input, and the answer is the rest of it.
    const cue = /^What follows "(.+)" in the text\?$/.exec(question)![1]!;
    assert.ok(squashed.includes(`${cue} ${answer}`), `${cue} | ${answer}`);
  }
  // Every usable sentence once at most: four sentences, so no more than four pairs.
  assert.equal(clozeQaPairs(TEXT, tokenizer, makeRng(1), { count: 50 }).length, 4);
  for (const { question, answer } of clozeQaPairs(TEXT, tokenizer, makeRng(3), { count: 4, cueTokens: 3, answerTokens: 2 })) {
    const cue = /^What follows "(.+)" in the text\?$/.exec(question)![1]!;
    assert.ok(tokenizer.encode(cue).length <= 3 && tokenizer.encode(answer).length <= 2, `${cue} | ${answer}`);
    assert.ok(squashed.includes(`${cue} ${answer}`), `${cue} | ${answer}`);
  }
  assert.deepEqual(clozeQaPairs('Too short. Also short.', tokenizer, makeRng(1)), []);
  for (const bad of [{ count: 0 }, { cueTokens: 1.5 }, { answerTokens: -1 }]) {
    assert.throws(() => clozeQaPairs(TEXT, tokenizer, makeRng(1), bad), (err: Error) => err instanceof UserError && /^cloze QA: \w+ must be a positive integer \(got -?[\d.]+\)$/.test(err.message));
  }
});

test('LIFT trains only the adapter: base weights are bit-identical and the base logits come back exactly', async () => {
  const model = new LlamaModel(config(), 3);
  const weightsBefore = model.variables().map((v) => v.dataSync().slice());
  const ids = tf.tensor2d([tokenizer.encode(TEXT).slice(0, 20)], undefined, 'int32');
  const logitsBefore = tf.tidy(() => model.logits(ids).dataSync());
  const tokens = tokenizer.encode(TEXT.repeat(2));
  for (const adapter of ['gated-memory', 'lora'] as const) {
    const { adapter: trained, losses } = await trainLiftAdapter(model, tokenizer, tokens, { adapter, stage1Epochs: 1, stage2Epochs: 1, segmentLength: 48, segmentStride: 32, contextTokens: 16, qa: [{ question: 'Who spoke?', answer: 'the mayor' }], lr: 1e-2 });
    assert.ok(losses.length > 2 && losses.every(Number.isFinite));
    // the adapter moved: with it attached the logits differ from the base
    assert.ok(maxAbsDiff(tf.tidy(() => model.logits(ids).dataSync()), logitsBefore) > 1e-6);
    detachAdapter(model);
    trained.dispose();
    model.variables().forEach((v, i) => assert.deepEqual(v.dataSync(), weightsBefore[i], `base weight ${i} changed (${adapter})`));
    assert.deepEqual(tf.tidy(() => model.logits(ids).dataSync()), logitsBefore);
  }
  ids.dispose();
  model.dispose();
});

test('liftAnswer over 20 inputs in one process keeps a flat tensor count and leaves the model as it was', async () => {
  const model = new LlamaModel(config(), 4);
  const counts: number[] = [];
  for (let i = 0; i < 20; i++) {
    const r = await liftAnswer(model, tokenizer, `${TEXT.slice(i * 5)} Input number ${i}.`, ['What did the jury say?'], {
      adapter: i % 2 ? 'lora' : 'gated-memory',
      stage1Epochs: 1,
      stage2Epochs: 0,
      segmentLength: 48,
      segmentStride: 48,
      contextTokens: 16,
      maxNewTokens: 2,
      compareIcl: i === 0,
    });
    assert.equal(r.answers.length, 1);
    counts.push(tf.memory().numTensors);
  }
  assert.ok(model.blocks.every((b) => b.adapter === null));
  assert.deepEqual(counts.slice(1), Array(19).fill(counts[0]), `tensor counts ${counts.join(',')}`);
  model.dispose();
});

test('arl lift: trains, writes answers and a reusable adapter; refuses bad input with one line', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lift-cli-'));
  const ckpt = join(dir, 'base');
  const model = new LlamaModel(config(), 5);
  await saveCheckpoint(ckpt, model, BUNDLED_TOKENIZER_PATH);
  model.dispose();
  const other = join(dir, 'other');
  const otherModel = new LlamaModel(config(), 6);
  await saveCheckpoint(other, otherModel, BUNDLED_TOKENIZER_PATH);
  otherModel.dispose();
  writeFileSync(join(dir, 'short.txt'), 'The jury said the laws were old.');
  writeFileSync(join(dir, 'q.jsonl'), '{"question": "What did the jury say?", "answer": "old"}\n');
  writeFileSync(join(dir, 'bad.jsonl'), '{"question": "ok?"}\n{"question": 3}\n');
  writeFileSync(join(dir, 'empty.txt'), '  \n');
  const common = ['--backend', 'cpu', '--checkpoint', ckpt, '--stage1-epochs', '1', '--stage2-epochs', '1', '--max-new-tokens', '2'];
  const questions = ['--questions', join(dir, 'q.jsonl')];

  const out = join(dir, 'out');
  const ok = await runArl('lift', ...common, ...questions, '--input', join(dir, 'short.txt'), '--out', out, '--compare-icl', '--sentence-orders', '2');
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stderr, /shorter than one segment/);
  const answers = readFileSync(join(out, 'answers.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(Object.keys(answers[0]).sort(), ['answer', 'expected', 'icl_answer', 'question']);
  const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
  assert.ok(summary.adapter_parameters > 0 && summary.adapter_bytes > 0);
  // Two sentence orders: the input and one reordered copy.
  assert.equal(summary.sentence_orders, 2);
  assert.ok(summary.training_tokens >= 2 * summary.input_tokens - 1, `${summary.training_tokens} training tokens for ${summary.input_tokens} input tokens`);
  assert.ok(existsSync(join(out, 'adapter.safetensors')));

  assertUserError(await runArl('lift', ...common, ...questions, '--input', join(dir, 'empty.txt'), '--out', join(dir, 'o2')), /empty\.txt: the input is empty/);
  assertUserError(await runArl('lift', ...common, ...questions, '--input', join(dir, 'short.txt'), '--out', join(dir, 'o5'), '--sentence-orders', '0'), /--sentence-orders/);
  assertUserError(await runArl('lift', ...common, '--input', join(dir, 'short.txt'), '--out', join(dir, 'o3'), '--questions', join(dir, 'bad.jsonl')), /bad\.jsonl:2: field "question" must be a string/);
  const cloze = await runArl('lift', ...common, ...questions, '--input', join(dir, 'short.txt'), '--out', join(dir, 'o6'), '--qa-cloze');
  assert.equal(cloze.code, 0, cloze.stderr);
  assert.match(cloze.stderr, /auxiliary QA: 1 cloze pairs from the input's sentences/);
  assert.equal(JSON.parse(readFileSync(join(dir, 'o6', 'summary.json'), 'utf8')).qa_pairs, 1);
  assertUserError(await runArl('lift', ...common, ...questions, '--input', join(dir, 'short.txt'), '--out', join(dir, 'o7'), '--qa-cloze', '--qa', join(dir, 'q.jsonl')), /--qa-cloze goes with neither --qa nor --qa-llm/);
  assertUserError(await runArl('lift', ...common, ...questions, '--input', join(dir, 'short.txt'), '--out', join(dir, 'o8'), '--qa-cloze', '--qa-count', '0'), /--qa-count/);
  const wrongBase = await runArl('lift', ...common.slice(0, 3), other, ...common.slice(4), ...questions, '--input', join(dir, 'short.txt'), '--out', join(dir, 'o4'), '--load-adapter', join(out, 'adapter.safetensors'));
  assertUserError(wrongBase, /adapter\.safetensors: adapter was trained on another base model/);
});
