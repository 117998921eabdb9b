/**
 * LongBench (THUDM/LongBench, v1): the JSON-lines record format, the per-dataset prompts, answer budgets and
 * metrics of the official `config/dataset2prompt.json`, `config/dataset2maxlen.json` and `eval.py`, and scoring
 * of predictions as `eval.py` does it (plus the LongBench-E length buckets of its `scorer_e`).
 */
import { UserError } from '../io/errors.ts';
import { integerField, type JsonLine, readAllJsonObjects, readJsonObjects, stringArrayField, stringField } from '../io/jsonl.ts';
import { alignPredictions, type Prediction } from './jsonl.ts';
import {
  classificationScore,
  codeSimScore,
  countScore,
  pythonRound,
  qaF1Score,
  qaF1ZhScore,
  RETRIEVAL_ANSWER,
  RETRIEVAL_ZH_ANSWER,
  retrievalScore,
  retrievalZhScore,
  rougeScore,
  rougeZhScore,
} from './metrics.ts';

/** One LongBench example, as in the official data files. */
export interface LongBenchRecord {
  _id: string;
  dataset: string;
  input: string;
  context: string;
  answers: string[];
  /** Words (English) or characters (Chinese) of the context; LongBench-E buckets by it. */
  length: number;
  all_classes: string[] | null;
}

type MetricName =
  | 'qa_f1_score'
  | 'qa_f1_zh_score'
  | 'rouge_score'
  | 'rouge_zh_score'
  | 'classification_score'
  | 'retrieval_score'
  | 'retrieval_zh_score'
  | 'count_score'
  | 'code_sim_score';

const METRICS: Record<MetricName, (prediction: string, groundTruth: string, allClasses: readonly string[]) => number> = {
  qa_f1_score: qaF1Score,
  qa_f1_zh_score: qaF1ZhScore,
  rouge_score: rougeScore,
  rouge_zh_score: rougeZhScore,
  classification_score: classificationScore,
  retrieval_score: retrievalScore,
  retrieval_zh_score: retrievalZhScore,
  count_score: countScore,
  code_sim_score: codeSimScore,
};

export interface LongBenchDataset {
  metric: MetricName;
  /** Generation budget in tokens (dataset2maxlen.json). */
  maxNewTokens: number;
  /** Prompt with {context} and {input} (dataset2prompt.json, verbatim, typos included). */
  prompt: string;
}

