import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { UserError } from '../src/io/errors.ts';
import { brownToText, detokenize, readBrownDocuments } from '../src/data/brown.ts';
import { readDocuments, type CorpusDocument } from '../src/data/corpus.ts';
import { decodeTokens, META_FILE, type PrepareMeta, type Split } from '../src/data/format.ts';
import { TokenLoader } from '../src/data/loader.ts';
import { prepareCorpus, type PrepareOptions } from '../src/data/prepare.ts';
import { BUNDLED_TOKENIZER_PATH, Tokenizer } from '../src/tokenizer/sentencepiece.ts';
import { assertUserError, runArl } from './helpers.ts';

let tmp: string;
let tokenizer: Tokenizer;
before(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'arl-data-'));
  tokenizer = await Tokenizer.load(BUNDLED_TOKENIZER_PATH);
});
after(() => rmSync(tmp, { recursive: true, force: true }));

function writeFiles(root: string, files: Record<string, string>): string {
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(dirname(join(root, name)), { recursive: true });
    writeFileSync(join(root, name), content);
  }
  return root;
}

async function collect(source: string): Promise<CorpusDocument[]> {
  const docs: CorpusDocument[] = [];
  for await (const doc of readDocuments(source)) docs.push(doc);
  return docs;
}

async function rejectsWithUserError(promise: Promise<unknown>, message: string | RegExp): Promise<void> {
  await assert.rejects(promise, (err: Error) => {
    assert.ok(err instanceof UserError, `${err.name}: ${err.message}`);
    if (typeof message === 'string') assert.equal(err.message, message);
    else assert.match(err.message, message);
    return true;
  });
}

describe('Brown corpus', () => {
  test('has 500 documents of detokenized English', () => {
    const docs = [...readBrownDocuments()];
    assert.equal(docs.length, 500);
    assert.deepEqual([docs[0]!.id, docs[499]!.id], ['ca01', 'cr09']);
    assert.ok(
      docs[0]!.text.startsWith(
        'The Fulton County Grand Jury said Friday an investigation of Atlanta\'s recent primary election produced ' +
          '"no evidence" that any irregularities took place.\n\nThe jury further said in term-end presentments that ' +
          'the City Executive Committee, which had over-all charge of the election, "deserves the praise and thanks ' +
          'of the City of Atlanta" for the manner in which the election was conducted.\n\n',
      ),
    );
    for (const doc of docs) {
      assert.ok(doc.text.length > 5000, doc.id);
      // No Penn quotes (other than inch marks), space before punctuation, or doubled punctuation.
      assert.doesNotMatch(doc.text, /``|\D''| [,.;:!?)] |;;|\?\?|!!|\n\n\n/, doc.id);
    }
  });

  test('keeps sentences of a paragraph together and headlines apart', () => {
    const tagged = [
      '\n\n\tThe/at jury/nn said/vbd ./.\nIt/pps left/vbd ./.\n\n',
      'Merger/nn-hl proposed/vbn-hl\nHowever/wrb ,/, it/pps failed/vbd ./.\n\n',
    ].join('');
    assert.equal(brownToText(tagged), 'The jury said. It left.\n\nMerger proposed\n\nHowever, it failed.');
  });

  test('detokenizes quotes, parentheses and abbreviations', () => {
    const cases: Array<[string, string]> = [
      ["`` Only a handful '' , the jury said .", '"Only a handful," the jury said.'],
      ["he said `` no '' .", 'he said "no."'],
      ["think , ' You're my friend ' '' .", 'think, \'You\'re my friend\'."'],
      ['the resolution ( 1 ) passed ; really ?', 'the resolution (1) passed; really?'],
      ['won by Ivan Allen Jr. .', 'won by Ivan Allen Jr.'],
      ["as `` A.M.A. '' .", 'as "A.M.A."'],
      ['why not ? ? Really ; ; yes ! !', 'why not? Really; yes!'],
      ["a 1/2'' '' bar , 12'' '' .", "a 1/2'' bar, 12''."],
      ["tell 'em he did n't go", "tell 'em he didn't go"],
    ];
    for (const [tokens, text] of cases) assert.equal(detokenize(tokens.split(' ')), text);
  });
});

