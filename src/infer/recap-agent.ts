/**
 * ARL stage 2, the recap agent (methods.md section 2): a model trained on recap-augmented data emits
 * `<recap>` on its own, writes a recap, closes it and goes on; the recaps stay in context as memory.
 *
 * Decoding goes through a DecodeSession (one KV cache; with a DecodeBatch, agents over several inputs
 * run concurrently, their single tokens decoded in one step and their prompts run in shared forwards). Inside a recap `<recap>` and EOS
 * are masked, and `</recap>` is forced once the recap holds `maxRecapTokens` tokens; outside a recap
 * `</recap>` is masked.
 *
 * Context budget. W = the model's window. The context is always
 *     BOS + memory + recent text (+ the recap being written, if any),
 * where memory is the recaps the model was surest of (its probability of `<recap>` when it opened
 * each; the newest first among equals; one copy of a recap written again word for word), each with its
 * markers, in the order written, whose total fits in `recapBudget` tokens (the others are left out of
 * the context but still returned): recaps about filler, written with less confidence, do not push out
 * the one that holds a needle. Recent text
 * is the tail of the text read or generated so far (recaps excluded). While tokens fit, they are
 * appended to the KV cache as they come, so a recap sits inline where it was written. When the
 * next tokens would not fit, the context is rebuilt in that layout with `slack` positions left free,
 * the recent text taking all the rest: W - 1 - memory - (open recap) - slack tokens. Slack is
 * max(what the caller needs next, W/4), so a rebuild (one prefill of up to W tokens) happens at most
 * every W/4 tokens; for the answer the slack is exactly the question plus the answer's tokens.
 */
import { encodeContinuation, tokenizeDocument } from '../arl/document.ts';
import { UserError } from '../io/errors.ts';
import type { LlamaModel } from '../model/llama.ts';
import type { Tokenizer } from '../tokenizer/sentencepiece.ts';
import { DecodeSession, type DecodeBatch } from './decode-session.ts';
import { continuationText } from './generate.ts';
import { makeRng } from '../core/random.ts';
import { sampleToken, type SamplingOptions } from './sampling.ts';

export interface RecapAgentOptions extends SamplingOptions {
  /** Tokens of a recap, markers excluded; `</recap>` is forced after this many. */
  maxRecapTokens: number;
  /** Context tokens the kept recaps may take, markers included (default: half the window). */
  recapBudget?: number;
  /** Added to the `<recap>` logit outside recaps: 0 leaves the choice to the model. */
  recapBias: number;
  seed: number;
}

export const DEFAULT_RECAP_AGENT: RecapAgentOptions = { maxRecapTokens: 32, recapBias: 0, seed: 0, temperature: 0.8, topK: 40, topP: 0.95, greedy: false };

/** What one decoded token was. */
export type TokenKind = 'text' | 'recap-open' | 'recap' | 'recap-close';

export interface AgentStats {
  /** Times the context was rebuilt (recaps + recent text) because the window was full. */
  rebuilds: number;
  /** Longest context the model saw, tokens. */
  maxContext: number;
  /** Recaps left out of the context because the memory budget was full. */
  recapsOutOfContext: number;
  /** Tokens run through the model several at a time (read runs and rebuilt contexts), and the seconds awaited for them. */
  prefilledTokens: number;
  prefillSeconds: number;
  /** Tokens decoded one at a time (recaps, answers), and the seconds awaited for them (with a DecodeBatch, steps shared with other inputs). */
  decodedTokens: number;
  decodeSeconds: number;
}

/** The largest logit and the sum of exp(logit - largest): the softmax's normaliser, computed stably. */
function softmaxNormaliser(logits: ArrayLike<number>): { max: number; total: number } {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]);
  let total = 0;
  for (let i = 0; i < logits.length; i++) total += Math.exp(logits[i] - max);
  return { max, total };
}

/** Softmax probability of `id` under `logits`. */
export function probabilityOf(logits: ArrayLike<number>, id: number): number {
  const { max, total } = softmaxNormaliser(logits);
  return Math.exp(logits[id] - max) / total;
}

/** log softmax(logits)[id]. */
function logProbabilityOf(logits: ArrayLike<number>, id: number): number {
  const { max, total } = softmaxNormaliser(logits);
  return logits[id] - max - Math.log(total);
}

/** Where the agent's text and recaps stood (RecapAgent.mark), to go back to with rollback. */
export interface AgentMark {
  text: number;
  recaps: number;
}

