/**
 * `arl experiment-worker --job <file>`: the child mode of `arl experiment --workers N`, started by the parent
 * (src/eval/workers.ts), not by hand. It does its share of one stage (answers, or ARL data steps) in its own shard folder and takes no
 * lock: the parent holds the run folder's. It reports progress and its error over the IPC channel, and stops
 * when that channel closes, so a parent that is killed leaves no worker writing behind it.
 */
import { isRecapStepsJob, runRecapStepsJob } from '../eval/arl-data-workers.ts';
import { readWorkerJob, runWorkerJob, type WorkerMessage } from '../eval/worker-job.ts';
import { WORKER_COMMAND } from '../eval/workers.ts';
import { BACKEND_FLAGS, startBackend } from './common.ts';
import { defineCommand } from './options.ts';

function send(message: WorkerMessage): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send || !process.connected) return resolve();
    process.send(message, undefined, {}, () => resolve());
  });
}

const command = defineCommand({
  command: WORKER_COMMAND,
  describe: 'child mode of arl experiment --workers N: answers one worker\'s share of an evaluation stage or of the arl-data stage',
  options: { job: { type: 'string', demandOption: true, describe: 'the job file the parent wrote' } },
  shared: BACKEND_FLAGS,
  handler: async (args) => {
    let finished = false;
    process.on('disconnect', () => {
      if (!finished) process.exit(1);
    });
    try {
      const job = readWorkerJob(args.job);
      await startBackend(args.backend);
      if (isRecapStepsJob(job)) await runRecapStepsJob(job, (message) => void send(message));
      else await runWorkerJob(job, (done, answered) => void send({ type: 'progress', done, answered }));
    } catch (err) {
      await send({ type: 'error', message: err instanceof Error ? err.message : String(err) });
      throw err;
    }
    finished = true;
    if (process.connected) process.disconnect();
  },
});

/** Registered apart from the listed commands: it is not one to type. */
export const experimentWorkerCommand = { ...command, describe: false as const };
