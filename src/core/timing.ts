/** Seconds per call of fn, averaged over `runs` after `warmup` untimed calls (kernel set-up, first-shape costs). */
export async function secondsPerCall(fn: () => Promise<void>, warmup: number, runs: number): Promise<number> {
  for (let i = 0; i < warmup; i++) await fn();
  const start = performance.now();
  for (let i = 0; i < runs; i++) await fn();
  return (performance.now() - start) / 1000 / runs;
}