/** The agent's state over one input: the KV cache, the recaps written, the recent text. */
export class RecapAgent {
  /** Every recap written, in order (token ids, markers excluded). */
  readonly recaps: number[][] = [];
  /** P(`<recap>`) when each recap was opened (same order as `recaps`): the memory keeps the highest first. */
  readonly confidence: number[] = [];
  private openConfidence = 1;
  readonly stats: AgentStats = { rebuilds: 0, maxContext: 0, recapsOutOfContext: 0, prefilledTokens: 0, prefillSeconds: 0, decodedTokens: 0, decodeSeconds: 0 };
  private readonly session: DecodeSession;
  private readonly window: number;
  private readonly recapBudget: number;
  private readonly rng: () => number;
  /** Text read or generated (no recaps); only its tail is ever in context. */
  private readonly text: number[] = [];
  /** Tokens in the KV cache, in order. */
  private context: number[] = [];
  /** The recap being written, or null. */
  private open: number[] | null = null;
  private logits: Float32Array | null = null;

  constructor(private readonly model: LlamaModel, private readonly tokenizer: Tokenizer, private readonly opts: RecapAgentOptions, batch?: DecodeBatch) {
    this.window = model.config.maxSeq;
    this.recapBudget = opts.recapBudget ?? Math.floor(this.window / 2);
    if (!Number.isInteger(opts.maxRecapTokens) || opts.maxRecapTokens < 1) throw new UserError(`--max-recap-tokens must be a positive integer (got ${opts.maxRecapTokens})`);
    if (opts.maxRecapTokens + 2 > this.window / 4) throw new UserError(`--max-recap-tokens ${opts.maxRecapTokens} plus its two markers must fit in a quarter of the model's window (${this.window} tokens)`);
    if (!Number.isInteger(this.recapBudget) || this.recapBudget < opts.maxRecapTokens + 2 || this.recapBudget > this.window / 2) {
      throw new UserError(`--recap-budget must be an integer from --max-recap-tokens + 2 = ${opts.maxRecapTokens + 2} to half the window (${Math.floor(this.window / 2)}); got ${this.recapBudget}`);
    }
    this.rng = makeRng(opts.seed);
    this.session = new DecodeSession(model, batch);
  }

  /** The tokens the model currently sees. */
  get contextIds(): readonly number[] {
    return this.context;
  }

  get inRecap(): boolean {
    return this.open !== null;
  }

  /** Probability of `<recap>` as the next token, as the model gives it (no bias). */
  recapProbability(): number {
    return probabilityOf(this.nextLogits(), this.tokenizer.recapOpenId);
  }

  /**
   * Reads text tokens into the context, keeping room for `reserve` more tokens after them
   * (rebuilding the context when they do not fit). `ids` must fit the window with the memory.
   */
  async read(ids: readonly number[], reserve = 0): Promise<void> {
    for (const id of ids) this.text.push(id);
    await this.advance(ids, reserve);
  }

  /**
   * Decodes up to `maxTokens` tokens (recap tokens included; a recap cut off by the limit is
   * closed), stopping after a text token in `stopIds`. With `untilRecapClosed`, stops once a
   * recap opened by this call is closed. Returns the tokens in order with their kinds.
   */
  async decode(maxTokens: number, o: { stopIds?: number[]; untilRecapClosed?: boolean; onToken?: (id: number, kind: TokenKind) => void } = {}): Promise<{ id: number; kind: TokenKind }[]> {
    const out: { id: number; kind: TokenKind }[] = [];
    const emit = async (id: number): Promise<TokenKind> => {
      const kind = this.accept(id);
      out.push({ id, kind });
      o.onToken?.(id, kind);
      await this.advance([id], 0);
      return kind;
    };
    while (out.length < maxTokens) {
      const kind = await emit(this.choose());
      if (kind === 'recap-close' && o.untilRecapClosed) return out;
      if (kind === 'text' && o.stopIds?.includes(out[out.length - 1].id)) return out;
    }
    if (this.open) await emit(this.tokenizer.recapCloseId);
    return out;
  }

  /** Opens a recap here and lets the model write it (closed at the cap); returns its token ids. */
  async writeRecap(): Promise<number[]> {
    this.accept(this.tokenizer.recapOpenId);
    await this.advance([this.tokenizer.recapOpenId], 0);
    await this.decode(this.opts.maxRecapTokens + 1, { untilRecapClosed: true });
    return this.recaps[this.recaps.length - 1];
  }

