/** `arl augment` (ARL step 4: recap-augmented data) and `arl recap-data` (steps 1-4 in one resumable command). */
import { join, resolve } from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { AUGMENT_FILES, augmentDocuments, type AugmentOptions, type AugmentTotals, DEFAULT_AUGMENT, keyTokenTokenizerPath } from '../arl/augment.ts';
import { BUNDLED_TOKENIZER_PATH, Tokenizer } from '../tokenizer/sentencepiece.ts';
import { answerCommand } from './answer.ts';

interface AugmentFlags {
  maxRecapsPerDoc: number;
  mix: number;
  seed: number;
  valFraction: number;
}

/** The flags of step 4 (shared by `arl augment` and `arl recap-data`). */
export function withAugmentFlags<T>(y: Argv<T>) {
  const d = DEFAULT_AUGMENT;
  return y
    .option('max-recaps-per-doc', { type: 'number', default: d.maxRecapsPerDoc, describe: 'recaps inserted per document at most, highest gain (summed over the key tokens sharing it) first' })
    .option('mix', { type: 'number', default: d.mix, describe: 'share of augmented documents in the shards: round(mix x documents) of those with recaps carry them, the rest go in unchanged' })
    .option('seed', { type: 'number', default: d.seed, describe: 'seeds which documents carry recaps and the train/val split' })
    .option('val-fraction', { type: 'number', default: d.valFraction, describe: 'share of documents in the val split (by document id, as arl prepare)' });
}

export function augmentOptionsFrom(args: AugmentFlags): AugmentOptions {
  return { maxRecapsPerDoc: args.maxRecapsPerDoc, mix: args.mix, seed: args.seed, valFraction: args.valFraction };
}

/** The lines `arl augment` and `arl recap-data` print about step 4. */
export function describeAugment(t: AugmentTotals, outDir: string): string[] {
  const percent = (x: number): string => `${(100 * x).toFixed(1)}%`;
  return [
    `${t.documents} documents, ${t.documents_with_recaps} with recaps; ${t.augmented_documents} written with them (${percent(t.augmented_share)}), ${t.documents - t.augmented_documents} unchanged`,
    `${t.recaps_inserted} recaps inserted of ${t.recaps_read} (dropped: ${t.recaps_dropped_over_cap} over the cap, ${t.recaps_dropped_no_boundary} with no sentence boundary after their segment, ${t.recaps_dropped_empty} empty); recap tokens ${t.recap_tokens} of ${t.tokens} (${percent(t.recap_tokens / Math.max(1, t.tokens))})`,
    `wrote ${join(outDir, AUGMENT_FILES.records)} and ${join(outDir, AUGMENT_FILES.prepared)} (train ${t.train.docs} docs / ${t.train.tokens} tokens, val ${t.val.docs} docs / ${t.val.tokens} tokens)`,
  ];
}

const augmentCommand: CommandModule = {
  command: 'augment',
  describe: 'ARL step 4: insert <recap> ... </recap> before key tokens; write augmented.jsonl and training shards mixed with the originals',
  builder: (y) =>
    withAugmentFlags(y)
      .option('keytokens', { type: 'string', demandOption: true, describe: 'folder of steps 1-3 (documents.jsonl, segments.jsonl, recaps.jsonl)' })
      .option('out', { type: 'string', describe: 'output folder (default: the --keytokens folder)' })
      .option('tokenizer', { type: 'string', describe: "SentencePiece model step 1 used (default: its checkpoint's, else the bundled one)" })
      .example('$0 augment --keytokens arl/brown --mix 0.5', 'half of the documents with recaps; then: arl train --init CKPT --data arl/brown/augmented-data'),
  handler: async (argv) => {
    const args = argv as unknown as AugmentFlags & { keytokens: string; out?: string; tokenizer?: string };
    const tokenizer = await Tokenizer.load(keyTokenTokenizerPath(args.keytokens, args.tokenizer) ?? BUNDLED_TOKENIZER_PATH);
    const outDir = resolve(args.out ?? args.keytokens);
    const totals = await augmentDocuments({ tokenizer, keyTokensDir: args.keytokens, outDir, options: augmentOptionsFrom(args) });
    for (const line of describeAugment(totals, outDir)) console.log(line);
  },
};

/** Helper B's ARL commands (steps 4 and 1-4, and the recap agent's `answer`), registered in main.ts. */
export const recapDataCommands: CommandModule[] = [augmentCommand, answerCommand];
