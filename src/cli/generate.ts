/** `arl generate`: sample from a checkpoint, streaming text to the terminal. */
import chalk from 'chalk';
import type { CommandModule } from 'yargs';
import type { BackendName } from '../backend.ts';
import { continuationText, generate } from '../infer/generate.ts';
import { generateWithRecaps } from '../infer/recap-agent.ts';
import { UserError } from '../io/errors.ts';
import type { LlamaModel } from '../model/llama.ts';
import type { Tokenizer } from '../tokenizer/sentencepiece.ts';
import { type RecapAgentFlags, recapAgentOptions, withRecapAgentFlags } from './answer.ts';
import { loadModelAndTokenizer, parseIdList, printJson, startBackend, withBackend } from './common.ts';

interface GenerateArgs extends RecapAgentFlags {
  backend: BackendName;
  checkpoint: string;
  tokenizer?: string;
  prompt?: string;
  promptIds?: string;
  maxNewTokens: number;
  greedy: boolean;
  temperature: number;
  topK: number;
  topP: number;
  seed: number;
  cache: boolean;
  stopAtEos: boolean;
  json: boolean;
  recapAgent: boolean;
}

/** ARL stage 2: the model may open a recap at any step; recaps print in cyan and come back in --json as `recaps`. */
async function generateRecapAgent(model: LlamaModel, tokenizer: Tokenizer, args: GenerateArgs): Promise<void> {
  if (args.prompt === undefined) throw new UserError('--recap-agent needs --prompt TEXT');
  if (!args.json) process.stdout.write(chalk.dim(args.prompt));
  const promptIds = tokenizer.encode(args.prompt);
  const streamed: number[] = [];
  let printed = '';
  const result = await generateWithRecaps(model, tokenizer, args.prompt, {
    ...recapAgentOptions(args, { greedy: args.greedy, temperature: args.temperature, topK: args.topK, topP: args.topP, seed: args.seed }),
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

export const generateCommand: CommandModule = {
  command: 'generate',
  describe: 'Generate text from a checkpoint (KV-cached incremental decoding)',
  builder: (y) =>
    withRecapAgentFlags(withBackend(y))
      .option('checkpoint', { type: 'string', demandOption: true, describe: 'checkpoint or run directory' })
      .option('tokenizer', { type: 'string', describe: "SentencePiece model (default: the checkpoint's tokenizer.model)" })
      .option('prompt', { type: 'string', describe: 'prompt text' })
      .option('prompt-ids', { type: 'string', describe: 'prompt as comma-separated token ids' })
      .option('max-new-tokens', { type: 'number', default: 64, describe: 'tokens to generate at most' })
      .option('greedy', { type: 'boolean', default: false, describe: 'argmax decoding' })
      .option('temperature', { type: 'number', default: 0.8, describe: 'sampling temperature (0 or --greedy: the most likely token)' })
      .option('top-k', { type: 'number', default: 40, describe: '0 = off' })
      .option('top-p', { type: 'number', default: 0.95, describe: '1 = off' })
      .option('seed', { type: 'number', default: 0, describe: 'sampling seed' })
      .option('cache', { type: 'boolean', default: true, describe: 'use the KV cache (--no-cache recomputes every step)' })
      .option('stop-at-eos', { type: 'boolean', default: true, describe: 'stop at the end-of-sequence token' })
      .option('json', { type: 'boolean', default: false, describe: 'print one JSON object {ids, text} (new tokens only; with --recap-agent also recaps)' })
      .option('recap-agent', { type: 'boolean', default: false, describe: 'ARL recap agent: the model may write <recap> ... </recap> at any step (capped, then closed); recaps stay in context' })
      .conflicts('prompt', 'prompt-ids')
      .example('$0 generate --checkpoint checkpoints/demo --prompt "The jury said"', 'sample a continuation')
      .example('$0 generate --checkpoint ckpt --prompt-ids 1,15,27 --max-new-tokens 16 --greedy --json', 'greedy ids as JSON')
      .example('$0 generate --checkpoint checkpoints/demo-arl/continued --prompt "..." --recap-agent', 'the model writes recaps as it goes'),
  handler: async (argv) => {
    const args = argv as unknown as GenerateArgs;
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
        maxNewTokens: args.maxNewTokens,
        greedy: args.greedy,
        temperature: args.temperature,
        topK: args.topK,
        topP: args.topP,
        seed: args.seed,
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
};