describe('readDocuments', () => {
  test('reads a folder of .txt files recursively in sorted order, unwrapping lines', async () => {
    const dir = writeFiles(join(tmp, 'folder'), {
      'b.txt': 'Second file.',
      'a/nested.txt': 'Hard\nwrapped line.\r\n\r\nNext paragraph.\n',
      'empty.txt': '  \n\n',
      'notes.md': 'ignored',
    });
    assert.deepEqual(await collect(dir), [
      { id: join('a', 'nested.txt'), text: 'Hard wrapped line.\n\nNext paragraph.' },
      { id: 'b.txt', text: 'Second file.' },
    ]);
  });

  test('reads a single .txt file and a .jsonl file', async () => {
    const files = writeFiles(join(tmp, 'single'), {
      'one.txt': 'Just one document.',
      'docs.jsonl': '{"text": "First."}\n\n{"text": "Line two\\nkept.", "id": 7}\n{"text": ""}\n',
    });
    assert.deepEqual(await collect(join(files, 'one.txt')), [{ id: 'one.txt', text: 'Just one document.' }]);
    assert.deepEqual(await collect(join(files, 'docs.jsonl')), [
      { id: 'docs.jsonl:1', text: 'First.' },
      { id: 'docs.jsonl:3', text: 'Line two\nkept.' },
    ]);
  });

  test('reports malformed JSON lines with FILE:LINE', async () => {
    const dir = writeFiles(join(tmp, 'bad-jsonl'), {
      'syntax.jsonl': '{"text": "ok"}\n\n{"text": oops}\n',
      'field.jsonl': '{"text": "ok"}\n{"body": "no text"}\n',
      'type.jsonl': '{"text": 3}\n',
    });
    const syntax = join(dir, 'syntax.jsonl');
    await rejectsWithUserError(collect(syntax), new RegExp(`^${syntax}:3: not valid JSON \\(.+\\)$`));
    const field = join(dir, 'field.jsonl');
    await rejectsWithUserError(collect(field), `${field}:2: missing string field "text" (the line has fields body); pass --text-field with the field holding the text`);
    const type = join(dir, 'type.jsonl');
    await rejectsWithUserError(collect(type), `${type}:1: missing string field "text" (the line has fields text); pass --text-field with the field holding the text`);
  });

  test('reads the text of a .jsonl file from another field (textField); a line without it names file, line and field', async () => {
    const dir = writeFiles(join(tmp, 'text-field'), { 'pages.jsonl': '{"content": "First page.", "text": 1}\n{"content": "Second page."}\n{"title": "no content"}\n' });
    const pages = join(dir, 'pages.jsonl');
    const docs: CorpusDocument[] = [];
    await rejectsWithUserError(
      (async () => {
        for await (const doc of readDocuments(pages, { textField: 'content' })) docs.push(doc);
      })(),
      `${pages}:3: missing string field "content" (the line has fields title); pass --text-field with the field holding the text`,
    );
    assert.deepEqual(docs, [
      { id: 'pages.jsonl:1', text: 'First page.' },
      { id: 'pages.jsonl:2', text: 'Second page.' },
    ]);
    await rejectsWithUserError(collect(pages), new RegExp(`^${pages}:1: missing string field "text"`));
  });

  test('arl prepare --text-field reads JSON lines whose text is in another field', async () => {
    const lines = Array.from({ length: 6 }, (_, i) => JSON.stringify({ id: i, body: `Document number ${i} has a few words in it.` }));
    const corpus = join(writeFiles(join(tmp, 'cli-text-field'), { 'body.jsonl': `${lines.join('\n')}\n` }), 'body.jsonl');
    const out = join(tmp, 'prepared-body');
    const [withField, without] = await Promise.all([runArl('prepare', '--corpus', corpus, '--text-field', 'body', '--out', out), runArl('prepare', '--corpus', corpus, '--out', join(tmp, 'x'))]);
    assert.equal(withField.code, 0, withField.stderr);
    const meta = JSON.parse(readFileSync(join(out, META_FILE), 'utf8')) as PrepareMeta;
    assert.equal(meta.splits.train.docs + meta.splits.val.docs, 6);
    assertUserError(without, new RegExp(`^arl: ${corpus}:1: missing string field "text" \\(the line has fields id, body\\); pass --text-field`));
  });

  test('rejects missing paths, unsupported files and empty corpora', async () => {
    const missing = join(tmp, 'nope');
    await rejectsWithUserError(collect(missing), `${missing}: cannot read corpus (no such file or directory)`);
    const dir = writeFiles(join(tmp, 'empty-corpus'), { 'blank.txt': '\n', 'data.csv': 'a,b' });
    await rejectsWithUserError(collect(dir), `${dir}: corpus has no documents with text`);
    await rejectsWithUserError(collect(join(dir, 'data.csv')), /data\.csv: unsupported corpus/);
  });
});

