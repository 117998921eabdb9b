/**
 * ARL stage 2, the recap agent: recaps opened (here forced by a logit bias on a random model),
 * capped and closed; kept in context across rebuilds; the window budget; flat tensor count;
 * answerWithRecaps with the model's own decision against a threshold; the CLI.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { encodeContinuation, tokenizeDocument } from '../src/arl/document.ts';
import { nextTokenLogProbs } from '../src/arl/scoring.ts';
import { readBrownDocuments } from '../src/data/brown.ts';
import { saveCheckpoint } from '../src/io/checkpoint.ts';
import { answerWithRecaps, DEFAULT_ANSWER, DEFAULT_RECAP_AGENT, generateWithRecaps, paragraphRuns, RecapAgent } from '../src/infer/recap-agent.ts';
import { makeConfig } from '../src/model/config.ts';
import { LlamaModel } from '../src/model/llama.ts';
import { BUNDLED_TOKENIZER_PATH, Tokenizer } from '../src/tokenizer/sentencepiece.ts';
import { assertUserError, runArl, tf, useCpu } from './helpers.ts';

const WINDOW = 64;
let model: LlamaModel;
let tokenizer: Tokenizer;
/** The first ten paragraphs of a Brown document: several windows long. */
const longText = [...readBrownDocuments()][0].text.split('\n\n').slice(0, 10).join('\n\n');

before(async () => {
  await useCpu();
  tokenizer = await Tokenizer.load(BUNDLED_TOKENIZER_PATH);
  model = new LlamaModel(makeConfig(null, { vocabSize: tokenizer.vocabSize, dim: 16, layers: 1, heads: 2, kvHeads: 1, maxSeq: WINDOW }), 11);
});
after(() => model.dispose());

const greedy = { ...DEFAULT_RECAP_AGENT, greedy: true };