export const LONGBENCH_DATASETS: Readonly<Record<string, LongBenchDataset>> = {
  narrativeqa: {
    metric: 'qa_f1_score',
    maxNewTokens: 128,
    prompt: "You are given a story, which can be either a novel or a movie script, and a question. Answer the question asconcisely as you can, using a single phrase if possible. Do not provide any explanation.\n\nStory: {context}\n\nNow, answer the question based on the story asconcisely as you can, using a single phrase if possible. Do not provide any explanation.\n\nQuestion: {input}\n\nAnswer:",
  },
  qasper: {
    metric: 'qa_f1_score',
    maxNewTokens: 128,
    prompt: "You are given a scientific article and a question. Answer the question as concisely as you can, using a single phrase or sentence if possible. If the question cannot be answered based on the information in the article, write \"unanswerable\". If the question is a yes/no question, answer \"yes\", \"no\", or \"unanswerable\". Do not provide any explanation.\n\nArticle: {context}\n\n Answer the question based on the above article as concisely as you can, using a single phrase or sentence if possible. If the question cannot be answered based on the information in the article, write \"unanswerable\". If the question is a yes/no question, answer \"yes\", \"no\", or \"unanswerable\". Do not provide any explanation.\n\nQuestion: {input}\n\nAnswer:",
  },
  multifieldqa_en: {
    metric: 'qa_f1_score',
    maxNewTokens: 64,
    prompt: "Read the following text and answer briefly.\n\n{context}\n\nNow, answer the following question based on the above text, only give me the answer and do not output any other words.\n\nQuestion: {input}\nAnswer:",
  },
  multifieldqa_zh: {
    metric: 'qa_f1_zh_score',
    maxNewTokens: 64,
    prompt: "阅读以下文字并用中文简短回答：\n\n{context}\n\n现在请基于上面的文章回答下面的问题，只告诉我答案，不要输出任何其他字词。\n\n问题：{input}\n回答：",
  },
  hotpotqa: {
    metric: 'qa_f1_score',
    maxNewTokens: 32,
    prompt: "Answer the question based on the given passages. Only give me the answer and do not output any other words.\n\nThe following are given passages.\n{context}\n\nAnswer the question based on the given passages. Only give me the answer and do not output any other words.\n\nQuestion: {input}\nAnswer:",
  },
  '2wikimqa': {
    metric: 'qa_f1_score',
    maxNewTokens: 32,
    prompt: "Answer the question based on the given passages. Only give me the answer and do not output any other words.\n\nThe following are given passages.\n{context}\n\nAnswer the question based on the given passages. Only give me the answer and do not output any other words.\n\nQuestion: {input}\nAnswer:",
  },
  musique: {
    metric: 'qa_f1_score',
    maxNewTokens: 32,
    prompt: "Answer the question based on the given passages. Only give me the answer and do not output any other words.\n\nThe following are given passages.\n{context}\n\nAnswer the question based on the given passages. Only give me the answer and do not output any other words.\n\nQuestion: {input}\nAnswer:",
  },
  dureader: {
    metric: 'rouge_zh_score',
    maxNewTokens: 128,
    prompt: "请基于给定的文章回答下述问题。\n\n文章：{context}\n\n请基于上述文章回答下面的问题。\n\n问题：{input}\n回答：",
  },
  gov_report: {
    metric: 'rouge_score',
    maxNewTokens: 512,
    prompt: "You are given a report by a government agency. Write a one-page summary of the report.\n\nReport:\n{context}\n\nNow, write a one-page summary of the report.\n\nSummary:",
  },
  qmsum: {
    metric: 'rouge_score',
    maxNewTokens: 512,
    prompt: "You are given a meeting transcript and a query containing a question or instruction. Answer the query in one or more sentences.\n\nTranscript:\n{context}\n\nNow, answer the query based on the above meeting transcript in one or more sentences.\n\nQuery: {input}\nAnswer:",
  },
  multi_news: {
    metric: 'rouge_score',
    maxNewTokens: 512,
    prompt: "You are given several news passages. Write a one-page summary of all news. \n\nNews:\n{context}\n\nNow, write a one-page summary of all the news.\n\nSummary:",
  },
  vcsum: {
    metric: 'rouge_zh_score',
    maxNewTokens: 512,
    prompt: "下面有一段会议记录，请你阅读后，写一段总结，总结会议的内容。\n会议记录：\n{context}\n\n会议总结：",
  },
  trec: {
    metric: 'classification_score',
    maxNewTokens: 64,
    prompt: "Please determine the type of the question below. Here are some examples of questions.\n\n{context}\n{input}",
  },
  triviaqa: {
    metric: 'qa_f1_score',
    maxNewTokens: 32,
    prompt: "Answer the question based on the given passage. Only give me the answer and do not output any other words. The following are some examples.\n\n{context}\n\n{input}",
  },
  samsum: {
    metric: 'rouge_score',
    maxNewTokens: 128,
    prompt: "Summarize the dialogue into a few short sentences. The following are some examples.\n\n{context}\n\n{input}",
  },
  lsht: {
    metric: 'classification_score',
    maxNewTokens: 64,
    prompt: "请判断给定新闻的类别，下面是一些例子。\n\n{context}\n{input}",
  },
  passage_retrieval_en: {
    metric: 'retrieval_score',
    maxNewTokens: 32,
    prompt: "Here are 30 paragraphs from Wikipedia, along with an abstract. Please determine which paragraph the abstract is from.\n\n{context}\n\nThe following is an abstract.\n\n{input}\n\nPlease enter the number of the paragraph that the abstract is from. The answer format must be like \"Paragraph 1\", \"Paragraph 2\", etc.\n\nThe answer is: ",
  },
  passage_count: {
    metric: 'count_score',
    maxNewTokens: 32,
    prompt: "There are some paragraphs below sourced from Wikipedia. Some of them may be duplicates. Please carefully read these paragraphs and determine how many unique paragraphs there are after removing duplicates. In other words, how many non-repeating paragraphs are there in total?\n\n{context}\n\nPlease enter the final count of unique paragraphs after removing duplicates. The output format should only contain the number, such as 1, 2, 3, and so on.\n\nThe final answer is: ",
  },
  passage_retrieval_zh: {
    metric: 'retrieval_zh_score',
    maxNewTokens: 32,
    prompt: "以下是若干段落文字，以及其中一个段落的摘要。请确定给定的摘要出自哪一段。\n\n{context}\n\n下面是一个摘要\n\n{input}\n\n请输入摘要所属段落的编号。答案格式必须是\"段落1\"，\"段落2\"等格式\n\n答案是：",
  },
  lcc: {
    metric: 'code_sim_score',
    maxNewTokens: 64,
    prompt: "Please complete the code given below. \n{context}Next line of code:\n",
  },
  'repobench-p': {
    metric: 'code_sim_score',
    maxNewTokens: 64,
    prompt: "Please complete the code given below. \n{context}{input}Next line of code:\n",
  },
};