/** A small corpus: 12 documents of a few paragraphs each. */
function smallCorpusFolder(name: string): string {
  const files: Record<string, string> = {};
  for (let i = 0; i < 12; i++) {
    files[`doc${String(i).padStart(2, '0')}.txt`] =
      `Document ${i} begins here. It has "quotes" and <recap>a recap</recap>.\n\n` +
      `Its second paragraph mentions ${i * 1961} things.`;
  }
  return writeFiles(join(tmp, name), files);
}

function readSplit(dir: string, meta: PrepareMeta, split: Split): number[] {
  const tokens: number[] = [];
  for (const shard of meta.splits[split].shards) {
    const values = decodeTokens(readFileSync(join(dir, shard.file)), meta.dtype);
    assert.equal(values.length, shard.tokens, shard.file);
    tokens.push(...values);
  }
  assert.equal(tokens.length, meta.splits[split].tokens);
  return tokens;
}

/** Decodes a split's stream of BOS … EOS documents. */
function decodeDocuments(tokens: number[]): string[] {
  const texts: string[] = [];
  let start = -1;
  tokens.forEach((id, i) => {
    if (id === tokenizer.bosId) start = i + 1;
    if (id === tokenizer.eosId) texts.push(tokenizer.decode(tokens.slice(start, i)));
  });
  return texts;
}

