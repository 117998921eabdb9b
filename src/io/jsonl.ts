/** JSON-lines input: streamed with `FILE:LINE:` errors and typed field readers, or read whole from a resumable output file. */
import { createReadStream, existsSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fsErrorReason } from '../data/fs-errors.ts';
import { UserError } from './errors.ts';

/** Parses JSON lines; a cut-off last line (an interrupted write) is dropped, any other bad line is an error. */
export function readJsonLines<T>(file: string): T[] {
  if (!existsSync(file)) return [];
  const lines = readFileSync(file, 'utf8').split('\n');
  const out: T[] = [];
  for (const [index, line] of lines.entries()) {
    if (line.trim() === '') continue;
    try {
      out.push(JSON.parse(line) as T);
    } catch {
      if (index === lines.length - 1) break;
      throw new UserError(`${file}:${index + 1}: not valid JSON; the file is corrupt, delete it to start over`);
    }
  }
  return out;
}

/** One parsed line of a JSON-lines file; `where` is `FILE:LINE` for error messages. */
export interface JsonLine {
  fields: Record<string, unknown>;
  line: number;
  where: string;
}

/** Yields each non-blank line of `path` as a JSON object; anything else is a UserError naming the line. */
export async function* readJsonObjects(path: string): AsyncGenerator<JsonLine> {
  const input = createReadStream(path, { encoding: 'utf8' });
  const lines = createInterface({ input, crlfDelay: Infinity });
  let line = 0;
  try {
    for await (const text of lines) {
      line++;
      if (text.trim().length === 0) continue;
      const where = `${path}:${line}`;
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch (err) {
        throw new UserError(`${where}: not valid JSON (${(err as Error).message})`);
      }
      if (typeof value !== 'object' || value === null || Array.isArray(value)) {
        throw new UserError(`${where}: expected a JSON object per line`);
      }
      yield { fields: value as Record<string, unknown>, line, where };
    }
  } catch (err) {
    if (err instanceof UserError) throw err;
    throw new UserError(`${path}: cannot read file (${fsErrorReason(err)})`);
  } finally {
    lines.close();
    input.destroy();
  }
}

export async function readAllJsonObjects(path: string): Promise<JsonLine[]> {
  const objects: JsonLine[] = [];
  for await (const object of readJsonObjects(path)) objects.push(object);
  if (objects.length === 0) throw new UserError(`${path}: no records (the file is empty)`);
  return objects;
}

export function stringField(line: JsonLine, name: string): string {
  const value = line.fields[name];
  if (typeof value !== 'string') throw new UserError(`${line.where}: field "${name}" must be a string`);
  return value;
}

export function stringArrayField(line: JsonLine, name: string): string[] {
  const value = line.fields[name];
  if (!Array.isArray(value) || !value.every((item) => typeof item === 'string')) {
    throw new UserError(`${line.where}: field "${name}" must be an array of strings`);
  }
  return value;
}

export function integerField(line: JsonLine, name: string): number {
  const value = line.fields[name];
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
    throw new UserError(`${line.where}: field "${name}" must be a non-negative integer`);
  }
  return value;
}

/** A model output to score: the text and, when the file names it, the key of the record it answers. */
