/**
 * Progress of ARL's data steps 1-4 as log lines (for runs without a terminal bar, e.g. `arl experiment`'s
 * arl-data stage): the step, documents, key tokens or recaps done of total, the rate and the ETA, at most one
 * line per `everyMs` while a step runs, and one line as each step ends. Built on the pipeline's RecapDataProgress
 * callbacks, so it logs what `arl recap-data` draws as bars.
 */
import type { AugmentTotals } from './augment.ts';
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

/** Step names as the lines that end each step begin. */
const STEP_LABELS: Record<RecapDataStep['step'], string> = { keytokens: '1/4 keytokens', segments: '2/4 segments', recaps: '3/4 recaps', augment: '4/4 augment' };

/** What only a caller knows about a step: the key tokens' perplexities, the recapper's name, failed recaps. */
export interface StepDoneExtras {
  keyTokens?: string;
  recapper?: string;
  failed?: string;
}

/** The line that ends a step, as label and text (without the seconds); `arl recap-data` and the log lines share it. */
export function stepDone(d: RecapDataStep, extras: StepDoneExtras = {}): { label: string; text: string } {
  const label = STEP_LABELS[d.step];
  if (d.step === 'keytokens') return { label, text: `${d.summary.documents} documents, ${d.summary.key_tokens} key tokens${extras.keyTokens ? `; ${extras.keyTokens}` : ''}` };
  if (d.step === 'segments') return { label, text: `a segment kept for ${d.totals.segments} of ${d.totals.key_tokens} key tokens, ${d.totals.candidates_scored} candidates scored` };
  if (d.step === 'recaps') {
    const t = d.totals;
    return { label, text: `${t.recaps} of ${t.items} segments have recaps (${extras.recapper ? `${extras.recapper}: ` : ''}${t.made} made now, ${t.cached} cached, ${t.resumed} done before)${extras.failed ?? ''}` };
  }
  return { label, text: augmentedText(d.totals) };
}

/** Step 4 in one line: documents, those with recaps, those written with them. */
export function augmentedText(t: AugmentTotals): string {
  return `${t.documents} documents, ${t.documents_with_recaps} with recaps; ${t.augmented_documents} written with them (${(100 * t.augmented_share).toFixed(1)}%), ${t.documents - t.augmented_documents} unchanged`;
}

/** The line logged as a step ends. */
export function stepDoneText(d: RecapDataStep): string {
  const { label, text } = stepDone(d);
  return `${label}: ${text} (${d.seconds.toFixed(1)} s)`;
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
