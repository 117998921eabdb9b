/** `items` cut in order into batches of `size` (the last one may be shorter). */
export function inBatches<T>(items: readonly T[], size: number): T[][] {
  const batches: T[][] = [];
  for (let first = 0; first < items.length; first += size) batches.push(items.slice(first, first + size));
  return batches;
}
