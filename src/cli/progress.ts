/** A one-line progress bar on a TTY (redrawn in place); plain periodic lines otherwise (logs, CI). */
import chalk from 'chalk';

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(sec).padStart(2, '0')}s` : `${sec}s`;
}

export class ProgressBar {
  private readonly started = performance.now();
  private readonly tty = Boolean(process.stderr.isTTY);
  private lastPlainLine = 0;

  constructor(private readonly total: number, private readonly label: string, private readonly plainEvery = 10) {}

  /** Draws progress `done` of total with extra `fields` (already formatted). */
  update(done: number, fields: string): void {
    const elapsed = (performance.now() - this.started) / 1000;
    const eta = done > 0 ? (elapsed / done) * (this.total - done) : NaN;
    if (this.tty) {
      const width = 24;
      const filled = Math.round((width * done) / this.total);
      const bar = chalk.green('█'.repeat(filled)) + chalk.dim('░'.repeat(width - filled));
      process.stderr.write(`\r\x1b[2K${this.label} ${bar} ${done}/${this.total} ${fields} ETA ${formatDuration(eta)}`);
      if (done === this.total) process.stderr.write('\n');
    } else if (done === this.total || done === 1 || done - this.lastPlainLine >= this.plainEvery) {
      this.lastPlainLine = done;
      process.stderr.write(`${this.label} ${done}/${this.total} ${fields} ETA ${formatDuration(eta)}\n`);
    }
  }

  /** Prints a message on its own line without breaking the bar. */
  log(message: string): void {
    process.stderr.write(this.tty ? `\r\x1b[2K${message}\n` : `${message}\n`);
  }
}