  /** Where the text and the recaps stand now, outside a recap. */
  mark(): AgentMark {
    if (this.open) throw new Error('the recap agent cannot mark its state inside a recap');
    return { text: this.text.length, recaps: this.recaps.length };
  }

  /** Forgets the text and recaps that came after `mark`; the context is laid out anew by the next rebuild. */
  rollback(mark: AgentMark): void {
    this.text.length = mark.text;
    this.recaps.length = mark.recaps;
    this.confidence.length = mark.recaps;
    this.open = null;
    this.logits = null;
  }

  /** log P(`ids` | the context), the tokens read in as text one by one (no recap can open between them). */
  async scoreText(ids: readonly number[]): Promise<number> {
    let total = 0;
    for (const id of ids) {
      total += logProbabilityOf(this.nextLogits(), id);
      await this.read([id]);
    }
    return total;
  }

  /** Rebuilds the context now with `slack` free positions (e.g. for a question and its answer). */
  async rebuild(slack: number): Promise<void> {
    const layout = this.layout(slack);
    this.stats.rebuilds++;
    this.context = layout;
    this.logits = await this.timed(layout.length, () => this.session.restart(layout));
    this.stats.maxContext = Math.max(this.stats.maxContext, layout.length);
  }

  dispose(): void {
    this.session.dispose();
  }

  private nextLogits(): Float32Array {
    if (!this.logits) throw new Error('the recap agent has read nothing yet');
    return this.logits;
  }

  /** The next token under the recap constraints (see the file comment). */
  private choose(): number {
    const logits = Float32Array.from(this.nextLogits());
    const { recapOpenId, recapCloseId } = this.tokenizer;
    if (this.open) {
      if (this.open.length >= this.opts.maxRecapTokens) return recapCloseId;
      logits[recapOpenId] = -Infinity;
      logits[this.model.config.eosId] = -Infinity;
    } else {
      logits[recapCloseId] = -Infinity;
      logits[recapOpenId] += this.opts.recapBias;
    }
    return sampleToken(logits, this.opts, this.rng);
  }

  /** Updates text / recap state for a token about to enter the context. */
  private accept(id: number): TokenKind {
    const { recapOpenId, recapCloseId } = this.tokenizer;
    if (this.open) {
      if (id === recapCloseId) {
        this.recaps.push(this.open);
        this.confidence.push(this.openConfidence);
        this.open = null;
        return 'recap-close';
      }
      this.open.push(id);
      return 'recap';
    }
    if (id === recapOpenId) {
      this.openConfidence = this.logits ? probabilityOf(this.logits, recapOpenId) : 1;
      this.open = [];
      return 'recap-open';
    }
    this.text.push(id);
    return 'text';
  }

  /** Feeds `ids` (already accepted) to the model: appended when they fit with `reserve` to spare, else by a rebuild. */
  private async advance(ids: readonly number[], reserve: number): Promise<void> {
    if (this.logits && this.context.length + ids.length + reserve <= this.window) {
      this.context.push(...ids);
      this.logits = await this.timed(ids.length, () => this.session.append([...ids]));
      this.stats.maxContext = Math.max(this.stats.maxContext, this.context.length);
      return;
    }
    await this.rebuild(Math.max(reserve, Math.ceil(this.window / 4)));
  }

  /** Runs `forward` (`tokens` tokens into the cache), counting its tokens and the seconds awaited by kind (one token: decoded). */
  private async timed(tokens: number, forward: () => Promise<Float32Array>): Promise<Float32Array> {
    const start = performance.now();
    const logits = await forward();
    const seconds = (performance.now() - start) / 1000;
    if (tokens === 1) {
      this.stats.decodedTokens++;
      this.stats.decodeSeconds += seconds;
    } else {
      this.stats.prefilledTokens += tokens;
      this.stats.prefillSeconds += seconds;
    }
    return logits;
  }

