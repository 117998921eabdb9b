/**
 * `arl lift`: LIFT on one long input. Trains a fresh adapter (Gated Memory or LoRA) on the input,
 * saves it as DIR/adapter.safetensors (with the base checkpoint's hash), and answers the
 * questions with the truncated prompt, optionally next to the in-context-only answers.
 * Resumable: an adapter already in DIR for the same input, base and settings is reused, and
 * questions already in DIR/answers.jsonl are not asked again.
 */
import chalk from 'chalk';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { readText } from '../data/corpus.ts';
import { CHAT_BACKENDS, openChatModel } from '../io/chat.ts';
import { writeFileAtomic } from '../io/atomic.ts';
import { weightsSha256 } from '../io/checkpoint.ts';
import { UserError } from '../io/errors.ts';
import { lockFolder } from '../io/lock.ts';
import { makeRng } from '../core/random.ts';
import { ADAPTER_KINDS, adapterParameterCount, attachAdapter, detachAdapter, type ModelAdapter } from '../lift/adapter.ts';
import { ADAPTER_FILE, loadAdapter, readAdapterInfo, saveAdapter } from '../lift/adapter-file.ts';
import { clozeQaPairs, generateQaPairs, QA_PER_INPUT, type QaPair, readQaPairs, readQuestions } from '../lift/auxiliary-qa.ts';
import type { Tokenizer } from '../tokenizer/sentencepiece.ts';
import { answerQuestions, LIFT_DEFAULTS, liftTrainingTokens, type LiftOptions, trainLiftAdapter } from '../lift/lift.ts';
import { CHAT_FLAGS, chatOptionsFromArgs } from './chat-options.ts';
import { BACKEND_FLAGS, loadModelAndTokenizer, startBackend } from './common.ts';
import { type ArgsOf, defineCommand, defineOptions, valuesOf } from './options.ts';
import { formatDuration, ProgressBar } from './progress.ts';

/** The flags that are LiftOptions fields of the same name, in the order the adapter's provenance records them. */
const LIFT_FLAGS = defineOptions({
  adapter: { choices: ADAPTER_KINDS, default: LIFT_DEFAULTS.adapter, describe: 'Gated Memory (the paper) or LoRA on all projections' },
  'lora-rank': { type: 'number', default: LIFT_DEFAULTS.loraRank, describe: 'LoRA rank (--adapter lora)' },
  'lora-alpha': { type: 'number', default: LIFT_DEFAULTS.loraAlpha, describe: 'LoRA scale numerator (--adapter lora)' },
  'segment-length': { type: 'number', describe: "tokens per segment (default: 2048 of 8192 scaled to the model's window)" },
  'segment-stride': { type: 'number', describe: 'tokens between segment starts (default: 768 of 8192 scaled)' },
  'context-tokens': { type: 'number', describe: 'head + tail tokens before each segment (default: 4096 of 8192 scaled)' },
  contextualized: { type: 'boolean', default: LIFT_DEFAULTS.contextualized, describe: 'contextualized training (--no-contextualized: plain segments)' },
  'stage1-epochs': { type: 'number', default: LIFT_DEFAULTS.stage1Epochs, describe: 'epochs over the segments' },
  'stage2-epochs': { type: 'number', default: LIFT_DEFAULTS.stage2Epochs, describe: 'epochs over segments + auxiliary QA' },
  lr: { type: 'number', default: LIFT_DEFAULTS.lr, describe: 'AdamW learning rate (constant)' },
  'weight-decay': { type: 'number', default: LIFT_DEFAULTS.weightDecay, describe: 'AdamW weight decay of the adapter' },
  beta1: { type: 'number', default: LIFT_DEFAULTS.beta1, describe: 'AdamW first-moment decay' },
  beta2: { type: 'number', default: LIFT_DEFAULTS.beta2, describe: 'AdamW second-moment decay' },
  clip: { type: 'number', default: LIFT_DEFAULTS.clip, describe: 'global gradient-norm clip' },
  'accumulate-epoch': { type: 'boolean', default: LIFT_DEFAULTS.accumulateEpoch, describe: 'one optimizer step per epoch (the official code); default one per batch' },
  batch: { type: 'number', default: LIFT_DEFAULTS.batch, describe: 'examples per batch' },
  seed: { type: 'number', default: LIFT_DEFAULTS.seed, describe: "seed of the adapter's initialisation and the example order" },
  'sentence-orders': { type: 'number', default: LIFT_DEFAULTS.sentenceOrders, describe: 'train on the input plus copies in other sentence orders (ours, not in the paper; 1 = as given)' },
  'prompt-template': { type: 'string', default: LIFT_DEFAULTS.promptTemplate, describe: 'answering (and QA training) prompt with {context} and {question}' },
  'max-new-tokens': { type: 'number', default: LIFT_DEFAULTS.maxNewTokens, describe: 'answer tokens at most' },
});

