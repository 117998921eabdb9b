/**
 * Command-line options declared once: a table `{ 'flag-name': { type, default, describe, ... } }` gives
 * yargs its options and gives the handler the type of its arguments (camelCase keys, a value type from
 * `type` or `choices`, optional unless the flag has a default or is required).
 */
import type { Argv, CommandModule, Options } from 'yargs';

interface OptionSpec {
  /** Left out when `choices` gives the values. */
  type?: 'string' | 'number' | 'boolean';
  choices?: readonly (string | number)[];
  default?: unknown;
  describe?: string;
  demandOption?: boolean;
  array?: boolean;
  hidden?: boolean;
}

type OptionTable = Readonly<Record<string, OptionSpec>>;

/** `max-new-tokens` -> `maxNewTokens`, the key yargs also sets. */
type CamelCase<K extends string> = K extends `${infer Head}-${infer Tail}` ? `${Head}${Capitalize<CamelCase<Tail>>}` : K;

type Scalar<S extends OptionSpec> = S extends { choices: readonly (infer C)[] } ? C : S extends { type: 'number' } ? number : S extends { type: 'boolean' } ? boolean : string;
type Value<S extends OptionSpec> = S extends { array: true } ? Scalar<S>[] : Scalar<S>;
type AlwaysSet<S extends OptionSpec> = S extends { demandOption: true } ? true : S extends { default: unknown } ? true : false;
type Flatten<T> = { [K in keyof T]: T[K] };

/** The parsed arguments of the flags in `T`. */
export type ArgsOf<T extends OptionTable> = Flatten<
  { -readonly [K in keyof T as AlwaysSet<T[K]> extends true ? CamelCase<K & string> : never]: Value<T[K]> } & {
    -readonly [K in keyof T as AlwaysSet<T[K]> extends true ? never : CamelCase<K & string>]?: Value<T[K]>;
  }
>;

/** A table with its literal types kept (the `const` parameter), so ArgsOf can read them. */
export function defineOptions<const T extends OptionTable>(table: T): T {
  return table;
}

const camelCase = (flag: string): string => flag.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());

/** The values of just the flags of `table` (yargs' arguments also hold every kebab-case key, `_` and `$0`), in the table's order. */
export function valuesOf<T extends OptionTable>(table: T, args: ArgsOf<T>): ArgsOf<T> {
  const all = args as Record<string, unknown>;
  return Object.fromEntries(Object.keys(table).map((flag) => [camelCase(flag), all[camelCase(flag)]])) as ArgsOf<T>;
}

/** `table` with other defaults (keys in camelCase, as the parsed arguments), e.g. for a command that runs another's job with its own settings. */
export function withDefaults<const T extends OptionTable>(table: T, defaults: Partial<ArgsOf<T>>): T {
  const given = defaults as Record<string, unknown>;
  return Object.fromEntries(Object.entries(table).map(([flag, spec]) => [flag, camelCase(flag) in given ? { ...spec, default: given[camelCase(flag)] } : spec])) as T;
}

/** The width `arl` wraps its help to. */
export const HELP_WIDTH = Math.min(120, process.stdout.columns ?? 100);

/**
 * `command` in lines of at most `width` characters, broken before a flag and continued with a backslash, so no
 * line breaks inside a flag and its value and the lines still paste into a shell. yargs' two-column layout of
 * examples would wrap the command at half the width, anywhere.
 */
function exampleLines(command: string, width: number): string {
  const lines: string[] = [];
  for (const part of command.split(/ (?=--)/)) {
    const last = lines.length - 1;
    if (last >= 0 && lines[last].length + 1 + part.length + 2 <= width) lines[last] += ` ${part}`;
    else lines.push(part);
  }
  return lines.join(' \\\n');
}

interface CommandSpec<O extends OptionTable, S extends OptionTable> {
  command: string;
  /** The parent command of a subcommand (`ruler` for `arl ruler eval`), for the heading of its flags. */
  parent?: string;
  describe: string;
  /** The command's own flags, listed first in --help under a heading named for the command. */
  options: O;
  /** Flags the command shares with others (backend, LLM client), listed after its own under "Options:". */
  shared?: S;
  /** Examples as [command, what it does]. */
  examples?: readonly (readonly [string, string])[];
  /** What a table cannot say: conflicts between flags, subcommands. */
  setup?: (y: Argv) => Argv;
  handler: (args: ArgsOf<O & S>) => void | Promise<void>;
}

/** A yargs command whose options come from its tables and whose handler takes their typed arguments. */
export function defineCommand<const O extends OptionTable, const S extends OptionTable = {}>(spec: CommandSpec<O, S>): CommandModule {
  const { command, parent, describe, options, shared, examples = [], setup = (y) => y, handler } = spec;
  return {
    command,
    describe,
    builder: (y) => {
      const own = Object.keys(options);
      let built = y.options({ ...(options as Record<string, Options>), ...(shared as Record<string, Options> | undefined) });
      if (own.length > 0) built = built.group(own, `${parent === undefined ? '' : `${parent} `}${command} options:`);
      // Laid out with the script name yargs puts for $0, inside yargs' indent of 2 on either side.
      for (const [example, what] of examples) built = built.example(`${what}:`, '').example(exampleLines(example.replace(/\$0/g, 'arl'), HELP_WIDTH - 4), '');
      return setup(built);
    },
    // yargs has parsed and checked the arguments against the tables their type is read from.
    handler: (argv) => handler(argv as ArgsOf<O & S>),
  };
}
