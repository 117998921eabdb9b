/**
 * Short reason for a failed file operation, for one-line UserErrors that already name the path:
 * "ENOENT: no such file or directory, open 'x'" becomes "no such file or directory".
 */
export function fsErrorReason(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as NodeJS.ErrnoException).code;
  const described = code === undefined ? undefined : new RegExp(`^${code}: ([^,]+)`).exec(err.message)?.[1];
  return described ?? err.message;
}
