/** `arl eval`: loss and perplexity of a checkpoint on a prepared split. */
import type { CommandModule } from 'yargs';
import type { BackendName } from '../backend.ts';
import type { Split } from '../data/format.ts';
import { evaluateLoss } from '../eval/perplexity.ts';
import { loadModel } from '../io/checkpoint.ts';
import { UserError } from '../io/errors.ts';
import { DEFAULT_PREPARED_DIR } from './data.ts';
import { startBackend, withBackend } from './common.ts';

export const evalCommand: CommandModule = {
  command: 'eval',
  describe: 'Loss and perplexity of a checkpoint on a prepared split (prints JSON)',
  builder: (y) =>
    withBackend(y)
      .option('checkpoint', { type: 'string', demandOption: true })
      .option('data', { type: 'string', default: DEFAULT_PREPARED_DIR })
      .option('split', { choices: ['train', 'val'] as const, default: 'val' as const })
      .option('batches', { type: 'number', default: 0, describe: 'number of batches (0 = the whole split once)' })
      .option('batch', { type: 'number', default: 8 })
      .option('seq', { type: 'number', describe: "sequence length (default: the model's window, at most 256)" })
      .example('$0 eval --checkpoint checkpoints/demo', 'validation perplexity of the demo model'),
  handler: async (argv) => {
    const args = argv as unknown as { backend: BackendName; checkpoint: string; data: string; split: Split; batches: number; batch: number; seq?: number };
    await startBackend(args.backend);
    const { model, ckpt } = loadModel(args.checkpoint);
    try {
      const seq = args.seq ?? Math.min(model.config.maxSeq, 256);
      if (seq > model.config.maxSeq) throw new UserError(`--seq ${seq} exceeds the model's context window ${model.config.maxSeq}`);
      const report = await evaluateLoss(model, args.data, args.split, { batches: args.batches, batch: args.batch, seq });
      console.log(JSON.stringify({ checkpoint: ckpt.dir, data: args.data, split: args.split, seq, ...report }));
    } finally {
      model.dispose();
    }
  },
};
