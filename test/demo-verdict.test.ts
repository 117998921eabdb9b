/** demo-arl ends with one plain verdict line built from its own figures. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { demoVerdict } from '../src/cli/demo-arl.ts';

test('the demo verdict says the mechanism shows only when the agent recaps and LongPPL improves', () => {
  const figures = { keyTokens: 160, segments: 3, inserted: 3, recapsWritten: 0, longppl: [239, 277] as [number, number] };
  assert.match(demoVerdict(figures), /^verdict: the mechanism does not show at this size \(3 segments kept for 160 key tokens, 3 recaps in the training data, 0 written by the agent, LongPPL not better\)/);
  assert.match(demoVerdict({ ...figures, recapsWritten: 2 }), /does not show/);
  assert.match(demoVerdict({ ...figures, recapsWritten: 2, longppl: [277, 239] }), /^verdict: the mechanism shows at this size .*2 written by the agent, LongPPL better\)$/);
  assert.match(demoVerdict({ ...figures, longppl: [null, null] }), /LongPPL not measured/);
});
