/**
 * Output written document by document, so that an interrupted or extended run resumes where it
 * stopped. A document's records are appended to `<records>.partial`, then one line describing the
 * document to `<documents>.partial`; the document counts as done once that line is on disk.
 * Reopening keeps the done documents (from the partial files, or from the final files of a finished
 * run), drops records of a document cut off mid-write, and refuses to mix in output made with other
 * settings. `finish` renames the partial files over the final ones and writes the summary.
 */
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../io/atomic.ts';
import { UserError } from '../io/errors.ts';
import { readJsonLines } from '../io/jsonl.ts';

export interface JournalFiles {
  /** JSON lines, each with a `doc` field naming its document. */
  records: string;
  /** JSON lines, one per done document, each with a `doc` field. */
  documents: string;
  /** JSON object: the settings, plus totals once finished. */
  summary: string;
}

export type Settings = Record<string, string | number | null>;

const PARTIAL = '.partial';

function readSettings(file: string): Settings | null {
  if (!existsSync(file)) return null;
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Settings;
  } catch {
    throw new UserError(`${file}: not valid JSON; delete it to start over`);
  }
}

function toJsonLines(lines: object[]): string {
  return lines.map((line) => `${JSON.stringify(line)}\n`).join('');
}

/** Appends JSON lines to an open file and flushes them to disk. */
export function appendAndSync(fd: number, lines: object[]): void {
  if (lines.length === 0) return;
  const bytes = Buffer.from(toJsonLines(lines));
  let written = 0;
  while (written < bytes.length) written += writeSync(fd, bytes, written, bytes.length - written);
  fsyncSync(fd);
}

export class DocumentJournal<Doc extends { doc: string }> {
  private readonly done: Set<string>;
  private readonly recordsFd: number;
  private readonly documentsFd: number;
  private closed = false;

  private constructor(private readonly dir: string, private readonly files: JournalFiles, private readonly settings: Settings, done: Set<string>) {
    this.done = done;
    this.recordsFd = openSync(this.path('records') + PARTIAL, 'a');
    this.documentsFd = openSync(this.path('documents') + PARTIAL, 'a');
  }

  /** Opens (creating) the output in `dir`; `resumed` holds the document lines of documents already done, in order. */
  static open<Doc extends { doc: string }>(dir: string, files: JournalFiles, settings: Settings): { journal: DocumentJournal<Doc>; resumed: Doc[] } {
    mkdirSync(dir, { recursive: true });
    const at = (name: keyof JournalFiles): string => join(dir, files[name]);
    const latest = (name: keyof JournalFiles): string => (existsSync(at(name) + PARTIAL) ? at(name) + PARTIAL : at(name));

    const previous = readSettings(latest('summary'));
    if (previous) {
      for (const [key, value] of Object.entries(settings)) {
        if (previous[key] !== value) {
          throw new UserError(`${dir}: holds output made with ${key} ${JSON.stringify(previous[key])}, not ${JSON.stringify(value)}; pass another output folder or delete this one`);
        }
      }
    }
    const resumed = readJsonLines<Doc>(latest('documents'));
    const done = new Set(resumed.map((d) => d.doc));
    const records = readJsonLines<{ doc: string }>(latest('records')).filter((r) => done.has(r.doc));
    // Start the partial files from the done documents only, dropping anything cut off mid-document.
    writeFileAtomic(at('records') + PARTIAL, toJsonLines(records));
    writeFileAtomic(at('documents') + PARTIAL, toJsonLines(resumed));
    writeFileAtomic(at('summary') + PARTIAL, JSON.stringify(settings, null, 2));
    return { journal: new DocumentJournal<Doc>(dir, files, settings, done), resumed };
  }

  isDone(doc: string): boolean {
    return this.done.has(doc);
  }

  /** Records a finished document: its records first, then its document line, each flushed to disk. */
  append(records: object[], document: Doc): void {
    appendAndSync(this.recordsFd, records);
    appendAndSync(this.documentsFd, [document]);
    this.done.add(document.doc);
  }

  /** Moves the partial files into place and writes the summary (settings plus `totals`). */
  finish(totals: object): void {
    this.close();
    renameSync(this.path('records') + PARTIAL, this.path('records'));
    renameSync(this.path('documents') + PARTIAL, this.path('documents'));
    writeFileAtomic(this.path('summary'), `${JSON.stringify({ ...totals, ...this.settings }, null, 2)}\n`);
    rmSync(this.path('summary') + PARTIAL, { force: true });
  }

  /** Releases the files without finishing (after an error); the partial files stay for the next run. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeSync(this.recordsFd);
    closeSync(this.documentsFd);
  }

  private path(name: keyof JournalFiles): string {
    return join(this.dir, this.files[name]);
  }
}
