/**
 * Answer-scoring metrics of LongBench and RULER, ported from the official Python code so scores match:
 * THUDM/LongBench `LongBench/metrics.py` (and the `rouge` 1.0.1 and `fuzzywuzzy` packages it calls) and
 * NVIDIA/RULER `scripts/eval/synthetic/constants.py`. Python's string semantics are reproduced where they
 * differ from JavaScript's (Unicode \w and whitespace, code-point lengths, round-half-even).
 *
 * One documented deviation: the Chinese metrics segment text with jieba in the original; here every Han
 * character is its own token (runs of other letters and digits stay whole), so scores on the Chinese datasets
 * are close to, not identical with, the official ones.
 */

/** The characters Python's `str.split()` splits on (str.isspace); JavaScript's \s differs (\uFEFF, \x1c-\x1f, \x85). */
const PY_WHITESPACE = /[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/u;

/** Python's `s.split()`: split on whitespace runs, dropping empty strings at either end. */
export function pySplit(text: string): string[] {
  return text.split(PY_WHITESPACE).filter((part) => part.length > 0);
}

/** Python's `string.punctuation`. */
const ASCII_PUNCTUATION = new Set('!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~');
/** The extra punctuation of LongBench's normalize_zh_answer. */
const CHINESE_PUNCTUATION = new Set(
  '！？｡。＂＃＄％＆＇（）＊＋，－／：；＜＝＞＠［＼］＾＿｀｛｜｝～｟｠｢｣､、〃》「」『』【】〔〕〖〗〘〙〚〛〜〝〞〟〰〾〿–—‘’‛“”„‟…‧﹏.',
);

/** Articles between Python-style (Unicode) word boundaries: JavaScript's \b only knows ASCII word characters. */
const ARTICLES = /(?<![\p{L}\p{N}_])(?:a|an|the)(?![\p{L}\p{N}_])/gu;

/** LongBench normalize_answer: lowercase, drop ASCII punctuation, replace articles by spaces, collapse whitespace. */
export function normalizeAnswer(text: string): string {
  const noPunctuation = Array.from(text.toLowerCase()).filter((ch) => !ASCII_PUNCTUATION.has(ch)).join('');
  return pySplit(noPunctuation.replace(ARTICLES, ' ')).join(' ');
}

/** LongBench normalize_zh_answer: lowercase, drop ASCII and Chinese punctuation, remove all whitespace. */
export function normalizeZhAnswer(text: string): string {
  const kept = Array.from(text.toLowerCase()).filter((ch) => !ASCII_PUNCTUATION.has(ch) && !CHINESE_PUNCTUATION.has(ch));
  return pySplit(kept.join('')).join('');
}

/** Stand-in for jieba.cut: each Han character, each run of other letters/digits, each other visible character. */
const CHINESE_TOKEN = /\p{Script=Han}|(?:(?!\p{Script=Han})[\p{L}\p{N}])+|\S/gu;

export function segmentChinese(text: string): string[] {
  return text.match(CHINESE_TOKEN) ?? [];
}

/** LongBench f1_score: F1 of the multiset overlap of two token lists (0 when nothing overlaps). */
export function tokenF1(prediction: readonly string[], groundTruth: readonly string[]): number {
  const remaining = new Map<string, number>();
  for (const token of groundTruth) remaining.set(token, (remaining.get(token) ?? 0) + 1);
  let numSame = 0;
  for (const token of prediction) {
    const left = remaining.get(token) ?? 0;
    if (left > 0) {
      numSame++;
      remaining.set(token, left - 1);
    }
  }
  if (numSame === 0) return 0;
  const precision = numSame / prediction.length;
  const recall = numSame / groundTruth.length;
  return (2 * precision * recall) / (precision + recall);
}

export function qaF1Score(prediction: string, groundTruth: string): number {
  return tokenF1(pySplit(normalizeAnswer(prediction)), pySplit(normalizeAnswer(groundTruth)));
}

export function qaF1ZhScore(prediction: string, groundTruth: string): number {
  const tokens = (text: string) => segmentChinese(text).map(normalizeZhAnswer).filter((token) => token.length > 0);
  return tokenF1(tokens(prediction), tokens(groundTruth));
}

/**
 * ROUGE-L F as `Rouge().get_scores([prediction], [groundTruth], avg=True)["rouge-l"]["f"]` computes it, wrapped
 * like LongBench's rouge_score (an exception from the package gives 0). The package's quirks are kept: both texts
 * are split into "sentences" at every ".", words are split on single spaces, and with its default exclusive=True
 * the summary-level LCS counts distinct words: m and n are the numbers of distinct reference and candidate words,
 * and the overlap is the number of distinct words in the union of the LCS of every (reference, candidate)
 * sentence pair. Deviation: the package reconstructs each LCS recursively, so a sentence pair of more than
 * about 1000 words in total overflows Python's recursion limit and scores 0 officially; here it is scored.
 */
export function rougeScore(prediction: string, groundTruth: string): number {
  const candidate = rougeSentences(prediction);
  const reference = rougeSentences(groundTruth);
  if (candidate.length === 0 || reference.length === 0) return 0; // the package raises ValueError
  const m = new Set(reference.flat()).size;
  const n = new Set(candidate.flat()).size;
  const union = new Set<string>();
  for (const refWords of reference) {
    for (const candWords of candidate) for (const word of lcsWords(refWords, candWords)) union.add(word);
  }
  const recall = union.size / m;
  const precision = union.size / n;
  return 2.0 * ((precision * recall) / (precision + recall + 1e-8));
}

/** The package's sentence split: `[" ".join(s.split()) for s in text.split(".") if len(s) > 0]`, then words. */
function rougeSentences(text: string): string[][] {
  return text
    .split('.')
    .filter((sentence) => sentence.length > 0)
    .map((sentence) => pySplit(sentence).join(' ').split(' '));
}

/** The words of the LCS of x and y, reconstructed backwards with the package's tie-break (`_recon_lcs`). */
function lcsWords(x: readonly string[], y: readonly string[]): string[] {
  const width = y.length + 1;
  const table = new Uint32Array((x.length + 1) * width);
  for (let i = 1; i <= x.length; i++) {
    for (let j = 1; j <= y.length; j++) {
      table[i * width + j] =
        x[i - 1] === y[j - 1]
          ? table[(i - 1) * width + j - 1]! + 1
          : Math.max(table[(i - 1) * width + j]!, table[i * width + j - 1]!);
    }
  }
  const words: string[] = [];
  let i = x.length;
  let j = y.length;
  while (i > 0 && j > 0) {
    if (x[i - 1] === y[j - 1]) {
      words.push(x[i - 1]!);
      i--;
      j--;
    } else if (table[(i - 1) * width + j]! > table[i * width + j - 1]!) {
      i--;
    } else {
      j--;
    }
  }
  return words;
}

/** LongBench rouge_zh_score: ROUGE-L over space-joined Chinese tokens. */
export function rougeZhScore(prediction: string, groundTruth: string): number {
  return rougeScore(segmentChinese(prediction).join(' '), segmentChinese(groundTruth).join(' '));
}

/**
 * LongBench classification_score: the classes named in the prediction compete; a class that is a substring of
 * the true class (but not equal to it) is dropped. Python's loop removes items from the list it iterates over,
 * which skips the item after each removal; the index loop below does the same on purpose.
 */
export function classificationScore(prediction: string, groundTruth: string, allClasses: readonly string[]): number {
  const matches = allClasses.filter((name) => prediction.includes(name));
  for (let i = 0; i < matches.length; i++) {
    const term = matches[i]!;
    if (groundTruth.includes(term) && term !== groundTruth) matches.splice(matches.indexOf(term), 1);
  }
  return matches.includes(groundTruth) ? 1.0 / matches.length : 0.0;
}

/** Python's `re.findall(r"\d+", text)`: \d matches any Unicode decimal digit in Python 3. */
function findNumbers(text: string): string[] {
  return text.match(/\p{Nd}+/gu) ?? [];
}

/** Share of the numbers in the prediction that equal `target` (0 when it has none). */
function shareOfNumbersEqualTo(prediction: string, target: string): number {
  const numbers = findNumbers(prediction);
  if (numbers.length === 0) return 0.0;
  return numbers.filter((number) => number === target).length / numbers.length;
}

export function countScore(prediction: string, groundTruth: string): number {
  return shareOfNumbersEqualTo(prediction, groundTruth);
}

export const RETRIEVAL_ANSWER = /Paragraph (\p{Nd}+)/u;
export const RETRIEVAL_ZH_ANSWER = /段落(\p{Nd}+)/u;

/** The paragraph number in a retrieval answer such as "Paragraph 12"; official code fails on answers without one. */
function paragraphNumber(groundTruth: string, pattern: RegExp): string {
  const match = pattern.exec(groundTruth);
  if (!match) throw new Error(`retrieval answer "${groundTruth}" does not match ${pattern.source}`);
  return match[1]!;
}

export function retrievalScore(prediction: string, groundTruth: string): number {
  return shareOfNumbersEqualTo(prediction, paragraphNumber(groundTruth, RETRIEVAL_ANSWER));
}

export function retrievalZhScore(prediction: string, groundTruth: string): number {
  return shareOfNumbersEqualTo(prediction, paragraphNumber(groundTruth, RETRIEVAL_ZH_ANSWER));
}

/** LongBench code_sim_score: fuzz.ratio of the first generated line that is not a comment or a code fence. */
export function codeSimScore(prediction: string, groundTruth: string): number {
  const lines = prediction.replace(/^\n+/, '').split('\n');
  const firstCodeLine = lines.find((line) => !line.includes('`') && !line.includes('#') && !line.includes('//')) ?? '';
  return fuzzRatio(firstCodeLine, groundTruth) / 100;
}

/**
 * fuzzywuzzy's fuzz.ratio without python-Levenshtein (LongBench's requirements do not install it): equal strings
 * score 100, an empty one 0, otherwise round(100 * difflib.SequenceMatcher(None, a, b).ratio()).
 */
export function fuzzRatio(a: string, b: string): number {
  if (a === b) return 100;
  if (a.length === 0 || b.length === 0) return 0;
  return pythonRound(100 * sequenceMatcherRatio(a, b));
}

/** difflib.SequenceMatcher(None, a, b).ratio(): 2 * matched / total length, over code points. */
export function sequenceMatcherRatio(a: string, b: string): number {
  const aChars = Array.from(a);
  const bChars = Array.from(b);
  const total = aChars.length + bChars.length;
  return total > 0 ? (2.0 * countMatchingCharacters(aChars, bChars)) / total : 1.0;
}

/** Sum of the sizes of difflib's matching blocks: the longest match, then recursively left and right of it. */
function countMatchingCharacters(a: readonly string[], b: readonly string[]): number {
  const positionsInB = indexWithAutojunk(b);
  let matched = 0;
  const queue: Array<[number, number, number, number]> = [[0, a.length, 0, b.length]];
  while (queue.length > 0) {
    const [alo, ahi, blo, bhi] = queue.pop()!;
    const [i, j, k] = findLongestMatch(a, b, positionsInB, alo, ahi, blo, bhi);
    if (k === 0) continue;
    matched += k;
    if (alo < i && blo < j) queue.push([alo, i, blo, j]);
    if (i + k < ahi && j + k < bhi) queue.push([i + k, ahi, j + k, bhi]);
  }
  return matched;
}

/**
 * difflib's b2j: positions of each element of b, minus "popular" elements (autojunk: when b has at least 200
 * elements, those occurring more than len(b) // 100 + 1 times), which then only join matches by extension.
 */
function indexWithAutojunk(b: readonly string[]): Map<string, number[]> {
  const positions = new Map<string, number[]>();
  b.forEach((element, j) => {
    const list = positions.get(element);
    if (list) list.push(j);
    else positions.set(element, [j]);
  });
  if (b.length >= 200) {
    const limit = Math.floor(b.length / 100) + 1;
    for (const [element, list] of positions) if (list.length > limit) positions.delete(element);
  }
  return positions;
}

/** difflib's find_longest_match with no junk function: earliest longest block, then extended on both sides. */
function findLongestMatch(
  a: readonly string[],
  b: readonly string[],
  positionsInB: Map<string, number[]>,
  alo: number,
  ahi: number,
  blo: number,
  bhi: number,
): [number, number, number] {
  let bestI = alo;
  let bestJ = blo;
  let bestSize = 0;
  let runEndingAt = new Map<number, number>(); // j -> length of the match ending at a[i-1], b[j]
  for (let i = alo; i < ahi; i++) {
    const next = new Map<number, number>();
    for (const j of positionsInB.get(a[i]!) ?? []) {
      if (j < blo) continue;
      if (j >= bhi) break;
      const k = (runEndingAt.get(j - 1) ?? 0) + 1;
      next.set(j, k);
      if (k > bestSize) {
        bestI = i - k + 1;
        bestJ = j - k + 1;
        bestSize = k;
      }
    }
    runEndingAt = next;
  }
  while (bestI > alo && bestJ > blo && a[bestI - 1] === b[bestJ - 1]) {
    bestI--;
    bestJ--;
    bestSize++;
  }
  while (bestI + bestSize < ahi && bestJ + bestSize < bhi && a[bestI + bestSize] === b[bestJ + bestSize]) bestSize++;
  return [bestI, bestJ, bestSize];
}

/**
 * Python's round(x, digits) for floats: rounds the exact binary value of x, ties to even (round(0.125, 2) is
 * 0.12, round(2.675, 2) is 2.67 because 2.675 is stored as 2.67499...). toFixed(100) gives that exact value.
 */
export function pythonRound(x: number, digits = 0): number {
  if (!Number.isFinite(x)) return x;
  const [whole, fraction] = Math.abs(x).toFixed(100).split('.') as [string, string];
  let kept = BigInt(whole + fraction.slice(0, digits));
  const rest = fraction.slice(digits);
  const aboveHalf = rest > '5'.padEnd(rest.length, '0');
  const exactlyHalf = rest === '5'.padEnd(rest.length, '0');
  if (aboveHalf || (exactlyHalf && kept % 2n === 1n)) kept += 1n;
  return (Math.sign(x) || 1) * (Number(kept) / 10 ** digits);
}

/** RULER string_match_all for one prediction: share of the references found in it, case-insensitively. */
export function stringMatchAll(prediction: string, references: readonly string[]): number {
  const text = prediction.toLowerCase();
  return references.filter((reference) => text.includes(reference.toLowerCase())).length / references.length;
}

/** RULER string_match_part for one prediction: 1 when any reference is found in it, case-insensitively. */
export function stringMatchPart(prediction: string, references: readonly string[]): number {
  const text = prediction.toLowerCase();
  return references.some((reference) => text.includes(reference.toLowerCase())) ? 1 : 0;
}
