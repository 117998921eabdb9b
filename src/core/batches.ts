/** `items` cut in order into batches of `size` (the last one may be shorter). */
export function inBatches<T>(items: readonly T[], size: number): T[][] {
  const batches: T[][] = [];
  for (let first = 0; first < items.length; first += size) batches.push(items.slice(first, first + size));
  return batches;
}

/**
 * `items` gathered in order into groups whose sizes add up to at least `limit` (the last one may hold less). Items are
 * drawn only as a group needs them, so a lazy source (a corpus read as it goes) is never read ahead.
 */
export async function* inPasses<T>(items: Iterable<T> | AsyncIterable<T>, size: (item: T) => number, limit: number): AsyncGenerator<T[]> {
  let group: T[] = [];
  let total = 0;
  for await (const item of items) {
    group.push(item);
    total += size(item);
    if (total >= limit) {
      yield group;
      group = [];
      total = 0;
    }
  }
  if (group.length > 0) yield group;
}
