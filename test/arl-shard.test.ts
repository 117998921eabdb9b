/** Sharded ARL data prep: steps 1-3 per `--shard i/N`, merged by `arl augment` into the bytes of an unsharded run; the merge's refusals. */
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { AUGMENT_FILES, augmentDocuments, DEFAULT_AUGMENT } from '../src/arl/augment.ts';
import { KEY_TOKEN_FILES } from '../src/arl/key-tokens.ts';
import { readJsonLines } from '../src/io/jsonl.ts';
import { RECAP_FILES } from '../src/arl/recap.ts';
import { SEGMENT_FILES } from '../src/arl/relevant-segment.ts';
import { parseShard } from '../src/arl/shard.ts';
import { UserError } from '../src/io/errors.ts';
import { BUNDLED_TOKENIZER_PATH, Tokenizer } from '../src/tokenizer/sentencepiece.ts';
import { assertUserError, makeTinyArlInputs, runArl, useCpu } from './helpers.ts';

const work = mkdtempSync(join(tmpdir(), 'arl-shard-'));
let inputs: { checkpoint: string; corpus: string };
const DOCUMENTS = 5;

/** Settings shared by every run: few key tokens, every segment kept (an untrained model gains little), half the documents augmented. */
const keyTokenFlags = (): string[] => ['--checkpoint', inputs.checkpoint, '--corpus', inputs.corpus, '--top-k', '2', '--backend', 'cpu'];
const recapOnlyFlags = ['--recapper', 'extractive', '--max-recap-tokens', '12'];
const recapDataFlags = [...recapOnlyFlags, '--margin', '-100'];
const augmentFlags = ['--mix', '0.5', '--val-fraction', '0.3'];

async function arl(...args: string[]): Promise<string> {
  const r = await runArl(...args);
  assert.equal(r.code, 0, `arl ${args.join(' ')}\n${r.stderr}`);
  return r.stdout;
}

/** augmented.jsonl and the prepared shards (tokens, and meta.json less the source folders it names). */
function mergedOutputs(dir: string): Record<string, string> {
  const files: Record<string, string> = { [AUGMENT_FILES.records]: readFileSync(join(dir, AUGMENT_FILES.records), 'utf8') };
  const prepared = join(dir, AUGMENT_FILES.prepared);
  for (const name of readdirSync(prepared).sort()) {
    if (name.endsWith('.bin')) files[name] = readFileSync(join(prepared, name)).toString('base64');
  }
  const { source: _, ...meta } = JSON.parse(readFileSync(join(prepared, 'meta.json'), 'utf8'));
  files['meta.json'] = JSON.stringify(meta);
  return files;
}

const shardDir = (run: string, index: number, count: number): string => join(work, run, `shard-${index}-of-${count}`);