  /** BOS + the surest distinct recaps that fit the memory budget + the recent text + the open recap, leaving `slack` free. */
  private layout(slack: number): number[] {
    const { recapOpenId, recapCloseId, bosId } = this.tokenizer;
    const openPart = this.open ? [recapOpenId, ...this.open] : [];
    const room = this.window - 1 - slack - openPart.length;
    if (room < 0) throw new UserError(`the model's window of ${this.window} tokens cannot hold ${slack} more tokens besides the recap in progress; use a shorter question or --max-new-tokens`);
    const byConfidence = this.recaps.map((_, k) => k).sort((a, b) => this.confidence[b]! - this.confidence[a]! || b - a);
    const kept: number[] = [];
    const keptText = new Set<string>();
    let used = 0;
    for (const k of byConfidence) {
      const size = this.recaps[k]!.length + 2;
      const text = this.recaps[k]!.join();
      // A recap written again word for word adds nothing: one copy stays, the room goes to the others.
      if (used + size > Math.min(this.recapBudget, room) || keptText.has(text)) continue;
      kept.push(k);
      keptText.add(text);
      used += size;
    }
    const memory = kept.sort((a, b) => a - b).map((k) => [recapOpenId, ...this.recaps[k]!, recapCloseId]);
    this.stats.recapsOutOfContext = this.recaps.length - memory.length;
    const recent = this.text.slice(Math.max(0, this.text.length - (room - used)));
    return [bosId, ...memory.flat(), ...(room - used > 0 ? recent : []), ...openPart];
  }
}

export interface AnswerOptions {
  agent: RecapAgentOptions;
  /** Write a recap at a paragraph end when P(`<recap>`) reaches this; above 1 never recaps (the baseline). */
  recapThreshold: number;
  maxAnswerTokens: number;
  /** Append the question as given (already formatted by the caller) instead of "\n\nQuestion: ...\nAnswer:". */
  rawQuestion?: boolean;
  /** Decode in this batch's row (answers to several inputs awaited together share decode steps). */
  batch?: DecodeBatch;
  /** Also score this answer: its log-probability after the same context and question (AnswerResult.goldLogProb). */
  goldAnswer?: string;
  /**
   * With a threshold above 1 (no recap is ever written), read only the input's last window: the answer's context is
   * then that tail alone, the same tokens as after reading everything, so the answer is the same for a fraction of
   * the work. No recap probabilities are recorded.
   */
  tailOnly?: boolean;
}

export const DEFAULT_ANSWER: AnswerOptions = { agent: { ...DEFAULT_RECAP_AGENT, greedy: true }, recapThreshold: 0.5, maxAnswerTokens: 32 };

export interface AnswerResult {
  answer: string;
  recaps: string[];
  /** P(`<recap>`) at each paragraph end, in order. */
  recapProbabilities: number[];
  paragraphs: number;
  inputTokens: number;
  stats: AgentStats;
  /** log P(goldAnswer | the context the answer was decoded from), where asked for. */
  goldLogProb?: number;
}

/**
 * Input is read in runs of at most W/8 tokens: with the memory at most W/2 and the slack W/4, a
 * rebuilt context has room for more than W/8 tokens of recent text, so no run is ever cut.
 */
function maxRunTokens(window: number): number {
  return Math.max(1, Math.floor(window / 8));
}

/** Paragraphs of `input` as token runs (split further into runs of at most `maxRun` tokens), the whole-text tokenization of ARL's steps. */
export function paragraphRuns(input: string, tokenizer: Tokenizer, maxRun: number): { runs: number[][]; paragraphEnds: Set<number>; tokens: number } {
  const { tokens, paragraphStarts } = tokenizeDocument(input, tokenizer);
  const bounds = [1, ...paragraphStarts, tokens.length];
  const runs: number[][] = [];
  const paragraphEnds = new Set<number>();
  for (let p = 0; p + 1 < bounds.length; p++) {
    for (let start = bounds[p]; start < bounds[p + 1]; start += maxRun) runs.push(tokens.slice(start, Math.min(start + maxRun, bounds[p + 1])));
    paragraphEnds.add(runs.length - 1);
  }
  return { runs, paragraphEnds, tokens: tokens.length - 1 };
}

/** The first of the runs that, with all after it, hold at least `tokens` tokens (0 if all of them hold fewer). */
function firstRunOfTail(runs: readonly number[][], tokens: number): number {
  let held = 0;
  for (let index = runs.length - 1; index >= 0; index--) {
    held += runs[index].length;
    if (held >= tokens) return index;
  }
  return 0;
}

/**
 * Reads `input` paragraph by paragraph; at each paragraph end the model writes a recap when its
 * probability of `<recap>` reaches the threshold. Then answers `question` greedily from the
 * recaps + recent text + "\n\nQuestion: ...\nAnswer:"; the answer is its first line.
 */