const LIFT_COMMAND_FLAGS = defineOptions({
  checkpoint: { type: 'string', demandOption: true, describe: 'base checkpoint (stays frozen)' },
  tokenizer: { type: 'string', describe: "SentencePiece model (default: the checkpoint's)" },
  input: { type: 'string', demandOption: true, describe: 'the long input, a text file' },
  questions: { type: 'string', demandOption: true, describe: 'JSONL of {question, answer?} to answer' },
  out: { type: 'string', demandOption: true, describe: 'output folder: adapter.safetensors, answers.jsonl, summary.json' },
  'compare-icl': { type: 'boolean', default: false, describe: 'also answer without the adapter (in-context only, same truncated prompt)' },
  'load-adapter': { type: 'string', describe: 'answer with this adapter file instead of training one' },
  ...LIFT_FLAGS,
  qa: { type: 'string', describe: 'auxiliary QA pairs, JSONL of {question, answer} (stage 2)' },
  'qa-llm': { choices: CHAT_BACKENDS, describe: 'write auxiliary QA pairs with this LLM backend (--llm-* flags)' },
  'qa-cloze': { type: 'boolean', default: false, describe: 'auxiliary QA made from the input alone, no LLM: the first part of a random sentence asks for the rest' },
  'qa-count': { type: 'number', default: QA_PER_INPUT, describe: 'auxiliary QA pairs to make with --qa-llm or --qa-cloze' },
});

const SHARED_FLAGS = { ...BACKEND_FLAGS, ...CHAT_FLAGS };

type LiftArgs = ArgsOf<typeof LIFT_COMMAND_FLAGS & typeof SHARED_FLAGS>;

/** LiftOptions from the flags: a segment size not given is null, the paper's scaled to the model's window. */
function liftOptionsOf(args: LiftArgs): Partial<LiftOptions> {
  const options = valuesOf(LIFT_FLAGS, args);
  return { ...options, segmentLength: options.segmentLength ?? null, segmentStride: options.segmentStride ?? null, contextTokens: options.contextTokens ?? null };
}

