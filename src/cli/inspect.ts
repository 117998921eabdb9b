/** `arl inspect`: an HTML page of a corpus's key tokens, segments and recaps (src/arl/inspect-report.ts). */
import chalk from 'chalk';
import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { readInspectInput, renderInspectReport } from '../arl/inspect-report.ts';
import { readKeyTokenSummary } from '../arl/relevant-segment.ts';
import { writeFileAtomic } from '../io/atomic.ts';
import { UserError } from '../io/errors.ts';
import { BUNDLED_TOKENIZER_PATH, Tokenizer } from '../tokenizer/sentencepiece.ts';
import { defineCommand } from './options.ts';

export const inspectCommand = defineCommand({
  command: 'inspect',
  describe: 'Write one self-contained HTML page showing the key tokens (by LSG), their segments and the recaps of a corpus',
  options: {
    keytokens: { type: 'string', demandOption: true, describe: 'output folder of `arl keytokens`' },
    segments: { type: 'string', describe: 'folder holding segments.jsonl (default: the --keytokens folder)' },
    recaps: { type: 'string', describe: 'folder holding recaps.jsonl (default: the --segments folder)' },
    tokenizer: { type: 'string', describe: "SentencePiece model step 1 used (default: the step-1 checkpoint's, else the bundled one)" },
    out: { type: 'string', demandOption: true, describe: 'the .html file to write (an existing folder: report.html in it)' },
    'max-docs': { type: 'number', describe: 'show only the first N documents' },
  },
  examples: [['$0 inspect --keytokens checkpoints/demo-arl/recap-data --out checkpoints/demo-arl/inspect.html', 'the data of npm run demo:arl; open inspect.html in a browser']],
  handler: async (args) => {
    const out = existsSync(args.out) && statSync(args.out).isDirectory() ? join(args.out, 'report.html') : args.out;
    const keyTokensDir = resolve(args.keytokens);
    const summary = readKeyTokenSummary(keyTokensDir);
    const checkpointTokenizer = join(String(summary.checkpoint), 'tokenizer.model');
    const tokenizerPath = args.tokenizer ?? (existsSync(checkpointTokenizer) ? checkpointTokenizer : BUNDLED_TOKENIZER_PATH);
    const tokenizer = await Tokenizer.load(tokenizerPath);
    if (tokenizer.sha256 !== summary.tokenizer) {
      throw new UserError(`${tokenizerPath}: not the tokenizer ${keyTokensDir} was made with (sha256 ${String(summary.tokenizer).slice(0, 12)}…); pass --tokenizer with the one step 1 used`);
    }
    const segmentsDir = resolve(args.segments ?? keyTokensDir);
    const input = readInspectInput(keyTokensDir, summary, segmentsDir, resolve(args.recaps ?? segmentsDir));
    if (args.maxDocs !== undefined) {
      const shown = new Set(input.documents.slice(0, args.maxDocs).map((d) => d.doc));
      input.documents = input.documents.filter((d) => shown.has(d.doc));
      input.keyTokens = input.keyTokens.filter((k) => shown.has(k.doc));
      input.segments = input.segments.filter((s) => shown.has(s.doc));
      input.recaps = input.recaps.filter((r) => shown.has(r.doc));
    }
    writeFileAtomic(out, renderInspectReport(input, tokenizer));
    console.log(`${chalk.green('wrote')} ${out}: ${input.documents.length} documents, ${input.keyTokens.length} key tokens, ${input.segments.length} segments, ${input.recaps.length} recaps`);
  },
});
