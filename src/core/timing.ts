/**
 * Seconds per call of fn, averaged over at least `runs` calls and at least `minSeconds` in all, after `warmup` untimed
 * calls (kernel set-up, first-shape costs). A floor in seconds keeps a fast call from being timed in a burst of a few
 * milliseconds, which reads noisy on a GPU.
 */
export async function secondsPerCall(fn: () => Promise<void>, warmup: number, runs: number, minSeconds = 0): Promise<number> {
  for (let i = 0; i < warmup; i++) await fn();
  const start = performance.now();
  let calls = 0;
  while (calls < runs || performance.now() - start < minSeconds * 1000) {
    await fn();
    calls++;
  }
  return (performance.now() - start) / 1000 / calls;
}
