/** Batches and passes: how documents are grouped for the GPU. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { inBatches, inPasses } from '../src/core/batches.ts';

test('inBatches cuts in order, the last batch shorter', () => {
  assert.deepEqual(inBatches([1, 2, 3, 4, 5], 2), [[1, 2], [3, 4], [5]]);
});

test('inPasses groups items until their sizes reach the limit, drawing from a lazy source only as a group needs it', async () => {
  const drawn: number[] = [];
  async function* source(): AsyncGenerator<number> {
    for (const size of [3, 1, 4, 1, 5, 9, 2]) {
      drawn.push(size);
      yield size;
    }
  }
  const passes: number[][] = [];
  for await (const pass of inPasses(source(), (size) => size, 5)) {
    passes.push(pass);
    // Nothing past this pass's last item has been read yet.
    assert.equal(drawn.length, passes.flat().length);
  }
  assert.deepEqual(passes, [[3, 1, 4], [1, 5], [9], [2]]);
  for await (const pass of inPasses([], () => 1, 5)) assert.fail(`an empty source gave a pass: ${pass}`);
});
