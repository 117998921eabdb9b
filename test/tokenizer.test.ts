import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { UserError } from '../src/io/errors.ts';
import { BUNDLED_TOKENIZER_PATH, Tokenizer } from '../src/tokenizer/sentencepiece.ts';

const ROUND_TRIP_TEXTS = [
  'The Fulton County Grand Jury said Friday an investigation of Atlanta\'s recent primary election produced "no evidence".',
  'First paragraph.\n\nSecond paragraph, with digits 1961 and $172,000.',
  '  leading and trailing spaces, double  spaces, tabs\tand a line\nbreak  ',
  'Non-ASCII falls back to bytes: café, naïve, Straße, 東京, 🙂.',
  '',
];

let tmp: string;
before(() => {
  tmp = mkdtempSync(join(tmpdir(), 'arl-tokenizer-'));
});
after(() => rmSync(tmp, { recursive: true, force: true }));

describe('bundled tokenizer', () => {
  test('has the Llama special ids and native recap markers', async () => {
    const tok = await Tokenizer.load(BUNDLED_TOKENIZER_PATH);
    assert.equal(tok.vocabSize, 4096);
    assert.deepEqual([tok.unkId, tok.bosId, tok.eosId], [0, 1, 2]);
    assert.deepEqual([tok.pieceOf(0), tok.pieceOf(1), tok.pieceOf(2)], ['<unk>', '<s>', '</s>']);
    assert.deepEqual([tok.pieceOf(tok.recapOpenId), tok.pieceOf(tok.recapCloseId)], ['<recap>', '</recap>']);
    assert.equal(tok.vocabExtended, false);
    assert.equal(tok.modelPath, BUNDLED_TOKENIZER_PATH);
    assert.ok(isAbsolute(BUNDLED_TOKENIZER_PATH) && existsSync(BUNDLED_TOKENIZER_PATH));
    assert.equal(tok.sha256, createHash('sha256').update(readFileSync(BUNDLED_TOKENIZER_PATH)).digest('hex'));
  });

  test('round-trips text, including whitespace, newlines and byte-fallback characters', async () => {
    const tok = await Tokenizer.load(BUNDLED_TOKENIZER_PATH);
    for (const text of ROUND_TRIP_TEXTS) {
      const ids = tok.encode(text);
      assert.ok(ids.every((id) => Number.isInteger(id) && id >= 0 && id < tok.vocabSize));
      assert.ok(!ids.includes(tok.unkId), `no <unk> for ${JSON.stringify(text)}`);
      assert.equal(tok.decode(ids), text);
    }
    assert.equal(tok.decode([tok.bosId, ...tok.encode('hi'), tok.eosId]), 'hi');
  });

  test('splits digits', async () => {
    const tok = await Tokenizer.load(BUNDLED_TOKENIZER_PATH);
    const digitPieces = tok.encode('in 1961').map((id) => tok.pieceOf(id)).filter((p) => /\d/.test(p));
    assert.deepEqual(digitPieces.map((p) => p.replace('▁', '')), ['1', '9', '6', '1']);
  });

  test('recap markers are single tokens and round-trip', async () => {
    assertRecapMarkers(await Tokenizer.load(BUNDLED_TOKENIZER_PATH));
  });

  test('rejects ids outside the vocabulary', async () => {
    const tok = await Tokenizer.load(BUNDLED_TOKENIZER_PATH);
    assert.throws(() => tok.decode([tok.vocabSize]), RangeError);
    assert.throws(() => tok.pieceOf(-1), RangeError);
  });

  test('loading does not leave process-wide handlers behind', async () => {
    const counts = () => [process.listenerCount('uncaughtException'), process.listenerCount('unhandledRejection')];
    const before = counts();
    await Tokenizer.load(BUNDLED_TOKENIZER_PATH);
    await Tokenizer.load(BUNDLED_TOKENIZER_PATH);
    assert.deepEqual(counts(), before);
  });
});

describe('foreign tokenizer without recap markers', () => {
  /** The bundled model with its markers renamed (same byte length, so the protobuf stays valid). */
  function writeForeignModel(): string {
    const path = join(tmp, 'foreign.model');
    const model = readFileSync(BUNDLED_TOKENIZER_PATH).toString('latin1');
    writeFileSync(path, Buffer.from(model.replaceAll('<recap>', '<recaX>').replaceAll('</recap>', '</recaX>'), 'latin1'));
    return path;
  }

  test('appends the markers to the vocabulary', async () => {
    const tok = await Tokenizer.load(writeForeignModel());
    assert.equal(tok.vocabExtended, true);
    assert.equal(tok.vocabSize, 4098);
    assert.deepEqual([tok.recapOpenId, tok.recapCloseId], [4096, 4097]);
    assert.deepEqual([tok.pieceOf(4096), tok.pieceOf(4097)], ['<recap>', '</recap>']);
  });

  test('recap markers are single tokens and round-trip', async () => {
    assertRecapMarkers(await Tokenizer.load(writeForeignModel()));
  });

  test('round-trips plain text', async () => {
    const tok = await Tokenizer.load(writeForeignModel());
    for (const text of ROUND_TRIP_TEXTS) assert.equal(tok.decode(tok.encode(text)), text);
  });
});

describe('unusable model files', () => {
  const cases: Array<[string, () => string]> = [
    ['a missing file', () => join(tmp, 'missing.model')],
    ['a folder', () => tmp],
    ['garbage', () => writeTmp('garbage.model', 'this is not a protobuf \xff\xff')],
    ['an empty file', () => writeTmp('empty.model', '')],
  ];
  for (const [name, makePath] of cases) {
    test(`${name} is a one-line UserError naming the path`, async () => {
      const path = makePath();
      await assert.rejects(Tokenizer.load(path), (err: Error) => {
        assert.ok(err instanceof UserError, `${err.name}: ${err.message}`);
        assert.ok(err.message.startsWith(`${path}: cannot read SentencePiece model (`), err.message);
        assert.ok(err.message.endsWith('pass --tokenizer PATH to a valid .model file'), err.message);
        assert.ok(!err.message.includes('\n'));
        return true;
      });
    });
  }
});

function writeTmp(name: string, content: string): string {
  const path = join(tmp, name);
  writeFileSync(path, content);
  return path;
}

function assertRecapMarkers(tok: Tokenizer): void {
  const text = 'The jury said <recap>it found no evidence</recap> and left.<recap></recap>';
  const ids = tok.encode(text);
  assert.equal(ids.filter((id) => id === tok.recapOpenId).length, 2);
  assert.equal(ids.filter((id) => id === tok.recapCloseId).length, 2);
  assert.equal(tok.decode(ids), text);
  // A native SentencePiece model may put its dummy-prefix piece "▁" before a leading marker.
  const withoutDummyPrefix = (ids: number[]) => ids.filter((id) => tok.pieceOf(id) !== '▁');
  assert.deepEqual(withoutDummyPrefix(tok.encode('<recap>')), [tok.recapOpenId]);
  assert.deepEqual(withoutDummyPrefix(tok.encode('</recap>')), [tok.recapCloseId]);
  assert.equal(tok.decode([tok.recapOpenId, tok.recapCloseId]), '<recap></recap>');
}
