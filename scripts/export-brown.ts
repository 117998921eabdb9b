/**
 * Writes the detokenized Brown corpus as SentencePiece training input: one paragraph per line
 * (spm_train reads one sentence per line, and newlines never occur inside a paragraph).
 * Usage: tsx scripts/export-brown.ts OUT.txt
 */
import { writeFileSync } from 'node:fs';
import { readBrownDocuments } from '../src/data/brown.ts';

const out = process.argv[2];
if (!out) {
  console.error('usage: tsx scripts/export-brown.ts OUT.txt');
  process.exit(2);
}
const lines: string[] = [];
for (const doc of readBrownDocuments()) lines.push(...doc.text.split('\n\n'));
writeFileSync(out, lines.join('\n') + '\n');
console.error(`wrote ${lines.length} paragraphs to ${out}`);
