/**
 * The recappers of ARL step 3 (recap.ts): an LLM given the recap prompt (an OpenAI-compatible server
 * or a local GGUF), and `extractive`, which needs no LLM: it keeps the sentence(s) of c* whose
 * insertion before the key tokens' short context most raises their log-prob under our own model.
 * Extractive recaps are copied text, not written summaries; they are named `extractive` in every
 * output so they are never mistaken for LLM recaps.
 */
import { resolve } from 'node:path';
import { type ChatModel, type ChatOptions, CHAT_DEFAULTS, openChatModel } from '../io/chat.ts';
import { weightsSha256 } from '../io/checkpoint.ts';
import { sha256File } from '../io/sha256.ts';
import type { LlamaModel } from '../model/llama.ts';
import type { Tokenizer } from '../tokenizer/sentencepiece.ts';
import { loadRecapPrompt, type RecapItem, type Recapper, type RecapperName, type RecapPrompt, renderRecapPrompt } from './recap.ts';
import type { Segment } from './relevant-segment.ts';
import { nextTokenLogProbs, type ScoredSequence } from './scoring.ts';

/** The sentences of an item's segment, as token ranges clipped to it (the segment starts at a sentence start). */
export function segmentSentences(item: Pick<RecapItem, 'segmentStart' | 'segmentEnd' | 'sentenceStarts'>): Segment[] {
  const bounds = [item.segmentStart, ...item.sentenceStarts.filter((s) => s > item.segmentStart && s < item.segmentEnd), item.segmentEnd];
  return bounds.slice(0, -1).map((start, k) => ({ start, end: bounds[k + 1] }));
}

/**
 * Mean over the item's key tokens of log P(x_i | sentence + short context) - log P(x_i | short
 * context), per sentence: every row of all key tokens in one forward pass.
 */
export async function sentenceGains(model: LlamaModel, item: RecapItem, sentences: readonly Segment[]): Promise<Float64Array> {
  const rows: ScoredSequence[] = [];
  for (const pos of item.positions) {
    const shortContext = item.tokens.slice(pos - item.shortContext, pos);
    for (const prefix of [[], ...sentences.map((s) => item.tokens.slice(s.start, s.end))]) {
      const input = [...prefix, ...shortContext];
      rows.push({ input, offsets: [input.length - 1], nextTokens: [item.tokens[pos]] });
    }
  }
  const logProbs = await nextTokenLogProbs(model, rows);
  const gains = new Float64Array(sentences.length);
  const perKeyToken = sentences.length + 1;
  item.positions.forEach((_, k) => {
    const baseline = logProbs[k * perKeyToken];
    for (let s = 0; s < sentences.length; s++) gains[s] += (logProbs[k * perKeyToken + 1 + s] - baseline) / item.positions.length;
  });
  return gains;
}

/**
 * Sentences kept for an extractive recap, in document order: the one with the largest gain, then
 * others with a positive gain, best first, while the total stays within `maxTokens`.
 */
export function chooseSentences(sentences: readonly Segment[], gains: ArrayLike<number>, maxTokens: number): Segment[] {
  const ranked = sentences.map((sentence, k) => ({ sentence, gain: gains[k] })).sort((a, b) => b.gain - a.gain);
  const chosen = [ranked[0].sentence];
  let used = ranked[0].sentence.end - ranked[0].sentence.start;
  for (const { sentence, gain } of ranked.slice(1)) {
    const length = sentence.end - sentence.start;
    if (gain <= 0) break;
    if (used + length > maxTokens) continue;
    chosen.push(sentence);
    used += length;
  }
  return chosen.sort((a, b) => a.start - b.start);
}

export function extractiveRecapper(model: LlamaModel, tokenizer: Tokenizer, checkpointDir: string, weightsSha256: string, maxRecapTokens: number): Recapper {
  return {
    name: 'extractive',
    model: checkpointDir,
    identity: weightsSha256,
    promptSha256: null,
    concurrency: 1,
    input: (item) =>
      JSON.stringify({
        sentences: segmentSentences(item).map((s) => item.tokens.slice(s.start, s.end)),
        contexts: item.positions.map((pos) => item.tokens.slice(pos - item.shortContext, pos + 1)),
      }),
    recap: async (item) => {
      const sentences = segmentSentences(item).filter((s) => tokenizer.decode(item.tokens.slice(s.start, s.end)).trim() !== '');
      const chosen = sentences.length === 1 ? sentences : chooseSentences(sentences, await sentenceGains(model, item, sentences), maxRecapTokens);
      return tokenizer.decode(chosen.flatMap((s) => item.tokens.slice(s.start, s.end)));
    },
    dispose: async () => {},
  };
}

export function chatRecapper(chat: ChatModel, identity: string, prompt: RecapPrompt, maxRecapTokens: number, concurrency: number): Recapper {
  return {
    name: chat.backend,
    model: chat.model,
    identity,
    promptSha256: prompt.sha256,
    concurrency,
    input: (item) => renderRecapPrompt(prompt, item, maxRecapTokens),
    // LLM tokenizers spend fewer tokens per word than our small one: twice our cap leaves room, and capRecap trims.
    recap: (_, input) => chat.complete([{ role: 'user', content: input }], { maxTokens: 2 * maxRecapTokens + 16, temperature: 0 }),
    dispose: () => chat.dispose(),
  };
}

export interface RecapperOptions {
  name: RecapperName;
  tokenizer: Tokenizer;
  maxRecapTokens: number;
  /** The prompt template (LLM recappers; default data/prompts/recap.txt). */
  promptFile?: string;
  /** Client settings (LLM recappers); the backend is the recapper's name. */
  chat?: Omit<ChatOptions, 'backend'>;
  /** Our model and its checkpoint folder (extractive). */
  model?: LlamaModel;
  checkpointDir?: string;
}

export async function openRecapper(o: RecapperOptions): Promise<Recapper> {
  if (o.name === 'extractive') {
    if (!o.model || !o.checkpointDir) throw new Error('the extractive recapper needs the model and its checkpoint folder');
    const weightsSha = weightsSha256(resolve(o.checkpointDir));
    return extractiveRecapper(o.model, o.tokenizer, o.checkpointDir, weightsSha, o.maxRecapTokens);
  }
  const prompt = loadRecapPrompt(o.promptFile);
  const chatOptions: ChatOptions = { ...o.chat, backend: o.name };
  const chat = await openChatModel(chatOptions);
  // A GGUF's name says little about its weights (a re-export keeps it), so the cache keys on its bytes.
  const identity = o.name === 'llama-cpp' ? sha256File(resolve(chatOptions.gguf!)) : chat.model;
  return chatRecapper(chat, identity, prompt, o.maxRecapTokens, chatOptions.concurrency ?? CHAT_DEFAULTS.concurrency);
}