function readInput(path: string): string {
  const text = readText(path);
  if (text.trim() === '') throw new UserError(`${path}: the input is empty; give a long text to fine-tune on`);
  return text;
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/**
 * Auxiliary QA pairs: from --qa, cloze pairs from the input (--qa-cloze, the same for the same --seed), or written
 * by an LLM (--qa-llm) and kept in DIR/qa.jsonl so a rerun reuses them.
 */
async function auxiliaryQa(args: LiftArgs, input: string, tokenizer: Tokenizer, log: (m: string) => void): Promise<QaPair[]> {
  if (args.qa !== undefined) return readQaPairs(args.qa);
  if (args.qaCloze) {
    const pairs = clozeQaPairs(input, tokenizer, makeRng(args.seed), { count: args.qaCount });
    log(`auxiliary QA: ${pairs.length} cloze pairs from the input's sentences`);
    return pairs;
  }
  if (args.qaLlm === undefined) return [];
  const cached = join(args.out, 'qa.jsonl');
  if (existsSync(cached)) return readQaPairs(cached);
  const chat = await openChatModel(chatOptionsFromArgs(args, args.qaLlm));
  try {
    const { pairs, failed } = await generateQaPairs(chat, input, makeRng(args.seed), args.qaCount);
    log(`auxiliary QA: ${pairs.length} pairs from ${chat.model}${failed ? `, ${failed} windows gave no pair with verbatim evidence` : ''}`);
    if (pairs.length > 0) writeFileAtomic(cached, pairs.map((p) => `${JSON.stringify(p)}\n`).join(''));
    return pairs;
  } finally {
    await chat.dispose();
  }
}

export const liftCommand = defineCommand({
  command: 'lift',
  describe: 'LIFT: fine-tune an adapter on one long input, then answer questions about it with a short context',
  options: LIFT_COMMAND_FLAGS,
  shared: SHARED_FLAGS,
  examples: [
    ['$0 lift --checkpoint checkpoints/demo --input book.txt --questions q.jsonl --out lift/book --compare-icl', 'train a Gated Memory adapter and answer'],
    ['$0 lift --checkpoint ckpt --input book.txt --questions q.jsonl --out lift/book --qa-llm openai --llm-url http://localhost:8000 --llm-model qwen', 'with LLM-written auxiliary QA'],
    ['$0 lift --checkpoint ckpt --input book.txt --questions q.jsonl --out lift/book --qa-cloze', 'with cloze auxiliary QA from the input, no LLM'],
  ],
  setup: (y) => y.conflicts('qa', 'qa-llm'),
  handler: async (args) => {
    // Not a yargs conflict: yargs counts the flag's default (false) as given.
    if (args.qaCloze && (args.qa !== undefined || args.qaLlm !== undefined)) throw new UserError(`--qa-cloze goes with neither --qa nor --qa-llm: choose one source of auxiliary QA`);
    const input = readInput(args.input);
    const questions = await readQuestions(args.questions, false);
    lockFolder(args.out);
    await startBackend(args.backend);
    const { model, tokenizer, checkpointDir } = await loadModelAndTokenizer(args.checkpoint, { tokenizer: args.tokenizer, needTokenizer: true });
    const log = (m: string) => process.stderr.write(`${m}\n`);
    let adapter: ModelAdapter | null = null;
    try {
      const baseHash = weightsSha256(checkpointDir);
      const tokens = tokenizer!.encode(input);
      const options = liftOptionsOf(args);
      // An adapter in DIR is reused only if it was trained on this input, base and settings.
      const provenance = { input_sha256: sha256(input), options: JSON.stringify({ ...options, qa: args.qa ?? args.qaLlm ?? (args.qaCloze ? `cloze ${args.qaCount}` : null) }) };
      const adapterFile = join(args.out, ADAPTER_FILE);
      const reusable = existsSync(adapterFile) && (() => {
        const info = readAdapterInfo(adapterFile);
        return info.extra.input_sha256 === provenance.input_sha256 && info.extra.options === provenance.options && info.baseSha256 === baseHash;
      })();
      const summaryFile = join(args.out, 'summary.json');
      if (args.loadAdapter !== undefined || reusable) {
        const file = args.loadAdapter ?? adapterFile;
        adapter = loadAdapter(file, model.config, baseHash, checkpointDir).adapter;
        log(chalk.dim(`adapter: ${file} (${adapterParameterCount(adapter).toLocaleString()} parameters), no training`));
      }
      const answersFile = join(args.out, 'answers.jsonl');
      const done: Record<string, unknown>[] = existsSync(answersFile) && adapter !== null && args.loadAdapter === undefined
        ? readFileSync(answersFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>)
        : [];
      const answered = done.findIndex((r, i) => r.question !== questions[i]?.question);
      if (answered >= 0) done.length = answered; // answers to another questions file are not kept
      const pending = questions.slice(done.length);
      const icl = args.compareIcl && pending.length > 0 ? await answerQuestions(model, tokenizer!, tokens, pending.map((q) => q.question), options) : null;

      if (adapter === null) {
        const qa = await auxiliaryQa(args, input, tokenizer!, log);
        let bar: ProgressBar | null = null;
        let lastLoss = NaN;
        const trainingTokens = liftTrainingTokens(tokenizer!, input, tokens, options);
        const training = await trainLiftAdapter(model, tokenizer!, trainingTokens, {
          ...options,
          qa,
          onNote: (m) => log(chalk.yellow(m)),
          onProgress: (p) => {
            lastLoss = p.loss;
            bar ??= new ProgressBar(p.total, 'lift');
            bar.update(p.step, `stage ${p.stage} loss ${p.loss.toFixed(3)}`);
          },
        });
        adapter = training.adapter;
        await saveAdapter(adapterFile, adapter, baseHash, { ...provenance, base_checkpoint: checkpointDir });
        const perThousand = (training.seconds * 1000) / tokens.length;
        const summary = {
          input: args.input,
          input_tokens: tokens.length,
          sentence_orders: args.sentenceOrders,
          training_tokens: trainingTokens.length,
          segments: training.segments,
          qa_pairs: qa.length,
          optimizer_steps: training.losses.length,
          final_loss: lastLoss,
          train_seconds: training.seconds,
          seconds_per_1k_input_tokens: perThousand,
          adapter: adapter.kind,
          adapter_parameters: adapterParameterCount(adapter),
          adapter_bytes: statSync(adapterFile).size,
        };
        writeFileAtomic(summaryFile, `${JSON.stringify(summary, null, 2)}\n`);
        log(`trained ${adapter.kind} adapter on ${tokens.length} tokens in ${formatDuration(training.seconds)} (${perThousand.toFixed(1)} s per 1,000 input tokens); saved ${adapterFile}`);
      } else {
        attachAdapter(model, adapter);
      }

      const records = [...done];
      for (const [i, q] of pending.entries()) {
        const [answer] = await answerQuestions(model, tokenizer!, tokens, [q.question], options);
        records.push({ question: q.question, answer, ...(icl ? { icl_answer: icl[i] } : {}), ...(q.answer !== null ? { expected: q.answer } : {}) });
        writeFileAtomic(answersFile, records.map((r) => `${JSON.stringify(r)}\n`).join(''));
        console.log(`${chalk.bold('Q')} ${q.question}\n${chalk.green('LIFT')} ${answer}${icl ? `\n${chalk.dim('ICL')}  ${icl[i]}` : ''}`);
      }
      log(chalk.dim(`answers: ${answersFile}`));
    } finally {
      detachAdapter(model);
      adapter?.dispose();
      model.dispose();
    }
  },
});
