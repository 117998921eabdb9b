/** `arl plot --run DIR`: redraws a training run's curves (loss, learning rate, throughput) from its metrics.jsonl. */
import chalk from 'chalk';
import type { CommandModule } from 'yargs';
import { writeTrainingCurves } from '../train/curves.ts';

export const plotCommand: CommandModule = {
  command: 'plot',
  describe: 'Redraw the SVG training curves of a run (written to <run>/plots/ at every save)',
  builder: (y) =>
    y
      .option('run', { type: 'string', demandOption: true, describe: 'run directory (the --out of arl train)' })
      .example('$0 plot --run checkpoints/tiny', 'writes checkpoints/tiny/plots/{loss,lr,tokens-per-s}.svg'),
  handler: (argv) => {
    for (const path of writeTrainingCurves((argv as unknown as { run: string }).run)) console.log(`${chalk.green('wrote')} ${path}`);
  },
};
