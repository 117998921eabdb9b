/** Mistakes a first-time user makes: each one gives one line on stderr naming what is wrong, exit code 2, and no stack trace. */
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { saveCheckpoint } from '../src/io/checkpoint.ts';
import { makeConfig } from '../src/model/config.ts';
import { LlamaModel } from '../src/model/llama.ts';
import { assertUserError, makeTinyArlInputs, prepareTinyCorpus, runArl, useCpu, writeOtherTokenizer } from './helpers.ts';

const work = mkdtempSync(join(tmpdir(), 'arl-mistakes-'));
const tinyTrain = ['--backend', 'cpu', '--dim', '32', '--layers', '1', '--heads', '2', '--max-seq', '32', '--seq', '16', '--batch', '2', '--eval-every', '0', '--steps', '1'];

describe('tokenizer mismatches', () => {
  /** Checkpoint with the bundled tokenizer. */
  let checkpoint: string;
  /** A checkpoint of vocabulary 256 without a tokenizer (as imported from Hugging Face without one). */
  let smallVocab: string;
  let otherTokenizer: string;
  /** Data prepared with otherTokenizer, and with the bundled tokenizer. */
  let otherData: string;
  let bundledData: string;

  before(async () => {
    await useCpu();
    ({ checkpoint } = await makeTinyArlInputs(work, 1));
    smallVocab = join(work, 'small-vocab');
    const model = new LlamaModel(makeConfig(null, { vocabSize: 256, dim: 16, layers: 1, heads: 2, kvHeads: 1, maxSeq: 32 }), 1);
    await saveCheckpoint(smallVocab, model, null);
    model.dispose();
    otherTokenizer = await writeOtherTokenizer(join(work, 'other.model'));
    otherData = await prepareTinyCorpus(4, otherTokenizer);
    bundledData = await prepareTinyCorpus(4);
  });

  test('train --init refuses data prepared with another tokenizer than the checkpoint', async () => {
    const out = join(work, 'cpt');
    const r = await runArl('train', '--init', checkpoint, '--data', otherData, '--out', out, ...tinyTrain);
    assertUserError(r, /prepared with another tokenizer .* than the model in .*ckpt .*arl prepare --tokenizer .*tokenizer\.model/);
    assert.ok(!existsSync(join(out, 'latest')));
  });

  test('eval refuses data prepared with another tokenizer than the checkpoint', async () => {
    assertUserError(await runArl('eval', '--backend', 'cpu', '--checkpoint', checkpoint, '--data', otherData), /prepared with another tokenizer/);
  });

  test('eval of data whose ids exceed the model vocabulary names the data, not a kernel', async () => {
    assertUserError(await runArl('eval', '--backend', 'cpu', '--checkpoint', smallVocab, '--data', bundledData, '--seq', '16'), /holds token id \d+, outside the model's vocabulary of 256; prepare the data with the model's tokenizer/);
  });

  test('generate refuses a --tokenizer that is not the checkpoint\'s own', async () => {
    assertUserError(await runArl('generate', '--backend', 'cpu', '--checkpoint', checkpoint, '--tokenizer', otherTokenizer, '--prompt', 'the'), /other\.model: not the tokenizer of the model in .*drop --tokenizer/);
  });

  test('train on data whose tokenizer file is gone says which file and what to do', async () => {
    const tokenizer = join(work, 'gone.model');
    cpSync(otherTokenizer, tokenizer);
    const data = await prepareTinyCorpus(4, tokenizer);
    rmSync(tokenizer);
    assertUserError(await runArl('train', '--data', data, '--out', join(work, 'gone-run'), ...tinyTrain), /gone\.model: the tokenizer .* was prepared with is gone .*put it back there, or run `arl prepare --tokenizer FILE/);
  });
});
