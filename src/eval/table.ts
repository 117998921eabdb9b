/** A plain-text table for score reports. */

/** A score (printed with 2 decimals), a text, or null for "no value" (printed as "-"). */
export type Cell = string | number | null;

/** Columns of scores, counts and blanks are right-aligned, others left-aligned. */
export function formatTable(header: readonly string[], rows: ReadonlyArray<readonly Cell[]>): string {
  const text = (cell: Cell) => (cell === null ? '-' : typeof cell === 'number' ? cell.toFixed(2) : cell);
  const rightAligned = header.map((_, column) =>
    rows.every((row) => row[column] === null || typeof row[column] === 'number' || /^\d+$/.test(row[column] as string)),
  );
  const lines = [header, ...rows.map((row) => row.map(text))];
  const widths = header.map((_, column) => Math.max(...lines.map((line) => line[column]!.length)));
  return lines
    .map((line) => line.map((cell, column) => (rightAligned[column] ? cell.padStart(widths[column]!) : cell.padEnd(widths[column]!))).join('  ').trimEnd())
    .join('\n');
}
