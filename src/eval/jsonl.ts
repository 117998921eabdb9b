/** Matching prediction files to benchmark records. */
import type { JsonLine } from '../io/jsonl.ts';
import { UserError } from '../io/errors.ts';

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
