/** An error caused by the user's input: the CLI prints its message as one line and exits 2. */
export class UserError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UserError';
  }
}

/** Throws a UserError naming the file (and line) when `condition` is false. */
export function check(condition: unknown, message: string): asserts condition {
  if (!condition) throw new UserError(message);
}

/** Throws `--flag must be a positive integer (got X)` for the first entry of `flags` that is not one. */
export function checkPositiveIntegers(flags: Record<string, number>): void {
  for (const [flag, value] of Object.entries(flags)) {
    if (!Number.isInteger(value) || value <= 0) throw new UserError(`${flag} must be a positive integer (got ${value})`);
  }
}
