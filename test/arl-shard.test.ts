/** ARL corpus sharding: `i/N` parsing and the index % N selection rule. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UserError } from '../src/io/errors.js';
import { inShard, parseShard } from '../src/arl/shard.js';

test('parseShard accepts i/N with 0 <= i < N', () => {
  assert.deepEqual(parseShard('0/1'), { index: 0, count: 1 });
  assert.deepEqual(parseShard('2/3'), { index: 2, count: 3 });
});

test('parseShard refuses malformed or out-of-range shards with one line', () => {
  for (const bad of ['3/3', '1/0', '-1/2', '1.5/2', 'a/b', '1', '']) {
    assert.throws(() => parseShard(bad), (e: unknown) => e instanceof UserError && !e.message.includes('\n'), bad);
  }
});

test('shards are disjoint and together cover every document exactly once', () => {
  const count = 3;
  for (let doc = 0; doc < 10; doc++) {
    const owners = [0, 1, 2].filter((i) => inShard(doc, { index: i, count }));
    assert.deepEqual(owners, [doc % count]);
  }
});