describe('arl --shard i/N', () => {
  let reference: Record<string, string>;

  before(async () => {
    await useCpu();
    inputs = await makeTinyArlInputs(work, DOCUMENTS);
    const out = join(work, 'whole');
    await arl('recap-data', ...keyTokenFlags(), ...recapDataFlags, ...augmentFlags, '--out', out);
    reference = mergedOutputs(out);
    assert.ok(reference[AUGMENT_FILES.records].includes('<recap>'), 'the reference run inserted recaps');
  });

  test('keytokens, segments and recaps per shard of 2, merged by augment: the bytes of the unsharded run', async () => {
    const out = join(work, 'two');
    for (const index of [0, 1]) {
      const stdout = await arl('keytokens', ...keyTokenFlags(), '--out', out, '--shard', `${index}/2`);
      assert.match(stdout, new RegExp(`^${index === 0 ? 3 : 2} documents`, 'm'), 'documents 0, 2, 4 and 1, 3');
      const dir = shardDir('two', index, 2);
      assert.match(stdout, new RegExp(`wrote ${dir}`));
      const summary = JSON.parse(readFileSync(join(dir, KEY_TOKEN_FILES.summary), 'utf8'));
      assert.deepEqual([summary.shard_index, summary.shard_count, summary.corpus_documents], [index, 2, DOCUMENTS]);
      assert.match(summary.checkpoint_sha256, /^[0-9a-f]{64}$/);
      await arl('segments', '--checkpoint', inputs.checkpoint, '--keytokens', dir, '--margin', '-100', '--backend', 'cpu');
      assert.equal(JSON.parse(readFileSync(join(dir, SEGMENT_FILES.summary), 'utf8')).checkpoint_sha256, summary.checkpoint_sha256, 'step 2 records the weights it scored with');
      await arl('recaps', '--keytokens', dir, '--checkpoint', inputs.checkpoint, ...recapOnlyFlags, '--backend', 'cpu');
    }
    const whole = readJsonLines<{ doc: string }>(join(work, 'whole', KEY_TOKEN_FILES.documents)).map((d) => d.doc);
    assert.deepEqual(readJsonLines<{ doc: string }>(join(shardDir('two', 1, 2), KEY_TOKEN_FILES.documents)).map((d) => d.doc), [whole[1], whole[3]]);

    // Shards given out of order: the merge puts the documents back in corpus order, into the folder holding the shards.
    const stdout = await arl('augment', '--keytokens', shardDir('two', 1, 2), shardDir('two', 0, 2), ...augmentFlags);
    assert.match(stdout, new RegExp(`^${DOCUMENTS} documents`, 'm'));
    assert.deepEqual(mergedOutputs(out), reference);
  });

  test('recap-data --shard i/3 runs steps 1-3 per shard; augment merges them into the bytes of the unsharded run', async () => {
    const out = join(work, 'three');
    for (const index of [0, 1, 2]) {
      const stdout = await arl('recap-data', ...keyTokenFlags(), ...recapDataFlags, '--out', out, '--shard', `${index}/3`);
      assert.match(stdout, /^3\/4 recaps /m);
      assert.match(stdout, /^4\/4 augment merges all the shards: .* run arl augment --keytokens \S+shard-0-of-3 \S+shard-1-of-3 \S+shard-2-of-3$/m);
    }
    await arl('augment', '--keytokens', ...[0, 1, 2].map((index) => shardDir('three', index, 3)), ...augmentFlags);
    assert.deepEqual(mergedOutputs(out), reference);
  });

  test('refusals: a bad --shard; missing, repeated or foreign shards; shards of other settings', async () => {
    for (const bad of ['3/2', 'a/b', '0/0', '1/-2', '']) assert.throws(() => parseShard(bad), (err) => err instanceof UserError && /^--shard must be i\/N with N >= 1 and 0 <= i < N/.test(err.message));
    assert.deepEqual(parseShard('2/3'), { index: 2, count: 3 });
    assertUserError(await runArl('keytokens', ...keyTokenFlags(), '--out', join(work, 'bad'), '--shard', '3/2'), /^arl: --shard must be i\/N with N >= 1 and 0 <= i < N, e\.g\. --shard 0\/4 for the first of 4 \(got "3\/2"\)$/);
    const [a, b, c] = [0, 1, 2].map((index) => shardDir('three', index, 3));
    assertUserError(await runArl('augment', '--keytokens', a, c), /^arl: shard 1\/3 missing; pass all 3 shard folders of the run$/);

    const tokenizer = await Tokenizer.load(BUNDLED_TOKENIZER_PATH);
    const refuses = (dirs: string[], pattern: RegExp, outDir?: string) =>
      assert.rejects(augmentDocuments({ tokenizer, keyTokensDir: dirs, outDir, options: DEFAULT_AUGMENT }), (err) => err instanceof UserError && pattern.test(err.message));
    await refuses([a], /^shards 1\/3, 2\/3 missing/);
    await refuses([a, b, a], /shard-0-of-3 and .*shard-0-of-3 are both shard 0\/3; pass each shard once/);
    await refuses([a, shardDir('two', 1, 2)], /shard-1-of-2: shard 1\/2, but .*shard-0-of-3 is one of 3; pass the shard folders of one run/);
    await refuses([a, b, c, join(work, 'whole')], /whole: not a shard folder \(made without --shard\)/);

    // A shard made from another checkpoint, one whose recaps were capped differently, and shards in different folders with no --out.
    const other = join(work, 'other');
    cpSync(join(work, 'three'), other, { recursive: true });
    const edit = (index: number, file: string, key: string, value: unknown): void => {
      const path = join(other, `shard-${index}-of-3`, file);
      writeFileSync(path, JSON.stringify({ ...JSON.parse(readFileSync(path, 'utf8')), [key]: value }));
    };
    edit(2, KEY_TOKEN_FILES.summary, 'checkpoint_sha256', '0'.repeat(64));
    await refuses([a, b, join(other, 'shard-2-of-3')], /shard-2-of-3\/summary\.json: checkpoint_sha256 "0{64}", but .* has "[0-9a-f]{64}"; every shard needs the same corpus, checkpoint and settings/, other);
    edit(1, RECAP_FILES.summary, 'max_recap_tokens', 99);
    await refuses([join(other, 'shard-0-of-3'), join(other, 'shard-1-of-3'), c], /shard-1-of-3\/recaps-summary\.json: max_recap_tokens 99, but .* has 12/, other);
    edit(2, KEY_TOKEN_FILES.summary, 'checkpoint_sha256', JSON.parse(readFileSync(join(c, KEY_TOKEN_FILES.summary), 'utf8')).checkpoint_sha256);
    await refuses([a, b, join(other, 'shard-2-of-3')], /the shard folders .* are not side by side in one folder; pass --out for the merged output/);
  });
});
