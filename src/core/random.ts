/** The one seeded random stream of the project: reproducible sampling, shuffles and generated data from a seed. */

export type Rng = () => number;

/** mulberry32: a small, fast, seedable PRNG; returns numbers in [0, 1). */
export function makeRng(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An integer in [low, high). */
export function randomInt(rng: Rng, low: number, high: number): number {
  return low + Math.floor(rng() * (high - low));
}

export function pick<T>(rng: Rng, items: readonly T[]): T {
  return items[randomInt(rng, 0, items.length)]!;
}

/** Fisher-Yates shuffle in place, last position first (an array or a typed array); returns `items`. */
export function shuffleInPlace<A extends { length: number; [index: number]: unknown }>(rng: Rng, items: A): A {
  for (let i = items.length - 1; i > 0; i--) {
    const j = randomInt(rng, 0, i + 1);
    [items[i], items[j]] = [items[j], items[i]];
  }
  return items;
}