/** The datasets of LongBench-E, whose files are named `<dataset>_e.jsonl`. */
export const LONGBENCH_E_DATASETS: readonly string[] = [
  'qasper', 'multifieldqa_en', 'hotpotqa', '2wikimqa', 'gov_report', 'multi_news', 'trec',
  'triviaqa', 'samsum', 'passage_count', 'passage_retrieval_en', 'lcc', 'repobench-p',
];

/** Datasets whose prediction is cut at its first line before scoring (eval.py). */
const FIRST_LINE_ONLY = new Set(['trec', 'triviaqa', 'samsum', 'lsht']);

/** The dataset a record's `dataset` field names; LongBench-E's `hotpotqa_e` is scored as `hotpotqa`. */
export function datasetName(name: string): string | null {
  if (Object.hasOwn(LONGBENCH_DATASETS, name)) return name;
  const base = name.replace(/_e$/, '');
  return LONGBENCH_E_DATASETS.includes(base) ? base : null;
}

/** The official prompt of a record: `prompt_format.format(**json_obj)`, substituting in one pass. */
export function buildLongBenchPrompt(record: Pick<LongBenchRecord, 'dataset' | 'context' | 'input'>): string {
  return fillPrompt(specOf(record.dataset).prompt, record);
}

function fillPrompt(template: string, record: Pick<LongBenchRecord, 'context' | 'input'>): string {
  return template.replace(/\{(context|input)\}/g, (_, field: 'context' | 'input') => record[field]);
}

/** The official prompt cut where the question part starts (after the context), for methods that take the context apart. */
export function splitLongBenchPrompt(record: Pick<LongBenchRecord, 'dataset' | 'context' | 'input'>): { context: string; question: string } {
  const { prompt } = specOf(record.dataset);
  const cut = prompt.indexOf('{context}') + '{context}'.length;
  return { context: fillPrompt(prompt.slice(0, cut), record), question: fillPrompt(prompt.slice(cut), record) };
}

function specOf(dataset: string): LongBenchDataset {
  if (!Object.hasOwn(LONGBENCH_DATASETS, dataset)) throw new UserError(unknownDatasetMessage(dataset));
  return LONGBENCH_DATASETS[dataset]!;
}

function unknownDatasetMessage(name: string): string {
  return `unknown LongBench dataset "${name}"; known: ${Object.keys(LONGBENCH_DATASETS).join(', ')}`;
}

/** A record with the line it came from. */
export interface SourcedRecord {
  record: LongBenchRecord;
  source: JsonLine;
}

/** Streams and validates a LongBench JSON-lines file; `dataset` is normalised to its base name. */
export async function* readLongBench(path: string): AsyncGenerator<SourcedRecord> {
  for await (const source of readJsonObjects(path)) yield { record: parseRecord(source), source };
}

function parseRecord(source: JsonLine): LongBenchRecord {
  const given = stringField(source, 'dataset');
  const dataset = datasetName(given);
  if (dataset === null) throw new UserError(`${source.where}: ${unknownDatasetMessage(given)}`);
  const classes = source.fields.all_classes;
  const record: LongBenchRecord = {
    _id: stringField(source, '_id'),
    dataset,
    input: stringField(source, 'input'),
    context: stringField(source, 'context'),
    answers: stringArrayField(source, 'answers'),
    length: integerField(source, 'length'),
    all_classes: classes === null ? null : stringArrayField(source, 'all_classes'),
  };
  checkAnswersScorable(record, source);
  return record;
}

/** Catches here what would crash the official scorer later: missing classes, retrieval answers without a number. */
function checkAnswersScorable(record: LongBenchRecord, source: JsonLine): void {
  const { metric } = specOf(record.dataset);
  if (metric === 'classification_score' && (record.all_classes === null || record.all_classes.length === 0)) {
    throw new UserError(`${source.where}: ${record.dataset} is a classification dataset; "all_classes" must list the classes`);
  }
  const pattern = metric === 'retrieval_score' ? RETRIEVAL_ANSWER : metric === 'retrieval_zh_score' ? RETRIEVAL_ZH_ANSWER : null;
  if (pattern === null) return;
  const unscorable = record.answers.find((answer) => !pattern.test(answer));
  if (unscorable !== undefined) {
    throw new UserError(`${source.where}: retrieval answer "${unscorable}" does not name a paragraph like /${pattern.source}/`);
  }
}

