/** Streaming JSON-lines input for the benchmark files, with `FILE:LINE:` errors, and prediction alignment. */
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { fsErrorReason } from '../data/fs-errors.ts';
import { UserError } from '../io/errors.ts';

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
export interface Prediction {
  pred: string;
  key: string | null;
  source: JsonLine;
}

/**
 * Pairs records with predictions: by key when every prediction has one, by line order when none has.
 * Each record must get exactly one prediction, so a partial or misaligned file is an error, not a lower score.
 */
export function alignPredictions<R>(
  records: ReadonlyArray<{ record: R; key: string; source: JsonLine }>,
  predictions: readonly Prediction[],
  predictionsFile: string,
  keyName: string,
): Array<{ record: R; prediction: Prediction }> {
  const keyed = predictions.filter((p) => p.key !== null);
  if (keyed.length === 0) {
    if (predictions.length !== records.length) {
      throw new UserError(
        `${predictionsFile}: ${predictions.length} predictions without "${keyName}" for ${records.length} records; without "${keyName}" they are matched by line order, so the counts must be equal`,
      );
    }
    return records.map((entry, i) => ({ record: entry.record, prediction: predictions[i]! }));
  }
  if (keyed.length !== predictions.length) {
    const unkeyed = predictions.find((p) => p.key === null)!;
    throw new UserError(`${unkeyed.source.where}: missing "${keyName}" (give it on every line, or on none to match by line order)`);
  }
  const byKey = new Map<string, Prediction>();
  for (const prediction of predictions) {
    if (byKey.has(prediction.key!)) throw new UserError(`${prediction.source.where}: second prediction for ${keyName} "${prediction.key}"`);
    byKey.set(prediction.key!, prediction);
  }
  const recordKeys = new Set<string>();
  const pairs = records.map((entry) => {
    if (recordKeys.has(entry.key)) throw new UserError(`${entry.source.where}: second record with ${keyName} "${entry.key}", so predictions cannot be matched by it`);
    recordKeys.add(entry.key);
    const prediction = byKey.get(entry.key);
    if (!prediction) throw new UserError(`${predictionsFile}: no prediction for ${keyName} "${entry.key}" (${entry.source.where})`);
    return { record: entry.record, prediction };
  });
  const stray = predictions.find((p) => !recordKeys.has(p.key!));
  if (stray) throw new UserError(`${stray.source.where}: ${keyName} "${stray.key}" is not in the data file`);
  return pairs;
}
