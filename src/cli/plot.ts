/** `arl plot --run DIR`: redraws a training run's curves (loss, learning rate, throughput) from its metrics.jsonl. */
import chalk from 'chalk';
import { defineCommand } from './options.ts';
import { writeTrainingCurves } from '../train/curves.ts';

export const plotCommand = defineCommand({
  command: 'plot',
  describe: 'Redraw the SVG training curves of a run (written to <run>/plots/ at every save)',
  options: {
    run: { type: 'string', demandOption: true, describe: 'run directory (the --out of arl train)' },
  },
  examples: [['$0 plot --run checkpoints/tiny', 'writes checkpoints/tiny/plots/{loss,lr,tokens-per-s}.svg']],
  handler: ({ run }) => {
    for (const path of writeTrainingCurves(run)) console.log(`${chalk.green('wrote')} ${path}`);
  },
});