/** Score of one prediction: the best over the reference answers (eval.py `scorer`). */
export function scoreLongBenchExample(dataset: string, prediction: string, answers: readonly string[], allClasses: readonly string[] | null): number {
  const spec = specOf(dataset);
  const scored = FIRST_LINE_ONLY.has(dataset) ? prediction.replace(/^\n+/, '').split('\n')[0]! : prediction;
  let score = 0;
  for (const answer of answers) score = Math.max(score, METRICS[spec.metric](scored, answer, allClasses ?? []));
  return score;
}

export const LENGTH_BUCKETS = ['0-4k', '4-8k', '8k+'] as const;
export type LengthBucket = (typeof LENGTH_BUCKETS)[number];

/** LongBench-E's bucket of a record by its `length` field. */
export function lengthBucket(length: number): LengthBucket {
  return length < 4000 ? '0-4k' : length < 8000 ? '4-8k' : '8k+';
}

export interface DatasetScore {
  metric: MetricName;
  count: number;
  /** 100 * mean example score, rounded to 2 decimals as Python's round(). */
  score: number;
  /** The same per LongBench-E length bucket; null for an empty bucket (NaN in the official output). */
  buckets: Record<LengthBucket, number | null>;
}

/** Per-dataset scores of scored examples, datasets in order of first appearance. */
export function aggregateLongBench(examples: ReadonlyArray<{ dataset: string; length: number; score: number }>): Record<string, DatasetScore> {
  const groups = new Map<string, Array<{ length: number; score: number }>>();
  for (const { dataset, length, score } of examples) {
    const group = groups.get(dataset) ?? [];
    group.push({ length, score });
    groups.set(dataset, group);
  }
  const result: Record<string, DatasetScore> = {};
  for (const [dataset, group] of groups) {
    const buckets = Object.fromEntries(LENGTH_BUCKETS.map((bucket) => [bucket, null])) as Record<LengthBucket, number | null>;
    for (const bucket of LENGTH_BUCKETS) {
      const scores = group.filter((example) => lengthBucket(example.length) === bucket).map((example) => example.score);
      // scorer_e: round(100 * np.mean(scores), 2); np.mean sums pairwise, which can differ in the last bit only.
      if (scores.length > 0) buckets[bucket] = pythonRound(100 * (sum(scores) / scores.length), 2);
    }
    const total = sum(group.map((example) => example.score));
    result[dataset] = {
      metric: specOf(dataset).metric,
      count: group.length,
      score: pythonRound((100 * total) / group.length, 2), // scorer: round(100 * total_score / len(predictions), 2)
      buckets,
    };
  }
  return result;
}

function sum(values: readonly number[]): number {
  let total = 0;
  for (const value of values) total += value;
  return total;
}

/**
 * Reads predictions: JSON lines with a string "pred", matched to the data by "_id", or by line order when no line
 * has one (the official pred files). Official lines also carry "answers"; when present they must equal the
 * data's, which catches predictions written in a different order.
 */
export async function scoreLongBenchFiles(dataPath: string, predictionsPath: string): Promise<Record<string, DatasetScore>> {
  const records: Array<SourcedRecord & { key: string }> = [];
  for await (const entry of readLongBench(dataPath)) records.push({ ...entry, key: entry.record._id });
  if (records.length === 0) throw new UserError(`${dataPath}: no records (the file is empty)`);
  const predictions: Prediction[] = (await readAllJsonObjects(predictionsPath)).map((source) => ({
    pred: stringField(source, 'pred'),
    key: source.fields._id === undefined ? null : stringField(source, '_id'),
    source,
  }));
  const pairs = alignPredictions(records, predictions, predictionsPath, '_id');
  return aggregateLongBench(
    pairs.map(({ record, prediction }) => {
      checkSameAnswers(record, prediction);
      return {
        dataset: record.dataset,
        length: record.length,
        score: scoreLongBenchExample(record.dataset, prediction.pred, record.answers, record.all_classes),
      };
    }),
  );
}

function checkSameAnswers(record: LongBenchRecord, prediction: Prediction): void {
  if (prediction.source.fields.answers === undefined) return;
  const answers = stringArrayField(prediction.source, 'answers');
  if (answers.length !== record.answers.length || answers.some((answer, i) => answer !== record.answers[i])) {
    throw new UserError(
      `${prediction.source.where}: "answers" differ from those of record "${record._id}" it was matched with; are the predictions in the order of the data?`,
    );
  }
}
