/** The `arl` command line: yargs commands, one line on stderr and exit code 2 for bad input. */
import chalk from 'chalk';
import yargs, { type MiddlewareFunction } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { UserError } from '../io/errors.ts';
import { arlCommands } from './arl.ts';
import { benchCommand } from './bench.ts';
import { exportCommand, importCommand } from './checkpoints.ts';
import { prepareCommand } from './data.ts';
import { recapDataCommands } from './recap-data.ts';
import { demoArlCommand } from './demo-arl.ts';
import { demoCommand } from './demo.ts';
import { evalCommand } from './eval.ts';
import { experimentCommand } from './experiment.ts';
import { generateCommand } from './generate.ts';
import { inspectCommand } from './inspect.ts';
import { liftDemoCommand } from './lift-demo.ts';
import { liftCommand } from './lift.ts';
import { longbenchCommand } from './longbench.ts';
import { checkNumericFlags } from './numeric-flags.ts';
import { plotCommand } from './plot.ts';
import { rulerCommand } from './ruler.ts';
import { trainCommand } from './train.ts';
import { unknownFlagsMessage } from './unknown-flags.ts';

function fail(message: string): never {
  process.stderr.write(`${chalk.red('arl:')} ${message}\n`);
  process.exit(2);
}

const args = hideBin(process.argv);
/** Flags of the command being parsed (set before yargs validates), for suggestions on an unknown one. */
let knownFlags: string[] = [];

/** Runs before yargs validates a command's arguments: notes its flags and checks the numeric ones. yargs passes its instance second (not in its types). */
function checkFlags(argv: Record<string, unknown>, y: { getOptions(): { key: Record<string, unknown>; hiddenOptions: string[] } }): void {
  const options = y.getOptions();
  knownFlags = Object.keys(options.key).filter((flag) => !options.hiddenOptions.includes(flag));
  checkNumericFlags(argv, args);
}

try {
  await yargs(args)
    .scriptName('arl')
    .usage('$0 <command> [options]\n\nLong-context trainer on TensorFlow.js: a Llama-style decoder, ARL and LIFT.')
    .command(prepareCommand)
    .command(trainCommand)
    .command(generateCommand)
    .command(evalCommand)
    .command(experimentCommand)
    .command(importCommand)
    .command(exportCommand)
    .command(benchCommand)
    .command(demoCommand)
    .command(longbenchCommand)
    .command(rulerCommand)
    .command(liftCommand)
    .command(liftDemoCommand)
    .command(plotCommand)
    .command(inspectCommand)
    .command(arlCommands)
    .command(recapDataCommands)
    .command(demoArlCommand)
    .middleware(checkFlags as unknown as MiddlewareFunction, true)
    .demandCommand(1, 'name a command; see arl --help')
    .strict()
    .recommendCommands()
    .epilogue('Bad input exits with code 2 and one line naming the file and what to do.')
    .fail((msg, err) => {
      if (err) throw err;
      const firstFlag = args.findIndex((word) => word.startsWith('-'));
      const command = ['arl', ...args.slice(0, firstFlag < 0 ? args.length : firstFlag)].join(' ');
      fail(unknownFlagsMessage(msg, knownFlags, command) ?? msg);
    })
    .help()
    .wrap(Math.min(120, process.stdout.columns ?? 100))
    .parseAsync();
} catch (err) {
  if (err instanceof UserError) fail(err.message);
  // A bug, not bad input: show the stack ourselves (the wasm runtime's own handler would dump its source).
  process.stderr.write(`${chalk.red('arl: internal error:')} ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
}