export async function answerWithRecaps(model: LlamaModel, tokenizer: Tokenizer, input: string, question: string, opts: AnswerOptions = DEFAULT_ANSWER): Promise<AnswerResult> {
  if (input.trim() === '') throw new UserError('the input is empty; pass a file with text');
  const prompt = encodeContinuation(opts.rawQuestion ? question : `\n\nQuestion: ${question.trim()}\nAnswer:`, tokenizer);
  const answerSlack = prompt.length + opts.maxAnswerTokens;
  if (answerSlack + 1 > model.config.maxSeq) {
    throw new UserError(`the question (${prompt.length} tokens) plus --max-new-tokens ${opts.maxAnswerTokens} does not fit the model's window of ${model.config.maxSeq} tokens`);
  }
  const agent = new RecapAgent(model, tokenizer, opts.agent, opts.batch);
  try {
    const recapRoom = opts.agent.maxRecapTokens + 2;
    const { runs, paragraphEnds, tokens } = paragraphRuns(input, tokenizer, maxRunTokens(model.config.maxSeq));
    const recapProbabilities: number[] = [];
    if (opts.tailOnly && !(opts.recapThreshold > 1)) throw new Error(`tailOnly needs a recap threshold above 1 (got ${opts.recapThreshold})`);
    const first = opts.tailOnly ? firstRunOfTail(runs, model.config.maxSeq) : 0;
    for (const [index, run] of runs.entries()) {
      if (index < first) continue;
      await agent.read(run, recapRoom);
      if (opts.tailOnly || !paragraphEnds.has(index)) continue;
      const p = agent.recapProbability();
      recapProbabilities.push(p);
      if (p >= opts.recapThreshold) await agent.writeRecap();
    }
    const beforeAnswer = agent.mark();
    const answerContext = async () => {
      await agent.rebuild(answerSlack);
      await agent.read(prompt, opts.maxAnswerTokens);
    };
    await answerContext();
    const decoded = await agent.decode(opts.maxAnswerTokens, { stopIds: [model.config.eosId] });
    const answerIds = decoded.filter((t) => t.kind === 'text' && t.id !== model.config.eosId).map((t) => t.id);
    const answer = continuationText(tokenizer, prompt, answerIds).trim().split('\n')[0].trim();
    const recaps = agent.recaps.map((r) => tokenizer.decode(r).trim());
    const stats = { ...agent.stats }; // the work of answering, not of scoring the gold answer
    let goldLogProb: number | undefined;
    if (opts.goldAnswer !== undefined) {
      // The same context again (the answer and any recap written while answering forgotten), the gold answer read
      // in after it as it follows the question after a space.
      agent.rollback(beforeAnswer);
      await answerContext();
      goldLogProb = await agent.scoreText(tokenizer.encode(opts.goldAnswer.trim()));
    }
    return {
      answer,
      recaps,
      recapProbabilities,
      paragraphs: paragraphEnds.size,
      inputTokens: tokens,
      stats,
      ...(goldLogProb === undefined ? {} : { goldLogProb }),
    };
  } finally {
    agent.dispose();
  }
}

export interface RecapGeneration {
  /** Every new token in order, recaps and their markers included. */
  ids: number[];
  /** The new text without the recaps. */
  text: string;
  recaps: string[];
  stats: AgentStats;
}

/**
 * Continues `prompt` (read like an input: any length, in runs) for up to `maxNewTokens` tokens,
 * recaps included; the model may open a recap at any step (see RecapAgent for the constraints).
 */
export async function generateWithRecaps(
  model: LlamaModel,
  tokenizer: Tokenizer,
  prompt: string,
  o: RecapAgentOptions & { maxNewTokens: number; stopIds: number[]; onToken?: (id: number, kind: TokenKind) => void },
): Promise<RecapGeneration> {
  const agent = new RecapAgent(model, tokenizer, o);
  try {
    const { runs } = paragraphRuns(prompt, tokenizer, maxRunTokens(model.config.maxSeq));
    for (const run of runs) await agent.read(run);
    if (runs.length === 0) await agent.read([]);
    const decoded = await agent.decode(o.maxNewTokens, { stopIds: o.stopIds, onToken: o.onToken });
    const promptIds = runs.flat();
    const textIds = decoded.filter((t) => t.kind === 'text').map((t) => t.id);
    return {
      ids: decoded.map((t) => t.id),
      text: continuationText(tokenizer, promptIds, textIds),
      recaps: agent.recaps.map((r) => tokenizer.decode(r).trim()),
      stats: { ...agent.stats },
    };
  } finally {
    agent.dispose();
  }
}
