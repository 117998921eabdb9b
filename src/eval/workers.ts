/**
 * An evaluation stage's examples split across worker processes on one machine (`arl experiment --workers N`):
 * the model is small next to a GPU, and greedy decoding and LIFT's per-document training are sequential per
 * example, so several processes keep one GPU busier than one. Example i goes to worker i % N, which loads the
 * checkpoint itself and answers into its own shard folder (<predictions>/workers/worker-k-of-N) with the usual
 * per-example journal, so a killed run keeps every answered example. The parent holds the run folder's lock,
 * prints progress across the workers, and once all have finished merges the shards in example order into the
 * same predictions files as one process writes.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { DocumentJournal } from '../arl/journal.ts';
import { writeFileAtomic } from '../io/atomic.ts';
import { UserError } from '../io/errors.ts';
import { readJsonLines } from '../io/jsonl.ts';
import { PREDICTION_FILES, type PredictionItem, type PredictionRun, type PredictionWriter } from './predict.ts';
import type { WorkerJob, WorkerMessage, WorkerModel } from './worker-job.ts';

/** The hidden CLI command a worker runs (src/cli/experiment-worker.ts). */
export const WORKER_COMMAND = 'experiment-worker';
/** The folder of the shards inside a stage's predictions folder; removed once they are merged. */
export const WORKERS_FOLDER = 'workers';

export interface WorkerPool {
  count: number;
  /** The backend the parent took (auto resolved), so every worker runs on the same one. */
  backend: string;
  log: (message: string) => void;
}

const shardName = (index: number, count: number): string => `worker-${index + 1}-of-${count}`;

/** The items of worker `index` of `count`: every count-th from the index-th, the same split on every rerun. */
export function shardItems<T>(items: readonly T[], index: number, count: number): T[] {
  return items.filter((_, i) => i % count === index);
}

/**
 * This CLI started again with the same node, loader flags (`--import tsx` when run so) and entry (bin/arl.js,
 * src/cli/main.ts or the bundled dist/cli/arl.mjs).
 */
function cliCommand(args: readonly string[]): string[] {
  return [...process.execArgv, process.argv[1]!, ...args];
}

/** The last non-empty line of a worker's log: its error when it died before it could send one. */
function lastLine(path: string): string | undefined {
  if (!existsSync(path)) return undefined;
  return readFileSync(path, 'utf8').split('\n').map((l) => l.trim()).filter(Boolean).at(-1);
}

/** The keys of the items the stage's predictions folder does not hold yet (from an earlier, interrupted merge). */
function pendingKeys(run: PredictionRun): Set<string> {
  const { journal } = DocumentJournal.open<{ doc: string }>(run.outDir, PREDICTION_FILES, run.settings);
  try {
    return new Set(run.items.filter((item) => !journal.isDone(item.key)).map((item) => item.key));
  } finally {
    journal.close();
  }
}

/** A PredictionWriter that answers in `pool.count` worker processes, each loading `model`; `label` names the stage in its lines. */
export function workerPredictions(pool: WorkerPool, label: string, model: WorkerModel): PredictionWriter {
  return async (run) => {
    const pending = pendingKeys(run);
    const dir = join(run.outDir, WORKERS_FOLDER);
    const shards = Array.from({ length: pool.count }, (_, k) => ({ index: k, name: shardName(k, pool.count), items: shardItems(run.items, k, pool.count).filter((item) => pending.has(item.key)) }));
    const busy = shards.filter((shard) => shard.items.length > 0);
    if (busy.length > 0) await runWorkers(pool, label, model, run, dir, busy);
    const records = new Map<string, object>();
    for (const shard of busy) {
      for (const record of readJsonLines<{ doc: string }>(join(dir, shard.name, PREDICTION_FILES.records))) records.set(record.doc, record);
    }
    const missing = [...pending].find((key) => !records.has(key));
    if (missing !== undefined) throw new Error(`${label}: the workers finished without an answer for ${missing}`);
    // Merged through the same journal as one process writes, so the files are the same and appear only when whole.
    const { journal } = DocumentJournal.open<{ doc: string }>(run.outDir, PREDICTION_FILES, run.settings);
    try {
      for (const item of run.items) if (!journal.isDone(item.key)) journal.append([records.get(item.key)!], { doc: item.key });
      journal.finish({ predictions: run.items.length });
    } finally {
      journal.close();
    }
    rmSync(dir, { recursive: true, force: true });
    return join(run.outDir, PREDICTION_FILES.records);
  };
}

interface Shard {
  index: number;
  name: string;
  items: PredictionItem[];
}

