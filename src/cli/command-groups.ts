/**
 * The commands of `arl`, grouped by workflow. yargs lists commands in one flat list; main.ts
 * registers each command hidden from that list and prints these groups after the options instead.
 * A hidden command keeps its own `arl <cmd> --help`, headed by its description.
 */
import type { Argv, CommandModule } from 'yargs';
import { arlCommands } from './arl.ts';
import { benchCommand } from './bench.ts';
import { exportCommand, importCommand } from './checkpoints.ts';
import { prepareCommand } from './data.ts';
import { demoCommand } from './demo.ts';
import { evalCommand } from './eval.ts';
import { experimentCommand } from './experiment.ts';
import { generateCommand } from './generate.ts';
import { inspectCommand } from './inspect.ts';
import { liftDemoCommand } from './lift-demo.ts';
import { liftCommand } from './lift.ts';
import { longbenchCommand } from './longbench.ts';
import { plotCommand } from './plot.ts';
import { recapDataCommands } from './recap-data.ts';
import { demoArlCommand } from './demo-arl.ts';
import { rulerCommand } from './ruler.ts';
import { trainCommand } from './train.ts';

export interface CommandGroup {
  title: string;
  commands: CommandModule[];
}

/** Every top-level command, each in one group, in the order of a workflow. */
export const COMMAND_GROUPS: CommandGroup[] = [
  { title: 'Data', commands: [prepareCommand] },
  { title: 'Train', commands: [trainCommand, plotCommand] },
  { title: 'ARL', commands: [...arlCommands, ...recapDataCommands, demoArlCommand, inspectCommand] },
  { title: 'LIFT', commands: [liftCommand, liftDemoCommand] },
  { title: 'Evaluate', commands: [evalCommand, rulerCommand, longbenchCommand, experimentCommand] },
  { title: 'Export', commands: [importCommand, exportCommand] },
  { title: 'Tools', commands: [generateCommand, benchCommand, demoCommand] },
];

function commandName(command: CommandModule): string {
  return String(command.command);
}

/** `command` left out of yargs' flat list, its description heading its own --help instead. */
export function hiddenFromCommandList(command: CommandModule): CommandModule {
  const { builder, describe } = command;
  return {
    ...command,
    describe: false,
    builder: (y: Argv) => {
      const described = typeof describe === 'string' ? y.usage(`$0 ${commandName(command)}\n\n${describe}`) : y;
      if (typeof builder === 'function') return builder(described) as Argv; // the builders of arl's commands are synchronous
      return builder === undefined ? described : described.options(builder);
    },
  };
}

/** `text` in lines of at most `width` characters (a longer word stands alone). */
function wrapWords(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/)) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  return [...lines, line];
}

/** The groups as text for the end of `arl --help`: a heading per group, then `arl NAME  description` lines, wrapped to `width`. */
export function commandGroupsText(groups: CommandGroup[], width: number): string {
  const names = groups.flatMap((g) => g.commands.map((c) => `arl ${commandName(c)}`));
  const column = Math.max(...names.map((name) => name.length)) + 4;
  const lines = ['Commands, by workflow:'];
  for (const group of groups) {
    lines.push('', `${group.title}:`);
    for (const command of group.commands) {
      const name = `  arl ${commandName(command)}`.padEnd(column);
      const description = typeof command.describe === 'string' ? command.describe : '';
      const [firstLine, ...rest] = wrapWords(description, Math.max(20, width - column));
      lines.push(`${name}${firstLine}`, ...rest.map((line) => `${' '.repeat(column)}${line}`));
    }
  }
  return lines.join('\n');
}
