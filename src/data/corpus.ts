import { isUtf8 } from 'node:buffer';
import { readdirSync, readFileSync, statSync, type Stats } from 'node:fs';
import { basename, extname, join, relative } from 'node:path';
import { UserError } from '../io/errors.ts';
import { readBrownDocuments } from './brown.ts';
import { readJsonObjects } from '../io/jsonl.ts';
import { fsErrorReason } from './fs-errors.ts';

export interface CorpusDocument {
  /** Stable name of the document within its corpus (file path, `file:line`, or Brown id); seeds the val split. */
  id: string;
  text: string;
}

/** The corpus source that selects the bundled Brown corpus instead of a path. */
export const BROWN_SOURCE = 'brown';

const JSONL_EXTENSIONS = new Set(['.jsonl', '.jsonlines', '.ndjson']);

/** The field of a JSON-lines corpus that holds each document's text, unless told otherwise. */
export const DEFAULT_TEXT_FIELD = 'text';

export interface ReadOptions {
  /** A single .txt file gives one document per paragraph (split at blank lines, ids `name#1`, `name#2`, …) instead of one. */
  splitTextFile?: boolean;
  /** The string field of each JSON line holding the text (default "text"); other sources ignore it. */
  textField?: string;
}

/**
 * Streams the documents of a corpus, skipping empty ones: `brown` (bundled), a .txt file (one document), a folder
 * of .txt files (recursive, sorted by path) or a JSON-lines file with a string field per line ("text", or
 * options.textField). A line without that field is a UserError naming the file, the line and the field.
 */
export async function* readDocuments(source: string, options: ReadOptions = {}): AsyncGenerator<CorpusDocument> {
  let count = 0;
  for await (const doc of readSource(source, options)) {
    if (doc.text.trim().length === 0) continue;
    count++;
    yield doc;
  }
  if (count === 0) throw new UserError(`${source}: corpus has no documents with text`);
}

/** True when `source` names a single .txt file (not "brown", a folder or a .jsonl file). */
export function isTextFile(source: string): boolean {
  return source !== BROWN_SOURCE && extname(source).toLowerCase() === '.txt' && statOrThrow(source).isFile();
}

function readSource(source: string, options: ReadOptions): Iterable<CorpusDocument> | AsyncIterable<CorpusDocument> {
  if (source === BROWN_SOURCE) return readBrownDocuments();
  const stats = statOrThrow(source);
  if (stats.isDirectory()) return readTextFolder(source);
  const ext = extname(source).toLowerCase();
  if (ext === '.txt') {
    const text = readTextFile(source);
    if (!options.splitTextFile) return [{ id: basename(source), text }];
    return text.split(PARAGRAPH_BREAK).map((paragraph, i) => ({ id: `${basename(source)}#${i + 1}`, text: paragraph }));
  }
  if (JSONL_EXTENSIONS.has(ext)) return readJsonLines(source, options.textField ?? DEFAULT_TEXT_FIELD);
  throw new UserError(
    `${source}: unsupported corpus (expected "brown", a .txt file, a folder of .txt files, or a .jsonl file)`,
  );
}

function* readTextFolder(dir: string): Generator<CorpusDocument> {
  for (const path of listTextFiles(dir)) {
    yield { id: relative(dir, path), text: readTextFile(path) };
  }
}

/** All .txt files under `dir`, sorted by code point so the order (and thus the split) is locale-independent. */
function listTextFiles(dir: string): string[] {
  const files: string[] = [];
  collectTextFiles(dir, files);
  return files.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

function collectTextFiles(dir: string, files: string[]): void {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch (err) {
    throw new UserError(`${dir}: cannot read folder (${fsErrorReason(err)})`);
  }
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) collectTextFiles(path, files);
    else if (entry.isFile() && extname(entry.name).toLowerCase() === '.txt') files.push(path);
  }
}

/**
 * Reads a UTF-8 text file with line endings normalised to \n and without a byte-order mark. A file with
 * NUL bytes or invalid UTF-8 is refused: it is binary, or text in another encoding.
 */
export function readText(path: string): string {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    throw new UserError(`${path}: cannot read file (${fsErrorReason(err)})`);
  }
  const nul = bytes.indexOf(0);
  if (nul >= 0) throw new UserError(`${path}: not a text file (NUL byte at byte ${nul}); pass a UTF-8 text file`);
  const raw = bytes.toString('utf8');
  if (!isUtf8(bytes)) {
    const at = Buffer.byteLength(raw.slice(0, raw.indexOf('\uFFFD')));
    throw new UserError(`${path}: not UTF-8 text (invalid byte sequence at byte ${at}); convert it to UTF-8 (e.g. iconv -t UTF-8) or pass another file`);
  }
  return raw.replace(/^\uFEFF/, '').replace(/\r\n?/g, '\n');
}

const PARAGRAPH_BREAK = '\n\n';

/**
 * Reads a plain-text document (readText). Blank lines separate paragraphs; lines within a paragraph are joined
 * with a space, undoing hard wrapping (as in Project Gutenberg files) so text looks like the Brown corpus.
 */
function readTextFile(path: string): string {
  return readText(path)
    .split(/\n[ \t]*\n/)
    .map((paragraph) => paragraph.split('\n').map((line) => line.trim()).filter((line) => line).join(' '))
    .filter((paragraph) => paragraph.length > 0)
    .join(PARAGRAPH_BREAK);
}

async function* readJsonLines(path: string, field: string): AsyncGenerator<CorpusDocument> {
  for await (const record of readJsonObjects(path)) {
    const text = record.fields[field];
    if (typeof text !== 'string') {
      const fields = Object.keys(record.fields);
      const has = fields.length === 0 ? 'no fields' : `fields ${fields.slice(0, 8).join(', ')}${fields.length > 8 ? ', …' : ''}`;
      throw new UserError(`${record.where}: missing string field "${field}" (the line has ${has}); pass --text-field with the field holding the text`);
    }
    yield { id: `${basename(path)}:${record.line}`, text };
  }
}

function statOrThrow(path: string): Stats {
  try {
    return statSync(path);
  } catch (err) {
    throw new UserError(`${path}: cannot read corpus (${fsErrorReason(err)})`);
  }
}
