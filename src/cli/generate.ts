/** `arl generate`: sample from a checkpoint, streaming text to the terminal. */
import chalk from 'chalk';
import { continuationText, DEFAULT_GENERATE, generate } from '../infer/generate.ts';
import { generateWithRecaps } from '../infer/recap-agent.ts';
import { UserError } from '../io/errors.ts';
import type { LlamaModel } from '../model/llama.ts';
import type { Tokenizer } from '../tokenizer/sentencepiece.ts';
import { RECAP_AGENT_FLAGS, recapAgentOptions } from './answer.ts';
import { BACKEND_FLAGS, loadModelAndTokenizer, parseIdList, printJson, startBackend } from './common.ts';
import { type ArgsOf, defineCommand, defineOptions, valuesOf } from './options.ts';

/** The flags that are sampling options of the same name. */
const SAMPLING_FLAGS = defineOptions({
  greedy: { type: 'boolean', default: DEFAULT_GENERATE.greedy, describe: 'argmax decoding' },
  temperature: { type: 'number', default: DEFAULT_GENERATE.temperature, describe: 'sampling temperature (0 or --greedy: the most likely token)' },
  'top-k': { type: 'number', default: DEFAULT_GENERATE.topK, describe: '0 = off' },
  'top-p': { type: 'number', default: DEFAULT_GENERATE.topP, describe: '1 = off' },
  seed: { type: 'number', default: DEFAULT_GENERATE.seed, describe: 'sampling seed' },
});

const GENERATE_FLAGS = defineOptions({
  ...RECAP_AGENT_FLAGS,
  checkpoint: { type: 'string', demandOption: true, describe: 'checkpoint or run directory' },
  tokenizer: { type: 'string', describe: "SentencePiece model (default: the checkpoint's tokenizer.model)" },
  prompt: { type: 'string', describe: 'prompt text' },
  'prompt-ids': { type: 'string', describe: 'prompt as comma-separated token ids' },
  'max-new-tokens': { type: 'number', default: DEFAULT_GENERATE.maxNewTokens, describe: 'tokens to generate at most' },
  ...SAMPLING_FLAGS,
  cache: { type: 'boolean', default: DEFAULT_GENERATE.useCache, describe: 'use the KV cache (--no-cache recomputes every step)' },
  'stop-at-eos': { type: 'boolean', default: true, describe: 'stop at the end-of-sequence token' },
  json: { type: 'boolean', default: false, describe: 'print one JSON object {ids, text} (new tokens only; with --recap-agent also recaps)' },
  'recap-agent': { type: 'boolean', default: false, describe: 'ARL recap agent: the model may write <recap> ... </recap> at any step (capped, then closed); recaps stay in context' },
});

type GenerateArgs = ArgsOf<typeof GENERATE_FLAGS & typeof BACKEND_FLAGS>;

/** ARL stage 2: the model may open a recap at any step; recaps print in cyan and come back in --json as `recaps`. */
async function generateRecapAgent(model: LlamaModel, tokenizer: Tokenizer, args: GenerateArgs): Promise<void> {
  if (args.prompt === undefined) throw new UserError('--recap-agent needs --prompt TEXT');
  if (!args.json) process.stdout.write(chalk.dim(args.prompt));
  const promptIds = tokenizer.encode(args.prompt);
  const streamed: number[] = [];
  let printed = '';
  const result = await generateWithRecaps(model, tokenizer, args.prompt, {
    ...recapAgentOptions(args, valuesOf(SAMPLING_FLAGS, args)),
    maxNewTokens: args.maxNewTokens,
    stopIds: args.stopAtEos ? [model.config.eosId] : [],
    onToken: (id, kind) => {
      if (args.json) return;
      streamed.push(id);
      const text = continuationText(tokenizer, promptIds, streamed);
      const piece = text.slice(printed.length);
      process.stdout.write(kind === 'text' ? piece : chalk.cyan(piece));
      printed = text;
    },
  });
  if (args.json) printJson({ ids: result.ids, text: result.text, recaps: result.recaps });
  else process.stdout.write('\n');
}

export const generateCommand = defineCommand({
  command: 'generate',
  describe: 'Generate text from a checkpoint (KV-cached incremental decoding)',
  options: GENERATE_FLAGS,
  shared: BACKEND_FLAGS,
  examples: [
    ['$0 generate --checkpoint checkpoints/demo --prompt "The jury said"', 'sample a continuation'],
    ['$0 generate --checkpoint ckpt --prompt-ids 1,15,27 --max-new-tokens 16 --greedy --json', 'greedy ids as JSON'],
    ['$0 generate --checkpoint checkpoints/demo-arl/continued --prompt "..." --recap-agent', 'the model writes recaps as it goes'],
  ],
  setup: (y) => y.conflicts('prompt', 'prompt-ids'),
  handler: async (args) => {
    if (args.prompt === undefined && args.promptIds === undefined) throw new UserError('generate needs --prompt TEXT or --prompt-ids 1,2,3');
    await startBackend(args.backend);
    const { model, tokenizer } = await loadModelAndTokenizer(args.checkpoint, { tokenizer: args.tokenizer, needTokenizer: args.prompt !== undefined });
    try {
      if (args.recapAgent) return await generateRecapAgent(model, tokenizer!, args);
      const prompt = args.promptIds !== undefined ? parseIdList(args.promptIds, '--prompt-ids') : [model.config.bosId, ...tokenizer!.encode(args.prompt!)];
      const tooBig = prompt.find((id) => id >= model.config.vocabSize);
      if (tooBig !== undefined) throw new UserError(`--prompt-ids: id ${tooBig} is outside the model's vocabulary of ${model.config.vocabSize}`);
      const streamed: number[] = [];
      let printed = '';
      if (!args.json && args.prompt !== undefined) process.stdout.write(chalk.dim(args.prompt));
      const ids = await generate(model, prompt, {
        ...valuesOf(SAMPLING_FLAGS, args),
        maxNewTokens: args.maxNewTokens,
        useCache: args.cache,
        stopIds: args.stopAtEos ? [model.config.eosId] : [],
        onToken: (id) => {
          if (args.json || !tokenizer) return;
          streamed.push(id);
          const text = continuationText(tokenizer, prompt, streamed);
          process.stdout.write(text.slice(printed.length));
          printed = text;
        },
      });
      const text = tokenizer ? continuationText(tokenizer, prompt, ids) : null;
      if (args.json) printJson({ ids, text });
      else process.stdout.write(tokenizer ? '\n' : `${ids.join(',')}\n`);
    } finally {
      model.dispose();
    }
  },
});
