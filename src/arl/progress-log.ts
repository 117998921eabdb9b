/**
 * Progress of ARL's data steps 1-4 as log lines (for runs without a terminal bar, e.g. `arl experiment`'s
 * arl-data stage): the step, documents, key tokens or recaps done of total, the rate and the ETA, at most one
 * line per `everyMs` while a step runs, and one line as each step ends. Built on the pipeline's RecapDataProgress
 * callbacks, so it logs what `arl recap-data` draws as bars.
 */
import type { RecapDataProgress, RecapDataStep } from './pipeline.ts';

/** The steps that report progress as they go: 1 keytokens, 2 segments, 3 recaps. */
export type ProgressStep = 1 | 2 | 3;

export const STEP_NAMES: Record<ProgressStep, string> = { 1: '1/4 keytokens', 2: '2/4 segments', 3: '3/4 recaps' };
/** What each step counts, and what it finds on the way. */
const UNITS: Record<ProgressStep, { unit: string; found: string }> = {
  1: { unit: 'documents', found: 'key tokens' },
  2: { unit: 'key tokens', found: 'segments kept' },
  3: { unit: 'segments', found: 'failed' },
};

/** Counts of one step: `done` includes what an earlier run did, `doneNow` only this run's work. */
export interface StepCount {
  done: number;
  doneNow: number;
  total: number;
  /** Key tokens found (step 1), segments kept (step 2), recaps failed (step 3). */
  found: number;
}

/** "done/total unit, found, rate/s, ETA s": the rate counts only this run's work. */
export function progressText(step: ProgressStep, count: StepCount, seconds: number): string {
  const { unit, found } = UNITS[step];
  const perSecond = count.doneNow / Math.max(1e-3, seconds);
  const rate = perSecond < 10 ? perSecond.toFixed(2) : String(Math.round(perSecond));
  const left = Math.max(0, count.total - count.done);
  const eta = left === 0 ? 'ETA 0 s' : perSecond > 0 ? `ETA ${Math.round(left / perSecond)} s` : 'ETA unknown';
  return `${count.done}/${count.total} ${unit}, ${count.found} ${found}, ${rate}/s, ${eta}`;
}

/**
 * RecapDataProgress callbacks that turn the pipeline's progress into counts per step (`documents`: those step 1
 * goes through, the corpus or a shard's share of it), and pass on each finished step.
 */
export function recapDataCounts(documents: number, on: { count: (step: ProgressStep, count: StepCount) => void; step?: (done: RecapDataStep) => void }): RecapDataProgress {
  let documentsBefore: number | null = null;
  let keyTokensBefore: number | null = null;
  let keyTokens = 0;
  return {
    onDocument: (p) => {
      // Documents done by an earlier run come first, at once: the first one scored now marks where this run began.
      if (documentsBefore === null && p.tokensScoredNow > 0) documentsBefore = p.documents - 1;
      on.count(1, { done: p.documents, doneNow: documentsBefore === null ? 0 : p.documents - documentsBefore, total: documents, found: p.keyTokens });
    },
    onKeyToken: (p) => {
      keyTokensBefore ??= p.keyTokens - 1;
      on.count(2, { done: p.keyTokens, doneNow: p.keyTokens - keyTokensBefore, total: keyTokens, found: p.segments });
    },
    onRecapper: () => (p) => on.count(3, { done: p.done, doneNow: p.made + p.cached, total: p.total, found: p.failed }),
    onStep: (d) => {
      if (d.step === 'keytokens') keyTokens = d.summary.key_tokens;
      on.step?.(d);
    },
  };
}

/** The line logged as a step ends. */
export function stepDoneText(d: RecapDataStep): string {
  const seconds = `(${d.seconds.toFixed(1)} s)`;
  if (d.step === 'keytokens') return `1/4 keytokens: ${d.summary.documents} documents, ${d.summary.key_tokens} key tokens ${seconds}`;
  if (d.step === 'segments') return `2/4 segments: a segment kept for ${d.totals.segments} of ${d.totals.key_tokens} key tokens, ${d.totals.candidates_scored} candidates scored ${seconds}`;
  if (d.step === 'recaps') return `3/4 recaps: ${d.totals.recaps} of ${d.totals.items} segments have recaps (${d.totals.made} made, ${d.totals.cached} cached, ${d.totals.resumed} done before) ${seconds}`;
  return `4/4 augment: ${d.totals.augmented_documents} of ${d.totals.documents} documents with recaps, ${d.totals.recap_tokens} recap tokens of ${d.totals.tokens} ${seconds}`;
}

export interface ProgressLogOptions {
  /** Documents step 1 goes through (the corpus, or the shard's share of it). */
  documents: number;
  /** Put before each line's step, e.g. "arl-data". */
  label: string;
  everyMs?: number;
}

/** RecapDataProgress callbacks that log each step's progress (once per `everyMs`, 15 s, while it runs) and end through `log`. */
export function recapDataProgressLog(log: (message: string) => void, o: ProgressLogOptions): RecapDataProgress {
  const throttle = new StepThrottle(o.everyMs ?? 15_000);
  throttle.begin(1);
  return recapDataCounts(o.documents, {
    count: (step, count) => {
      const seconds = throttle.due(step);
      if (seconds !== null) log(`  ${o.label} ${STEP_NAMES[step]}: ${progressText(step, count, seconds)}`);
    },
    step: (d) => {
      log(`  ${o.label} ${stepDoneText(d)}`);
      const next = nextStep(d.step);
      if (next !== null) throttle.begin(next);
    },
  });
}

/** When a step's next progress line is due: once per `everyMs`, counted from the step's start (its begin() or first count). */
export class StepThrottle {
  private readonly started = new Map<ProgressStep, number>();
  private readonly last = new Map<ProgressStep, number>();

  constructor(private readonly everyMs: number) {}

  begin(step: ProgressStep): void {
    if (this.started.has(step)) return;
    const now = performance.now();
    this.started.set(step, now);
    this.last.set(step, now);
  }

  /** The seconds since `step` began when a line is due now, else null. */
  due(step: ProgressStep): number | null {
    this.begin(step);
    const now = performance.now();
    if (now - this.last.get(step)! < this.everyMs) return null;
    this.last.set(step, now);
    return (now - this.started.get(step)!) / 1000;
  }
}

/** The step that begins once `done` has ended, if it reports progress. */
export function nextStep(done: RecapDataStep['step']): ProgressStep | null {
  return done === 'keytokens' ? 2 : done === 'segments' ? 3 : null;
}
