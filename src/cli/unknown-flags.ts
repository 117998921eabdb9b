/**
 * yargs' strict mode reports unknown flags as "Unknown arguments: max-new-token, maxNewToken": each one
 * twice (its camelCase alias too) and without a suggestion. unknownFlagsMessage turns that into one
 * mention per flag with the closest flag the command knows.
 */

/** Edit distance between a and b (insertions, deletions, substitutions). */
export function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    previous = current;
  }
  return previous[b.length];
}

const kebab = (name: string): string => name.replace(/([a-z0-9])([A-Z])/g, (_, before: string, capital: string) => `${before}-${capital.toLowerCase()}`);

/** The known flag closest to `name`, if it is close enough to be what was meant. */
export function closestFlag(name: string, known: readonly string[]): string | undefined {
  let best: { flag: string; distance: number } | undefined;
  for (const flag of known) {
    const distance = editDistance(name, flag);
    if (best === undefined || distance < best.distance) best = { flag, distance };
  }
  if (best !== undefined && best.distance <= Math.max(2, Math.floor(name.length / 3))) return best.flag;
  // A name with a word left out (--max-tokens for --max-new-tokens) is too far by letters but plain by words.
  return known.filter((flag) => hasWordsInOrder(flag, name)).sort((a, b) => a.length - b.length)[0];
}

/** True when every hyphen-separated word of `name` (two at least) occurs in `flag`, in order. */
function hasWordsInOrder(flag: string, name: string): boolean {
  const words = name.split('-');
  if (words.length < 2) return false;
  const flagWords = flag.split('-');
  let at = 0;
  for (const word of words) {
    at = flagWords.indexOf(word, at) + 1;
    if (at === 0) return false;
  }
  return true;
}

/**
 * One line for yargs' unknown-argument message `msg`, given the flags of the command that failed (`known`,
 * hidden ones left out); undefined when `msg` is another failure.
 */
export function unknownFlagsMessage(msg: string, known: readonly string[], command: string): string | undefined {
  const match = /^Unknown arguments?: (.*)$/.exec(msg);
  if (match === null) return undefined;
  const names = [...new Set(match[1].split(', ').map(kebab))];
  const parts = names.map((name) => {
    const suggestion = closestFlag(name, known);
    return `--${name}${suggestion === undefined ? '' : ` (did you mean --${suggestion}?)`}`;
  });
  return `unknown ${names.length === 1 ? 'flag' : 'flags'} ${parts.join(', ')}; see ${command} --help`;
}
