/** The `arl` command line: yargs commands, one line on stderr and exit code 2 for bad input. */
import chalk from 'chalk';
import yargs, { type MiddlewareFunction } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { UserError } from '../io/errors.ts';
import { COMMAND_GROUPS, commandGroupsText, hiddenFromCommandList } from './command-groups.ts';
import { setVerbose } from './common.ts';
import { experimentWorkerCommand } from './experiment-worker.ts';
import { checkNumericFlags } from './numeric-flags.ts';
import { HELP_WIDTH } from './options.ts';
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
  setVerbose(argv.verbose === true);
}

const width = HELP_WIDTH;
const cli = yargs(args)
  .scriptName('arl')
  .usage('$0 <command> [options]\n\nLong-context trainer on TensorFlow.js: a Llama-style decoder, ARL and LIFT.');
for (const group of COMMAND_GROUPS) for (const command of group.commands) cli.command(hiddenFromCommandList(command));
cli.command(experimentWorkerCommand);

/** A bug, not bad input: show the stack ourselves (the wasm runtime's own handler would dump its source). */
function internalError(err: unknown): never {
  process.stderr.write(`${chalk.red('arl: internal error:')} ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
}

// Errors raised outside the command's promise (the GPU device's error callback) end the process the same way.
process.on('uncaughtException', (err) => (err instanceof UserError ? fail(err.message) : internalError(err)));

try {
  await cli
    .option('verbose', { type: 'boolean', default: false, global: true, describe: 'say why the backend was taken, what failed to load and the adapter details' })
    .middleware(checkFlags as unknown as MiddlewareFunction, true)
    .demandCommand(1, 'name a command; see arl --help')
    .strict()
    .recommendCommands()
    .epilogue(`${commandGroupsText(COMMAND_GROUPS, width)}\n\nRun arl <command> --help for a command's options. Bad input exits with code 2 and one line naming the file and what to do.`)
    .fail((msg, err) => {
      if (err) throw err;
      const firstFlag = args.findIndex((word) => word.startsWith('-'));
      const command = ['arl', ...args.slice(0, firstFlag < 0 ? args.length : firstFlag)].join(' ');
      fail(unknownFlagsMessage(msg, knownFlags, command) ?? msg);
    })
    .help()
    .wrap(width)
    .parseAsync();
} catch (err) {
  if (err instanceof UserError) fail(err.message);
  internalError(err);
}
