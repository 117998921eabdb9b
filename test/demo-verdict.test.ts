/** demo-arl ends with one plain verdict line built from its own figures; its threshold comes from a development document. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { demoVerdict, leadingParagraphs, thresholdFromDev } from '../src/cli/demo-arl.ts';

const figures = {
  keyTokens: 144, segments: 90, recaps: 90, inserted: 80, recapsWritten: 0, recapsDistinct: 0, documentsRead: 4,
  perplexity: [333, 351] as [number, number], longppl: [239, 277] as [number, number],
};

test('the verdict states the counts and what was and was not shown', () => {
  const line = demoVerdict(figures);
  assert.match(line, /^verdict: recaps: 0 written by the agent \(0 distinct\) over 4 held-out documents; recap data: 90 segments kept for 144 key tokens, 90 recaps written, 80 inserted; perplexity 333\.0 -> 351\.0 \(not better\), LongPPL 239\.0 -> 277\.0 \(not better\)\./);
  assert.match(line, /Shown: the pipeline writes recaps into the training data\. Not shown: the trained model opens recaps \(at a threshold set on a development document\); LongPPL improving; that recaps/);
});

test('the verdict never puts a change down to the recaps, even when everything improves', () => {
  const line = demoVerdict({ ...figures, recapsWritten: 5, recapsDistinct: 2, longppl: [277, 239], perplexity: [351, 333] });
  assert.match(line, /^verdict: recaps: 5 written by the agent \(2 distinct\) over 4 held-out documents;/);
  assert.match(line, /Shown: the pipeline writes recaps into the training data; the trained model opens recaps \(at a threshold set on a development document\); LongPPL improving\. Not shown: that recaps, rather than the extra training, cause any change \(no run without recaps\); that the agent's recaps summarise what it read\.$/);
  assert.match(demoVerdict({ ...figures, inserted: 0, longppl: [null, null] }), /LongPPL n\/a -> n\/a \(not measured\).*Shown: nothing\./);
});

test('the threshold is the highest of the grid that the development document reaches', () => {
  assert.equal(thresholdFromDev([0.01, 0.13, 0.04]), 0.1);
  assert.equal(thresholdFromDev([0.7]), 0.5);
  assert.equal(thresholdFromDev([0.001]), null);
  assert.equal(thresholdFromDev([]), null);
});

test('documents are cut at a paragraph break', () => {
  assert.equal(leadingParagraphs('one.\n\ntwo.\n\nthree.', 12), 'one.\n\ntwo.');
  assert.equal(leadingParagraphs('short', 12), 'short');
  assert.equal(leadingParagraphs('abcdefghijklmnop', 5), 'abcde');
});