describe('prepareCorpus', () => {
  const prepare = (source: string, outDir: string, options: Partial<PrepareOptions> = {}) =>
    prepareCorpus({ source, tokenizer, outDir, valFraction: 0.2, seed: 7, ...options });

  test('writes shards matching meta.json that decode back to the documents', async () => {
    const source = smallCorpusFolder('small');
    const outDir = join(tmp, 'prepared-small');
    const progress: number[] = [];
    const meta = await prepare(source, outDir, { shardTokens: 50, onProgress: (docs) => progress.push(docs) });

    assert.deepEqual(JSON.parse(readFileSync(join(outDir, META_FILE), 'utf8')), meta);
    assert.equal(meta.format, 1);
    assert.equal(meta.dtype, 'uint16');
    assert.deepEqual(meta.tokenizer, { path: BUNDLED_TOKENIZER_PATH, sha256: tokenizer.sha256 });
    assert.deepEqual(progress, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    assert.equal(meta.splits.train.docs + meta.splits.val.docs, 12);
    assert.ok(meta.splits.val.docs >= 1 && meta.splits.train.docs >= 1);
    assert.ok(meta.splits.train.shards.length > 1, 'small shards force several files');
    assert.ok(meta.splits.train.shards.slice(0, -1).every((s) => s.tokens === 50));
    for (const split of ['train', 'val'] as const) {
      for (const shard of meta.splits[split].shards) {
        assert.equal(statSync(join(outDir, shard.file)).size, shard.tokens * 2, shard.file);
      }
      const docsStarted = meta.splits[split].shards.reduce((sum, s) => sum + s.docs, 0);
      assert.equal(docsStarted, meta.splits[split].docs);
    }

    const expected = (await collect(source)).map((d) => d.text).sort();
    const decoded = [...decodeDocuments(readSplit(outDir, meta, 'train')), ...decodeDocuments(readSplit(outDir, meta, 'val'))];
    assert.deepEqual(decoded.sort(), expected);
    assert.deepEqual(readdirSync(tmp).filter((f) => f.includes('.tmp-')), [], 'no temp folder left');
  });

  test('is deterministic, and replaces earlier output', async () => {
    const source = smallCorpusFolder('small-again');
    const outDir = join(tmp, 'prepared-twice');
    const first = await prepare(source, outDir);
    const firstTrain = readFileSync(join(outDir, 'train_00000.bin'));
    const second = await prepare(source, outDir);
    assert.deepEqual(second, first);
    assert.deepEqual(readFileSync(join(outDir, 'train_00000.bin')), firstTrain);
  });

  test('gives val at least one document', async () => {
    const meta = await prepare(smallCorpusFolder('small-val'), join(tmp, 'prepared-val'), { valFraction: 0.001 });
    assert.equal(meta.splits.val.docs, 1);
    assert.equal(meta.splits.train.docs, 11);
  });

  test('prepares a .jsonl corpus', async () => {
    const lines = Array.from({ length: 6 }, (_, i) => JSON.stringify({ text: `Record ${i}.\n\nWith a <recap>summary</recap>.` }));
    const source = writeFiles(join(tmp, 'jsonl'), { 'corpus.jsonl': lines.join('\n') + '\n' });
    const outDir = join(tmp, 'prepared-jsonl');
    const meta = await prepare(join(source, 'corpus.jsonl'), outDir);
    const decoded = [...decodeDocuments(readSplit(outDir, meta, 'train')), ...decodeDocuments(readSplit(outDir, meta, 'val'))];
    assert.deepEqual(decoded.sort(), lines.map((l) => JSON.parse(l).text).sort());
  });

  test('leaves nothing behind when the corpus is malformed', async () => {
    const source = writeFiles(join(tmp, 'bad'), { 'bad.jsonl': '{"text": "fine"}\nnot json\n' });
    const outDir = join(tmp, 'prepared-bad');
    await rejectsWithUserError(prepare(join(source, 'bad.jsonl'), outDir), /bad\.jsonl:2: not valid JSON/);
    assert.equal(existsSync(outDir), false);
    assert.deepEqual(readdirSync(tmp).filter((f) => f.includes('.tmp-')), []);
  });

  test('refuses to replace a folder that is not prepared data', async () => {
    const outDir = writeFiles(join(tmp, 'precious'), { 'thesis.txt': 'do not delete' });
    await rejectsWithUserError(prepare(smallCorpusFolder('small-x'), outDir), /not a prepared-data folder/);
    assert.equal(readFileSync(join(outDir, 'thesis.txt'), 'utf8'), 'do not delete');
  });

  test('prepares the bundled Brown corpus', async () => {
    const outDir = join(tmp, 'prepared-brown');
    const meta = await prepareCorpus({ source: 'brown', tokenizer, outDir });
    assert.equal(meta.source, 'brown');
    assert.equal(meta.splits.train.docs + meta.splits.val.docs, 500);
    assert.ok(meta.splits.val.docs > 5 && meta.splits.val.docs < 50, `${meta.splits.val.docs} val docs`);
    assert.ok(meta.splits.train.tokens > 1_000_000, `${meta.splits.train.tokens} train tokens`);
    const loader = TokenLoader.open(outDir, 'val');
    const { x } = loader.nextBatch(1, 32);
    assert.equal(x[0], tokenizer.bosId);
  });
});

describe('TokenLoader', () => {
  let dir: string;
  let meta: PrepareMeta;
  before(async () => {
    dir = join(tmp, 'prepared-loader');
    meta = await prepareCorpus({ source: smallCorpusFolder('loader'), tokenizer, outDir: dir, seed: 1, shardTokens: 37 });
  });

  test('explains how to create missing data', () => {
    const missing = join(tmp, 'no-data');
    assert.throws(() => TokenLoader.open(missing, 'train'), (err: Error) => {
      assert.ok(err instanceof UserError);
      assert.match(err.message, /meta\.json: no prepared data \(missing\); run `arl prepare`/);
      return true;
    });
  });

  test('yields shifted windows that walk the token stream and wrap around', () => {
    const stream = readSplit(dir, meta, 'train');
    const loader = TokenLoader.open(dir, 'train');
    assert.equal(loader.totalTokens, stream.length);
    assert.equal(loader.vocabSize, tokenizer.vocabSize);
    const batch = 3;
    const seq = 16;
    let start = 0;
    for (let step = 0; step < 20; step++) {
      const { x, y } = loader.nextBatch(batch, seq);
      assert.equal(x.length, batch * seq);
      for (let row = 0; row < batch; row++) {
        for (let i = 0; i < seq; i++) {
          assert.equal(x[row * seq + i], stream[(start + i) % stream.length]);
          assert.equal(y[row * seq + i], stream[(start + i + 1) % stream.length]);
        }
        start += seq;
      }
    }
    assert.equal(loader.position.epoch, Math.floor(start / stream.length));
    assert.ok(loader.position.epoch >= 1, 'the test reads past the end');
  });

  test('resumes exactly from a saved position', () => {
    const loader = TokenLoader.open(dir, 'train');
    for (let i = 0; i < 7; i++) loader.nextBatch(2, 24);
    const saved = JSON.parse(JSON.stringify(loader.position));
    const expected = [loader.nextBatch(2, 24), loader.nextBatch(2, 24)];

    const resumed = TokenLoader.open(dir, 'train');
    resumed.seek(saved);
    assert.deepEqual(resumed.position, saved);
    assert.deepEqual([resumed.nextBatch(2, 24), resumed.nextBatch(2, 24)], expected);
  });

  test('shuffled order: every row of a shard once in the first epoch, seeded, a new order and phase each later epoch, resumable', async () => {
    const bigDir = join(tmp, 'prepared-shuffle');
    const bigMeta = await prepareCorpus({ source: smallCorpusFolder('shuffle'), tokenizer, outDir: bigDir, seed: 1 });
    const stream = readSplit(bigDir, bigMeta, 'train');
    const seq = 8;
    const rows = Math.floor((stream.length - 1) / seq);
    const rowsOf = (seed: number, count: number): string[] => {
      const loader = TokenLoader.open(bigDir, 'train', { shuffleSeed: seed });
      return Array.from({ length: count }, () => {
        const { x, y } = loader.nextBatch(1, seq);
        assert.deepEqual([...y.subarray(0, seq - 1)], [...x.subarray(1)], 'y is x shifted by one');
        return [...x].join(',');
      });
    };
    const epoch1 = rowsOf(3, rows);
    const expected = Array.from({ length: rows }, (_, r) => stream.slice(r * seq, r * seq + seq).join(','));
    assert.deepEqual([...epoch1].sort(), [...expected].sort(), 'one epoch visits each row once');
    assert.notDeepEqual(epoch1, expected, 'the order is shuffled');
    assert.deepEqual(rowsOf(3, rows), epoch1, 'same seed, same order');
    assert.notDeepEqual(rowsOf(3, 2 * rows).slice(rows), epoch1, 'a new order each epoch');
    // Later epochs cut their rows at one new phase each: a row starts at phase + k * seq of the stream.
    const later = TokenLoader.open(bigDir, 'train', { shuffleSeed: 3 });
    const phasesByEpoch = new Map<number, Set<number>>();
    for (let i = 0; i < 4 * rows; i++) {
      const { x } = later.nextBatch(1, seq);
      const starts = [...stream.keys()].filter((at) => x.every((t, j) => stream[at + j] === t));
      const epoch = later.position.epoch;
      if (!phasesByEpoch.has(epoch)) phasesByEpoch.set(epoch, new Set());
      if (starts.length === 1) phasesByEpoch.get(epoch)!.add(starts[0]! % seq);
    }
    assert.deepEqual([...phasesByEpoch.get(0)!], [0]);
    const laterPhases = [...phasesByEpoch].filter(([epoch]) => epoch > 0).map(([, phases]) => [...phases]);
    assert.ok(laterPhases.length >= 2 && laterPhases.every((phases) => phases.length === 1), JSON.stringify(laterPhases));
    assert.ok(laterPhases.some(([phase]) => phase !== 0), 'rows are cut at a new phase after the first epoch');

    const loader = TokenLoader.open(bigDir, 'train', { shuffleSeed: 3 });
    for (let i = 0; i < 5; i++) loader.nextBatch(2, seq);
    const resumed = TokenLoader.open(bigDir, 'train', { shuffleSeed: 3 });
    resumed.seek(JSON.parse(JSON.stringify(loader.position)));
    assert.deepEqual(resumed.nextBatch(2, seq), loader.nextBatch(2, seq));
  });

  test('rejects positions and sequence lengths that do not fit the data', () => {
    const loader = TokenLoader.open(dir, 'val');
    assert.throws(() => loader.seek({ shard: 99, offset: 0, epoch: 0 }), UserError);
    assert.throws(() => loader.seek({ shard: 0, offset: -1, epoch: 0 }), UserError);
    assert.throws(() => loader.nextBatch(1, loader.totalTokens), UserError);
    assert.throws(() => loader.nextBatch(0, 8), RangeError);
  });
});
