/**
 * A second natural corpus, optional and outside git: the GNU Collaborative International Dictionary of English
 * (GCIDE, GPL v2 or later; Debian package dict-gcide, about 40 MB of text) as JSONL documents of dictionary
 * entries, each entry a paragraph of plain text. Use it as extra training text, e.g.
 *   apt-get install dict-gcide      (or: apt-get download dict-gcide && dpkg -x dict-gcide_*.deb /tmp/gcide)
 *   node --import tsx scripts/gcide-corpus.ts [DICTD_DIR] [OUT.jsonl]
 *   arl experiment --extra-corpus data/corpora/gcide.jsonl ...
 * Defaults: /usr/share/dictd and data/corpora/gcide.jsonl (git-ignored).
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { gunzipSync } from 'node:zlib';

const dictdDir = process.argv[2] ?? '/usr/share/dictd';
const out = process.argv[3] ?? 'data/corpora/gcide.jsonl';
const ENTRIES_PER_DOCUMENT = 200;

/** dictd's index numbers: base 64 over A-Z a-z 0-9 + /, most significant digit first. */
function decodeNumber(text: string): number {
  const digits = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  let n = 0;
  for (const c of text) n = n * 64 + digits.indexOf(c);
  return n;
}

/** An entry as plain text: pronunciation marks, braces and source notes such as "[1913 Webster]" removed. */
function cleanEntry(entry: string): string {
  return entry
    .replace(/\[[^\]]*(Webster|WordNet|PJC|Century)[^\]]*\]/g, ' ')
    .replace(/\\[^\\]*\\/g, ' ')
    .replace(/[{}]/g, '')
    .replace(/\s+/g, ' ')
    .trim();
}

let data: Buffer;
let index: string;
try {
  data = gunzipSync(readFileSync(join(dictdDir, 'gcide.dict.dz')));
  index = readFileSync(join(dictdDir, 'gcide.index'), 'utf8');
} catch (err) {
  process.stderr.write(`gcide-corpus: cannot read ${dictdDir}/gcide.dict.dz and gcide.index (${(err as Error).message}); install dict-gcide or pass the folder holding them\n`);
  process.exit(2);
}
const spans = new Map<number, number>();
for (const line of index.split('\n')) {
  const [word, offset, length] = line.split('\t');
  if (!word || !offset || !length || word.startsWith('00-database')) continue;
  spans.set(decodeNumber(offset), decodeNumber(length));
}
const entries = [...spans].sort((a, b) => a[0] - b[0]).map(([offset, length]) => cleanEntry(data.subarray(offset, offset + length).toString('utf8'))).filter((e) => e.length > 20 && !e.startsWith('00-database'));
const lines: string[] = [];
for (let i = 0; i < entries.length; i += ENTRIES_PER_DOCUMENT) {
  lines.push(JSON.stringify({ id: `gcide:${i / ENTRIES_PER_DOCUMENT}`, text: entries.slice(i, i + ENTRIES_PER_DOCUMENT).join('\n\n') }));
}
mkdirSync(dirname(out), { recursive: true });
writeFileSync(`${out}.tmp`, `${lines.join('\n')}\n`);
renameSync(`${out}.tmp`, out);
process.stderr.write(`gcide-corpus: ${entries.length} entries in ${lines.length} documents -> ${out}\n`);
