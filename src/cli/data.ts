/** `arl prepare`: tokenize a corpus into train/val shards. */
import chalk from 'chalk';
import { isTextFile } from '../data/corpus.ts';
import { prepareCorpus } from '../data/prepare.ts';
import { BUNDLED_TOKENIZER_PATH, Tokenizer } from '../tokenizer/sentencepiece.ts';
import { TEXT_FIELD_FLAGS } from './common.ts';
import { type ArgsOf, defineCommand, defineOptions } from './options.ts';

export const DEFAULT_PREPARED_DIR = 'data/prepared/brown';

const PREPARE_FLAGS = defineOptions({
  corpus: { type: 'string', default: 'brown', describe: '"brown" (bundled), a .txt file, a folder of .txt files, or .jsonl (text in --text-field)' },
  ...TEXT_FIELD_FLAGS,
  tokenizer: { type: 'string', default: BUNDLED_TOKENIZER_PATH, describe: 'SentencePiece .model file' },
  out: { type: 'string', default: DEFAULT_PREPARED_DIR, describe: 'output directory' },
  'val-fraction': { type: 'number', default: 0.05, describe: 'share of documents held out for validation' },
  seed: { type: 'number', default: 0, describe: 'seed of the train/val document split' },
});

type PrepareArgs = ArgsOf<typeof PREPARE_FLAGS>;

/** Prepares a corpus; callers other than `arl prepare` may leave out the text field. */
export async function runPrepare(args: Omit<PrepareArgs, 'textField'> & Partial<PrepareArgs>): Promise<void> {
  const tokenizer = await Tokenizer.load(args.tokenizer);
  let lastReport = 0;
  const meta = await prepareCorpus({
    source: args.corpus,
    textField: args.textField,
    tokenizer,
    outDir: args.out,
    valFraction: args.valFraction,
    seed: args.seed,
    onProgress: (docs, tokens) => {
      if (process.stderr.isTTY && Date.now() - lastReport > 500) {
        lastReport = Date.now();
        process.stderr.write(`\rprepare: ${docs} documents, ${tokens.toLocaleString()} tokens`);
      }
    },
  });
  if (process.stderr.isTTY) process.stderr.write('\r\x1b[2K');
  const { train, val } = meta.splits;
  if (args.valFraction > 0 && isTextFile(args.corpus)) console.log(chalk.dim(`${args.corpus}: one .txt file, split into ${train.docs + val.docs} documents at blank lines`));
  console.log(
    `${chalk.green('prepared')} ${args.out}: train ${train.docs} docs / ${train.tokens.toLocaleString()} tokens, val ${val.docs} docs / ${val.tokens.toLocaleString()} tokens (vocab ${meta.vocabSize})`,
  );
}

export const prepareCommand = defineCommand({
  command: 'prepare',
  describe: 'Tokenize a corpus into binary train/val shards (split by document, streaming)',
  options: PREPARE_FLAGS,
  examples: [
    ['$0 prepare', 'prepare the bundled Brown corpus'],
    ['$0 prepare --corpus my-docs/ --out data/prepared/mine', 'prepare a folder of .txt files'],
    ['$0 prepare --corpus pages.jsonl --text-field content --out data/prepared/pages', 'JSON lines whose text is in "content"'],
  ],
  handler: runPrepare,
});
