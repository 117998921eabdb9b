/** Mistakes a first-time user makes: each one gives one line on stderr naming what is wrong, exit code 2, and no stack trace. */
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { snakeCaseKeys } from '../src/cli/common.ts';
import { writeFileAtomic } from '../src/io/atomic.ts';
import { saveCheckpoint } from '../src/io/checkpoint.ts';
import { UserError } from '../src/io/errors.ts';
import { makeConfig } from '../src/model/config.ts';
import { LlamaModel } from '../src/model/llama.ts';
import { assertUserError, makeTinyArlInputs, makeTinyArlSegments, prepareTinyCorpus, runArl, useCpu, writeOtherTokenizer } from './helpers.ts';

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

  test('train --resume refuses data prepared with another tokenizer than the run', async () => {
    const out = join(work, 'resume-run');
    const first = await runArl('train', '--data', bundledData, '--out', out, ...tinyTrain);
    assert.equal(first.code, 0, first.stderr);
    assertUserError(await runArl('train', '--data', otherData, '--out', out, '--resume', ...tinyTrain.slice(0, -1), '2'), /prepared with another tokenizer .* than the model in .*resume-run.ckpt-000001/);
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

describe('input files', () => {
  const files = join(work, 'files');
  before(() => mkdirSync(files, { recursive: true }));

  test('prepare refuses a binary file and text that is not UTF-8, and leaves no output', async () => {
    writeFileSync(join(files, 'binary.txt'), Buffer.from([0x48, 0x69, 0x00, 0x01, 0x02]));
    writeFileSync(join(files, 'latin1.txt'), Buffer.from('caf\xe9 au lait', 'latin1'));
    const [binary, latin1] = await Promise.all([
      runArl('prepare', '--corpus', join(files, 'binary.txt'), '--out', join(files, 'p-binary')),
      runArl('prepare', '--corpus', join(files, 'latin1.txt'), '--out', join(files, 'p-latin1')),
    ]);
    assertUserError(binary, /binary\.txt: not a text file \(NUL byte at byte 2\); pass a UTF-8 text file/);
    assertUserError(latin1, /latin1\.txt: not UTF-8 text \(invalid byte sequence at byte 3\); convert it to UTF-8/);
    assert.ok(!existsSync(join(files, 'p-binary')) && !existsSync(join(files, 'p-latin1')));
  });

  test('prepare splits a single .txt file into documents at blank lines, so val is not empty', async () => {
    const paragraphs = Array.from({ length: 8 }, (_, i) => `Paragraph ${i} starts here,\r\nand goes on over a wrapped line.`);
    writeFileSync(join(files, 'book.txt'), paragraphs.join('\r\n\r\n'));
    const out = join(files, 'p-book');
    const r = await runArl('prepare', '--corpus', join(files, 'book.txt'), '--out', out, '--val-fraction', '0.2');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /split into 8 documents at blank lines/);
    const meta = JSON.parse(readFileSync(join(out, 'meta.json'), 'utf8'));
    assert.equal(meta.splits.train.docs + meta.splits.val.docs, 8);
    assert.ok(meta.splits.val.docs >= 1);
  });

  test('prepare of a single document with nothing to split refuses and says what to do', async () => {
    writeFileSync(join(files, 'one.txt'), 'One paragraph only,\nwrapped over two lines.\n');
    const out = join(files, 'p-one');
    assertUserError(await runArl('prepare', '--corpus', join(files, 'one.txt'), '--out', out), /one\.txt: only one document, so the validation split would be empty; .*--val-fraction 0 and train with --eval-every 0/);
    assert.ok(!existsSync(out));
    const r = await runArl('prepare', '--corpus', join(files, 'one.txt'), '--out', out, '--val-fraction', '0');
    assert.equal(r.code, 0, r.stderr);
  });

  test('inspect --out of an existing folder writes report.html in it', async () => {
    const { arlDir } = await makeTinyArlSegments(join(work, 'inspect'), 1);
    const outDir = join(work, 'inspect', 'out');
    mkdirSync(outDir);
    const r = await runArl('inspect', '--keytokens', arlDir, '--out', outDir);
    assert.equal(r.code, 0, r.stderr);
    assert.match(readFileSync(join(outDir, 'report.html'), 'utf8'), /<html/i);
  });

  test('writing a file where a folder is gives a UserError and leaves no temp file', () => {
    const folder = join(files, 'a-folder');
    mkdirSync(folder);
    assert.throws(() => writeFileAtomic(folder, 'x'), (err) => err instanceof UserError && err.message === `${folder}: is a folder; pass the path of a file to write`);
    assert.deepEqual(readdirSync(files).filter((f) => f.includes('.tmp')), []);
  });

  test('answer reads a CRLF input as the same paragraphs as its LF version', async () => {
    const { checkpoint } = await makeTinyArlInputs(join(work, 'answer'), 1);
    const text = 'The first paragraph is here.\nThe second one follows.\n\nA third after a blank line.\n';
    writeFileSync(join(files, 'lf.txt'), text);
    writeFileSync(join(files, 'crlf.txt'), text.replaceAll('\n', '\r\n'));
    const flags = ['--backend', 'cpu', '--checkpoint', checkpoint, '--question', 'What follows?', '--max-recap-tokens', '8', '--json'];
    const [lf, crlf, oldName] = await Promise.all([
      runArl('answer', ...flags, '--max-new-tokens', '2', '--input', join(files, 'lf.txt')),
      runArl('answer', ...flags, '--max-new-tokens', '2', '--input', join(files, 'crlf.txt')),
      runArl('answer', ...flags, '--max-answer-tokens', '2', '--input', join(files, 'lf.txt')),
    ]);
    assert.equal(lf.code, 0, lf.stderr);
    assert.equal(crlf.code, 0, crlf.stderr);
    // Everything but the seconds the agent waited, which vary from run to run.
    const untimed = (stdout: string): Record<string, unknown> => {
      const { prefill_seconds: _prefill, decode_seconds: _decode, ...rest } = JSON.parse(stdout) as Record<string, unknown>;
      return rest;
    };
    assert.deepEqual(untimed(crlf.stdout), untimed(lf.stdout));
    assert.equal(oldName.code, 0, oldName.stderr);
    assert.deepEqual(untimed(oldName.stdout), untimed(lf.stdout), '--max-answer-tokens is the old name of --max-new-tokens');
    const keys = Object.keys(JSON.parse(lf.stdout));
    for (const key of ['answer', 'recap_probabilities', 'input_tokens', 'max_context', 'recaps_out_of_context', 'rebuilds', 'prefill_seconds', 'decode_seconds']) assert.ok(keys.includes(key), `${key} in ${keys}`);
    assert.deepEqual(keys.filter((key) => !/^[a-z0-9_]+$/.test(key)), [], 'every key of answer --json is snake_case');
  });
});

describe('numeric flags', () => {
  test('a value that is not a number is quoted, and out-of-range values are refused, before anything loads', async () => {
    const generate = ['generate', '--checkpoint', join(work, 'nowhere'), '--prompt', 'x'];
    const results = await Promise.all([
      runArl(...generate, '--max-new-tokens', 'abc'),
      runArl(...generate, '--temperature', '-1'),
      runArl(...generate, '--top-p=1.5'),
      runArl('train', '--data', join(work, 'nowhere'), '--steps', '2.5'),
      runArl('train', '--data', join(work, 'nowhere'), '--lr', '0'),
    ]);
    assertUserError(results[0], /^arl: --max-new-tokens must be a number \(got "abc"\)$/);
    assertUserError(results[1], /^arl: --temperature must be a number >= 0 \(got -1\)$/);
    assertUserError(results[2], /^arl: --top-p must be a number in \(0, 1\] \(got 1\.5\)$/);
    assertUserError(results[3], /^arl: --steps must be a positive integer \(got 2\.5\)$/);
    assertUserError(results[4], /^arl: --lr must be a number > 0 \(got 0\)$/);
  });
});

describe('unknown flags', () => {
  test('each unknown flag is named once, with the closest flag of the command', async () => {
    const [one, two, sub, hidden] = await Promise.all([
      runArl('generate', '--checkpoint', join(work, 'nowhere'), '--prompt', 'x', '--max-new-token', '3'),
      runArl('generate', '--checkpoint', join(work, 'nowhere'), '--prompt', 'x', '--tempreature', '1', '--zzz'),
      runArl('ruler', 'eval', '--data', 'x', '--pred-dr', 'y'),
      runArl('answer', '--checkpoint', 'c', '--input', 'i', '--question', 'q', '--max-new-token', '3'),
    ]);
    assertUserError(one, /^arl: unknown flag --max-new-token \(did you mean --max-new-tokens\?\); see arl generate --help$/);
    assertUserError(two, /^arl: unknown flags --tempreature \(did you mean --temperature\?\), --zzz; see arl generate --help$/);
    assertUserError(sub, /^arl: unknown flag --pred-dr \(did you mean --pred-dir\?\); see arl ruler eval --help$/);
    assertUserError(hidden, /^arl: unknown flag --max-new-token \(did you mean --max-new-tokens\?\); see arl answer --help$/);
  });
});

describe('LongPPL without key tokens', () => {
  test('arl eval --corpus says why LongPPL is null and which flags to pass', async () => {
    await useCpu();
    const { checkpoint } = await makeTinyArlInputs(join(work, 'longppl'), 1);
    const corpus = join(work, 'longppl', 'short.jsonl');
    writeFileSync(corpus, `${JSON.stringify({ text: 'A document far too short to have key tokens.' })}\n`);
    const bodyCorpus = join(work, 'longppl', 'body.jsonl');
    writeFileSync(bodyCorpus, `${JSON.stringify({ body: 'A document far too short to have key tokens.' })}\n`);
    const [r, summary, body, noField] = await Promise.all([
      runArl('eval', '--backend', 'cpu', '--checkpoint', checkpoint, '--corpus', corpus, '--json'),
      runArl('eval', '--backend', 'cpu', '--checkpoint', checkpoint, '--corpus', corpus),
      runArl('eval', '--backend', 'cpu', '--checkpoint', checkpoint, '--corpus', bodyCorpus, '--text-field', 'body', '--json'),
      runArl('eval', '--backend', 'cpu', '--checkpoint', checkpoint, '--corpus', bodyCorpus),
    ]);
    assert.equal(body.code, 0, body.stderr);
    assert.deepEqual({ ...JSON.parse(body.stdout), corpus: corpus }, JSON.parse(r.stdout), '--text-field body reads the same document');
    assertUserError(noField, /body\.jsonl:1: missing string field "text" \(the line has fields body\); pass --text-field/);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout);
    assert.equal(report.longppl, null);
    assert.match(report.longppl_note, /^no key tokens: only tokens past S\+W = 64 .*--select threshold needs LSG > 2 with long log-prob > -2; try --select topk, or a lower --alpha or --beta$/);
    assert.match(r.stderr, /LongPPL is null: no key tokens/);
    assert.equal(summary.code, 0, summary.stderr);
    assert.match(summary.stdout, /^LongPPL +n\/a \(0 key tokens\): no key tokens: only tokens past S\+W = 64 .*try --select topk, or a lower --alpha or --beta$/m);
  });
});

test('snakeCaseKeys: camelCase keys become snake_case at every depth; symbols such as S stay', () => {
  assert.deepEqual(snakeCaseKeys({ maxContext: 1, S: 2, long_stride: 3, nested: [{ recapsOutOfContext: 4 }], kvHeads: { innerKey: 'valueStaysCamel' } }), {
    max_context: 1,
    S: 2,
    long_stride: 3,
    nested: [{ recaps_out_of_context: 4 }],
    kv_heads: { inner_key: 'valueStaysCamel' },
  });
});
