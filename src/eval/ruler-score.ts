/** Scoring RULER predictions by each task's metric, as RULER does, from files or in memory. */
import { UserError } from '../io/errors.ts';
import { integerField, type JsonLine, readAllJsonObjects, stringArrayField, stringField } from '../io/jsonl.ts';
import { alignPredictions, type Prediction } from './jsonl.ts';
import { pythonRound, stringMatchAll, stringMatchPart } from './metrics.ts';
import type { RulerSample } from './ruler.ts';
import { RULER_METRICS, RULER_TASKS, type RulerTask } from './ruler-tasks.ts';

export interface RulerTaskScore {
  metric: 'string_match_all' | 'string_match_part';
  count: number;
  /** 100 * mean, rounded to 2 decimals (RULER's constants.py). */
  score: number;
}

/** One prediction's score in [0, 1] by its task's metric. */
export function scoreRulerExample(task: RulerTask, pred: string, outputs: readonly string[]): number {
  return RULER_METRICS[task] === 'string_match_all' ? stringMatchAll(pred, outputs) : stringMatchPart(pred, outputs);
}

export function scoreRuler(examples: ReadonlyArray<{ task: RulerTask; pred: string; outputs: readonly string[] }>): Record<string, RulerTaskScore> {
  const byTask = new Map<RulerTask, number[]>();
  for (const { task, pred, outputs } of examples) {
    const scores = byTask.get(task) ?? [];
    scores.push(scoreRulerExample(task, pred, outputs));
    byTask.set(task, scores);
  }
  const result: Record<string, RulerTaskScore> = {};
  for (const [task, scores] of byTask) {
    let total = 0;
    for (const score of scores) total += score;
    result[task] = { metric: RULER_METRICS[task], count: scores.length, score: pythonRound((total / scores.length) * 100, 2) };
  }
  return result;
}

/** Answer budget per task in tokens (RULER's tokens_to_generate; needle tasks 64 instead of 128, as our answers are one line). */
export const RULER_ANSWER_TOKENS: Record<RulerTask, number> = {
  niah_single: 64,
  niah_multikey: 64,
  niah_multivalue: 64,
  niah_multiquery: 64,
  variable_tracking: 30,
  common_words: 120,
  frequent_words: 50,
  qa: 32,
};

/** Samples of a generated file, with the line each came from. */
export async function readRulerSamples(path: string): Promise<Array<{ sample: Pick<RulerSample, 'task' | 'index' | 'input' | 'outputs' | 'length' | 'depth'>; source: JsonLine }>> {
  return (await readAllJsonObjects(path)).map((source) => {
    const depth = source.fields.depth;
    const sample = {
      task: parseTask(source),
      index: integerField(source, 'index'),
      input: stringField(source, 'input'),
      outputs: stringArrayField(source, 'outputs'),
      length: integerField(source, 'length'),
      depth: typeof depth === 'number' ? depth : null,
    };
    return { sample, source };
  });
}

function parseTask(source: JsonLine): RulerTask {
  const task = stringField(source, 'task');
  if (!(RULER_TASKS as readonly string[]).includes(task)) throw new UserError(`${source.where}: unknown RULER task "${task}"; known: ${RULER_TASKS.join(', ')}`);
  return task as RulerTask;
}

/**
 * Scores a predictions file against generated samples: lines with a string "pred", matched by "task" and
 * "index" when every line has both, by "index" alone (single-task data), or by line order when none has "index".
 */
export async function scoreRulerFiles(dataPath: string, predictionsPath: string): Promise<Record<string, RulerTaskScore>> {
  const predictionLines = await readAllJsonObjects(predictionsPath);
  const withTask = predictionLines.every((line) => line.fields.task !== undefined);
  const keyOf = (task: string, index: number) => (withTask ? `${task}#${index}` : String(index));
  const predictions: Prediction[] = predictionLines.map((source) => ({
    pred: stringField(source, 'pred'),
    key: source.fields.index === undefined ? null : keyOf(withTask ? parseTask(source) : '', integerField(source, 'index')),
    source,
  }));
  const records = (await readAllJsonObjects(dataPath)).map((source) => {
    const record = { task: parseTask(source), index: integerField(source, 'index'), outputs: stringArrayField(source, 'outputs') };
    return { record, key: keyOf(record.task, record.index), source };
  });
  const dataTasks = new Set(records.map((entry) => entry.record.task));
  if (!withTask && dataTasks.size > 1 && predictions.some((p) => p.key !== null)) {
    throw new UserError(
      `${predictionsPath}: ${dataPath} has several tasks (${[...dataTasks].join(', ')}); give every prediction "task" as well as "index", or neither to match by line order`,
    );
  }
  const pairs = alignPredictions(records, predictions, predictionsPath, withTask ? 'task and index' : 'index');
  return scoreRuler(pairs.map(({ record, prediction }) => ({ task: record.task, pred: prediction.pred, outputs: record.outputs })));
}
