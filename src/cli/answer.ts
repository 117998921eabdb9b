/** `arl answer`: read a long input with the ARL recap agent (recaps as memory), then answer a question. */
import chalk from 'chalk';
import { readText } from '../data/corpus.ts';
import { UserError } from '../io/errors.ts';
import { answerWithRecaps, DEFAULT_ANSWER, DEFAULT_RECAP_AGENT, type RecapAgentOptions } from '../infer/recap-agent.ts';
import { BACKEND_FLAGS, loadModelAndTokenizer, printJson, startBackend } from './common.ts';
import { type ArgsOf, defineCommand, defineOptions } from './options.ts';

/** Flags of the recap agent, shared by `arl answer` and `arl generate --recap-agent`. */
export const RECAP_AGENT_FLAGS = defineOptions({
  'max-recap-tokens': { type: 'number', default: DEFAULT_RECAP_AGENT.maxRecapTokens, describe: 'recap length cap; </recap> is forced after this many tokens' },
  'recap-budget': { type: 'number', describe: 'context tokens the kept recaps may take, oldest left out first (default: half the window)' },
  'recap-bias': { type: 'number', default: DEFAULT_RECAP_AGENT.recapBias, describe: 'added to the <recap> logit outside recaps (0: the model decides alone)' },
});

type RecapAgentFlags = ArgsOf<typeof RECAP_AGENT_FLAGS>;

export function recapAgentOptions(args: RecapAgentFlags, sampling: Partial<RecapAgentOptions>): RecapAgentOptions {
  return { ...DEFAULT_RECAP_AGENT, ...sampling, maxRecapTokens: args.maxRecapTokens, recapBudget: args.recapBudget, recapBias: args.recapBias };
}

export const answerCommand = defineCommand({
  command: 'answer',
  describe: 'ARL recap agent: read a long input paragraph by paragraph, keeping the recaps the model writes, then answer a question',
  options: {
    ...RECAP_AGENT_FLAGS,
    checkpoint: { type: 'string', demandOption: true, describe: 'checkpoint or run directory (a model trained on recap-augmented data)' },
    tokenizer: { type: 'string', describe: "SentencePiece model (default: the checkpoint's, else the bundled one)" },
    input: { type: 'string', demandOption: true, describe: 'text file to read; paragraphs are separated by line breaks' },
    question: { type: 'string', demandOption: true, describe: 'the question, answered after the input is read' },
    'recap-agent': { type: 'boolean', default: true, describe: 'let the model write recaps (--no-recap-agent: none, the recent-text baseline)' },
    'recap-threshold': { type: 'number', default: DEFAULT_ANSWER.recapThreshold, describe: 'write a recap at a paragraph end when P(<recap>) reaches this' },
    'max-new-tokens': { type: 'number', default: DEFAULT_ANSWER.maxAnswerTokens, describe: 'answer length cap in tokens' },
    'max-answer-tokens': { type: 'number', hidden: true, describe: 'old name of --max-new-tokens' },
    json: { type: 'boolean', default: false, describe: 'print one JSON object {answer, recaps, recap_probabilities, ...}' },
  },
  shared: BACKEND_FLAGS,
  examples: [['$0 answer --checkpoint checkpoints/demo-arl/continued --input checkpoints/demo-arl/held-out-sample.txt --question "What is this text about?"', 'answer from recaps + recent text (paths of npm run demo:arl)']],
  handler: async (args) => {
    if (!Number.isFinite(args.recapThreshold)) throw new UserError(`--recap-threshold must be a number (got ${args.recapThreshold})`);
    const input = readText(args.input);
    await startBackend(args.backend);
    const { model, tokenizer } = await loadModelAndTokenizer(args.checkpoint, { tokenizer: args.tokenizer, needTokenizer: true });
    try {
      const result = await answerWithRecaps(model, tokenizer!, input, args.question, {
        agent: recapAgentOptions(args, { greedy: true }),
        recapThreshold: args.recapAgent ? args.recapThreshold : Infinity,
        maxAnswerTokens: args.maxAnswerTokens ?? args.maxNewTokens,
      });
      if (args.json) {
        const { answer, recaps, recapProbabilities, paragraphs, inputTokens, stats } = result;
        printJson({ answer, recaps, recapProbabilities: recapProbabilities.map((p) => Math.round(p * 1e6) / 1e6), paragraphs, inputTokens, ...stats });
        return;
      }
      for (const [k, recap] of result.recaps.entries()) console.log(chalk.cyan(`recap ${k + 1}: ${recap}`));
      const maxP = Math.max(0, ...result.recapProbabilities);
      console.log(chalk.dim(`${result.inputTokens} input tokens in ${result.paragraphs} paragraphs, window ${model.config.maxSeq}; ${result.recaps.length} recaps written (max P(<recap>) at a paragraph end ${maxP.toFixed(3)}, threshold ${args.recapAgent ? args.recapThreshold : 'off'}); ${result.stats.rebuilds} context rebuilds`));
      console.log(`${chalk.bold('answer:')} ${result.answer}`);
    } finally {
      model.dispose();
    }
  },
});
