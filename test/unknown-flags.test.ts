/** The suggestion given for an unknown flag. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { closestFlag, unknownFlagsMessage } from '../src/cli/unknown-flags.ts';

const known = ['checkpoint', 'prompt', 'max-new-tokens', 'max-recap-tokens', 'temperature'];

test('a misspelt flag gets the closest flag by letters', () => {
  assert.equal(closestFlag('tempreature', known), 'temperature');
  assert.equal(closestFlag('max-new-token', known), 'max-new-tokens');
  assert.equal(closestFlag('zzz', known), undefined);
});

test('a flag with a word left out gets the shortest flag holding its words in order', () => {
  assert.equal(closestFlag('max-tokens', known), 'max-new-tokens');
  assert.equal(closestFlag('tokens-max', known), undefined);
  assert.equal(unknownFlagsMessage('Unknown argument: max-tokens, maxTokens', known, 'arl generate'), 'unknown flag --max-tokens (did you mean --max-new-tokens?); see arl generate --help');
});