async function runWorkers(pool: WorkerPool, label: string, model: WorkerModel, run: PredictionRun, dir: string, shards: Shard[]): Promise<void> {
  const total = shards.reduce((n, shard) => n + shard.items.length, 0);
  const progress = shards.map(() => ({ done: 0, answered: 0 }));
  const started = performance.now();
  let lastLog = started;
  let lastDone = -1;
  const report = () => {
    const now = performance.now();
    const done = progress.reduce((n, p) => n + p.done, 0);
    if (done === lastDone || (done < total && now - lastLog < 10_000)) return;
    lastLog = now;
    lastDone = done;
    const answered = progress.reduce((n, p) => n + p.answered, 0);
    const rate = answered / Math.max(1e-3, (now - started) / 1000);
    const eta = rate > 0 ? `ETA ${Math.round((total - done) / rate)} s` : 'ETA unknown';
    const earlier = done > answered ? ` (${done - answered} from an earlier run)` : '';
    pool.log(`  ${label}: ${done}/${total} examples in ${shards.length} workers${earlier}, ${rate < 10 ? rate.toFixed(2) : Math.round(rate)}/s, ${eta}`);
  };
  await spawnWorkers(pool, label, dir, shards.map((shard, i) => ({
    index: shard.index,
    name: shard.name,
    job: { ...model, outDir: join(dir, shard.name), settings: run.settings, stopAtNewline: run.stopAtNewline, items: shard.items } satisfies WorkerJob,
    onMessage: (message) => {
      if (message.type !== 'progress') return;
      progress[i] = { done: message.done, answered: message.answered };
      report();
    },
  })));
}

/** One worker process to start: its job (written to <dir>/<name>.job.json) and what to do with its messages. */
export interface WorkerLaunch {
  /** Its index in the pool, 0-based. */
  index: number;
  name: string;
  job: object;
  onMessage: (message: WorkerMessage) => void;
}

/**
 * Starts one worker process per launch (the hidden CLI command, on the pool's backend), each logging to
 * <dir>/<name>.log, and waits for all. A worker that fails is started once more, alone, after the others have
 * finished: a failure can belong to the moment (the device out of memory while the other workers share it), and
 * what the worker answered before stays in its shard. A second failure fails the stage with one line.
 */
export async function spawnWorkers(pool: WorkerPool, label: string, dir: string, launches: readonly WorkerLaunch[]): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const failures = await runLaunches(pool, dir, launches, 'w');
  for (const failure of failures) {
    const { launch, message } = failure;
    pool.log(`  ${label}: worker ${launch.index + 1} of ${pool.count} failed (${message}); starting it again alone`);
    const [again] = await runLaunches(pool, dir, [launch], 'a');
    if (again) throw new UserError(`${label}: worker ${launch.index + 1} of ${pool.count} failed: ${again.message} (its log: ${again.log})`);
  }
}

interface WorkerFailure {
  launch: WorkerLaunch;
  /** The worker's error, first line. */
  message: string;
  log: string;
}

/** Runs the launches at once and waits for all; returns those that failed. `logMode` 'a' keeps an earlier attempt's log. */
async function runLaunches(pool: WorkerPool, dir: string, launches: readonly WorkerLaunch[], logMode: 'w' | 'a'): Promise<WorkerFailure[]> {
  const failures: WorkerFailure[] = [];
  await Promise.all(launches.map((launch) => {
    const jobPath = join(dir, `${launch.name}.job.json`);
    const logPath = join(dir, `${launch.name}.log`);
    writeFileAtomic(jobPath, JSON.stringify(launch.job));
    const logFd = openSync(logPath, logMode);
    const child = spawn(process.execPath, cliCommand([WORKER_COMMAND, '--job', jobPath, '--backend', pool.backend]), { stdio: ['ignore', logFd, logFd, 'ipc'], env: { ...process.env, FORCE_COLOR: '0' } });
    closeSync(logFd);
    return new Promise<void>((resolve) => {
      let error: string | undefined;
      let failed = false;
      const fail = (message: string) => {
        if (!failed) failures.push({ launch, message: message.split('\n')[0]!, log: logPath });
        failed = true;
      };
      child.on('message', (message: WorkerMessage) => {
        if (message.type === 'error') error = message.message;
        else launch.onMessage(message);
      });
      child.on('error', (err) => {
        fail(err.message);
        resolve();
      });
      child.on('close', (code, signal) => {
        if (code !== 0) fail(error ?? lastLine(logPath) ?? `exited with ${signal ?? code}`);
        resolve();
      });
    });
  }));
  return failures.sort((x, y) => x.launch.index - y.launch.index);
}