describe('recap agent', () => {
  test('a forced <recap> is written, capped at --max-recap-tokens, closed, never nested', async () => {
    const { ids, recaps, text } = await generateWithRecaps(model, tokenizer, 'The jury said', { ...greedy, maxRecapTokens: 3, recapBias: 1e4, maxNewTokens: 40, stopIds: [] });
    assert.equal(ids.length, 40);
    let open = false;
    let length = 0;
    const lengths: number[] = [];
    for (const id of ids) {
      if (id === tokenizer.recapOpenId) {
        assert.ok(!open, 'no recap opens inside a recap');
        open = true;
        length = 0;
      } else if (id === tokenizer.recapCloseId) {
        assert.ok(open, 'a close follows an open');
        open = false;
        lengths.push(length);
      } else {
        assert.ok(open, 'with the bias, every text position opens a recap');
        length++;
      }
    }
    assert.equal(recaps.length, lengths.length);
    assert.equal(recaps.length, 8);
    assert.ok(lengths.every((n) => n >= 1 && n <= 3), String(lengths));
    assert.ok(lengths.includes(3), 'the cap forces </recap>');
    assert.equal(text, '');
  });

  test('recaps stay in context as memory; the context never exceeds the window; tensor count flat', async () => {
    const before = tf.memory().numTensors;
    const agent = new RecapAgent(model, tokenizer, { ...greedy, maxRecapTokens: 4, recapBudget: 20 });
    const { runs, paragraphEnds } = paragraphRuns(longText, tokenizer, 8);
    const counts: number[] = [];
    for (const [index, run] of runs.entries()) {
      await agent.read(run, 6);
      if (paragraphEnds.has(index)) {
        const open = agent.contextIds.length;
        const recap = await agent.writeRecap();
        assert.ok(recap.length >= 1 && recap.length <= 4);
        if (agent.contextIds.length > open) {
          // Written inline, where the model was: <recap> + recap + </recap> at the end of the context.
          assert.deepEqual(agent.contextIds.slice(open), [tokenizer.recapOpenId, ...recap, tokenizer.recapCloseId]);
        }
        counts.push(tf.memory().numTensors);
      }
      assert.ok(agent.contextIds.length <= WINDOW);
    }
    assert.ok(runs.flat().length > 4 * WINDOW, 'the input is several windows long');
    assert.ok(agent.stats.rebuilds > 3);
    assert.ok(agent.stats.maxContext <= WINDOW);
    assert.equal(new Set(counts).size, 1, `tensor count flat across paragraphs: ${[...new Set(counts)]}`);

    // A rebuild lays out BOS + the recaps written with the highest P(<recap>) (the newest first among equals)
    // that fit the budget (20 tokens), in the order written + the most recent text.
    await agent.rebuild(16);
    assert.equal(agent.confidence.length, agent.recaps.length);
    assert.ok(agent.confidence.every((p) => p > 0 && p < 1));
    const ranked = agent.recaps.map((_, k) => k).sort((a, b) => agent.confidence[b]! - agent.confidence[a]! || b - a);
    const kept: number[] = [];
    let used = 0;
    for (const k of ranked) {
      if (used + agent.recaps[k]!.length + 2 > 20 || kept.some((j) => agent.recaps[j]!.join() === agent.recaps[k]!.join())) continue;
      kept.push(k);
      used += agent.recaps[k]!.length + 2;
    }
    const memory = kept.sort((a, b) => a - b).flatMap((k) => [tokenizer.recapOpenId, ...agent.recaps[k]!, tokenizer.recapCloseId]);
    const recent = runs.flat().slice(-(WINDOW - 16 - 1 - memory.length));
    assert.deepEqual(agent.contextIds, [tokenizer.bosId, ...memory, ...recent]);
    assert.equal(agent.stats.recapsOutOfContext, agent.recaps.length - memory.filter((id) => id === tokenizer.recapOpenId).length);

    // A recap written again word for word is kept once: its copies leave room for a less sure, different one.
    const [a, b] = [[21, 22, 23], [31, 32, 33]];
    agent.recaps.length = agent.confidence.length = 0;
    agent.recaps.push(a, [...a], [...a], b);
    agent.confidence.push(0.9, 0.8, 0.7, 0.1);
    await agent.rebuild(16);
    const open = (ids: number[]) => [tokenizer.recapOpenId, ...ids, tokenizer.recapCloseId];
    assert.deepEqual(agent.contextIds.slice(0, 11), [tokenizer.bosId, ...open(a), ...open(b)]);
    assert.equal(agent.stats.recapsOutOfContext, 2);
    agent.dispose();
    assert.equal(tf.memory().numTensors, before);
  });

  test('answerWithRecaps: the model decides at each paragraph end against the threshold; greedy answers', async () => {
    const options = { ...DEFAULT_ANSWER, agent: { ...greedy, maxRecapTokens: 6 }, maxAnswerTokens: 8 };
    const never = await answerWithRecaps(model, tokenizer, longText, 'Who spoke?', { ...options, recapThreshold: 1.1 });
    assert.deepEqual(never.recaps, []);
    assert.ok(never.paragraphs > 3);
    assert.equal(never.recapProbabilities.length, never.paragraphs);
    assert.ok(never.recapProbabilities.every((p) => p > 0 && p < 1));
    assert.ok(never.stats.maxContext <= WINDOW);
    const sorted = [...never.recapProbabilities].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)];
    const some = await answerWithRecaps(model, tokenizer, longText, 'Who spoke?', { ...options, recapThreshold: median });
    assert.equal(some.recaps.length, some.recapProbabilities.filter((p) => p >= median).length, 'a recap exactly where P(<recap>) reached the threshold');
    assert.ok(some.recaps.length > 0 && some.recaps.length < some.paragraphs);
    assert.equal(typeof some.answer, 'string');
    const again = await answerWithRecaps(model, tokenizer, longText, 'Who spoke?', { ...options, recapThreshold: median });
    const untimed = (r: typeof some) => ({ ...r, stats: { ...r.stats, prefillSeconds: 0, decodeSeconds: 0 } });
    assert.deepEqual(untimed(again), untimed(some), 'greedy: the same answer and recaps');
    assert.ok(some.stats.decodedTokens >= some.recaps.length && some.stats.prefilledTokens >= some.inputTokens, 'every input token read, every recap token decoded');
  });

  test('the gold answer is scored after the context the answer was decoded from, and leaves the answer as it was', async () => {
    const options = { ...DEFAULT_ANSWER, agent: { ...greedy, maxRecapTokens: 6 }, maxAnswerTokens: 8 };
    // Recaps written, answer and gold scored: the answer, recaps and work are those of answering alone.
    const threshold = 0.5 * Math.max(...(await answerWithRecaps(model, tokenizer, longText, 'Who spoke?', { ...options, recapThreshold: 1.1 })).recapProbabilities);
    const alone = await answerWithRecaps(model, tokenizer, longText, 'Who spoke?', { ...options, recapThreshold: threshold });
    const scored = await answerWithRecaps(model, tokenizer, longText, 'Who spoke?', { ...options, recapThreshold: threshold, goldAnswer: 'the jury' });
    assert.ok(alone.recaps.length > 0);
    const untimed = (r: typeof alone) => ({ ...r, goldLogProb: undefined, stats: { ...r.stats, prefillSeconds: 0, decodeSeconds: 0 } });
    assert.deepEqual(untimed(scored), untimed(alone));
    assert.ok(Number.isFinite(scored.goldLogProb) && scored.goldLogProb! < 0);
    // A short input fits the window whole: the context is BOS + its tokens + the question, so the gold answer's
    // log-probability is that of one plain forward over them.
    const short = 'The jury said it did find that many of the laws were outmoded.';
    const gold = 'the jury';
    const { goldLogProb } = await answerWithRecaps(model, tokenizer, short, 'Who spoke?', { ...options, recapThreshold: 1.1, goldAnswer: gold });
    const prompt = encodeContinuation('\n\nQuestion: Who spoke?\nAnswer:', tokenizer);
    const goldIds = tokenizer.encode(gold);
    const context = [...tokenizeDocument(short, tokenizer).tokens, ...prompt];
    const input = [...context, ...goldIds.slice(0, -1)];
    const expected = (await nextTokenLogProbs(model, [{ input, offsets: goldIds.map((_, i) => context.length - 1 + i), nextTokens: goldIds }])).reduce((a, b) => a + b, 0);
    assert.ok(Math.abs(goldLogProb! - expected) < 1e-4, `${goldLogProb} vs ${expected}`);
  });

  test('with no recap to write, reading only the tail gives the same answer and gold log-probability for less work', async () => {
    const options = { ...DEFAULT_ANSWER, agent: { ...greedy, maxRecapTokens: 6 }, maxAnswerTokens: 8, recapThreshold: 1.1, goldAnswer: 'the jury' };
    const everything = await answerWithRecaps(model, tokenizer, longText, 'Who spoke?', options);
    const tail = await answerWithRecaps(model, tokenizer, longText, 'Who spoke?', { ...options, tailOnly: true });
    assert.equal(tail.answer, everything.answer);
    assert.ok(Math.abs(tail.goldLogProb! - everything.goldLogProb!) < 1e-4, `${tail.goldLogProb} vs ${everything.goldLogProb}`);
    assert.deepEqual([tail.recaps, tail.recapProbabilities], [[], []]);
    assert.equal(tail.inputTokens, everything.inputTokens);
    assert.ok(everything.inputTokens > 3 * WINDOW && tail.stats.prefilledTokens < everything.stats.prefilledTokens / 2, `${tail.stats.prefilledTokens} vs ${everything.stats.prefilledTokens} tokens prefilled`);
    await assert.rejects(answerWithRecaps(model, tokenizer, longText, 'Who spoke?', { ...options, recapThreshold: 0.5, tailOnly: true }), /threshold above 1/);
  });

  test('CLI: arl answer --json and arl generate --recap-agent --json; a question too long for the window', async () => {
    const work = mkdtempSync(join(tmpdir(), 'arl-agent-'));
    await saveCheckpoint(join(work, 'ckpt'), model, BUNDLED_TOKENIZER_PATH);
    writeFileSync(join(work, 'input.txt'), longText);
    const common = ['--checkpoint', join(work, 'ckpt'), '--backend', 'cpu', '--max-recap-tokens', '4'];
    const answer = await runArl('answer', ...common, '--input', join(work, 'input.txt'), '--question', 'Who spoke?', '--recap-threshold', '0', '--max-new-tokens', '4', '--json');
    assert.equal(answer.code, 0, answer.stderr);
    const parsed = JSON.parse(answer.stdout);
    assert.equal(parsed.recaps.length, parsed.paragraphs);
    assert.equal(typeof parsed.answer, 'string');
    const generated = await runArl('generate', ...common, '--prompt', 'The jury said', '--recap-agent', '--recap-bias', '1000', '--greedy', '--max-new-tokens', '12', '--json');
    assert.equal(generated.code, 0, generated.stderr);
    const g = JSON.parse(generated.stdout);
    assert.equal(g.ids[0], tokenizer.recapOpenId);
    assert.ok(g.recaps.length >= 2);
    assertUserError(await runArl('answer', ...common, '--input', join(work, 'input.txt'), '--question', longText.slice(0, 400)), /question \(\d+ tokens\) plus --max-new-tokens 32 does not fit the model's window of 64 tokens/);
  });
});
