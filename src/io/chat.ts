/**
 * LLM chat clients: any OpenAI-compatible /v1/chat/completions server (vLLM, Ollama, llama.cpp's
 * server, OpenAI), or a local GGUF file through node-llama-cpp (chat-llama-cpp.ts, loaded only when
 * asked for, so the native library stays out of every other command).
 *
 * The server client bounds the requests in flight (one semaphore shared by all calls), aborts a call
 * after a timeout, and retries 429s, 5xx, timeouts, connection errors and unusable replies with
 * exponential backoff and full jitter, waiting as long as a Retry-After header asks. Other 4xx are
 * not retried. The API key is read from the environment at open time, kept in a closure, sent only
 * in the Authorization header, and scrubbed from every error message.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { checkPositiveIntegers, UserError } from './errors.ts';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface ChatModel {
  readonly backend: 'openai' | 'llama-cpp';
  /** Model name (server) or GGUF file name. */
  readonly model: string;
  complete(messages: ChatMessage[], opts: { maxTokens: number; temperature?: number }): Promise<string>;
  dispose(): Promise<void>;
}

export const CHAT_BACKENDS = ['openai', 'llama-cpp'] as const;
export type ChatBackend = (typeof CHAT_BACKENDS)[number];

export interface ChatOptions {
  backend: ChatBackend;
  /** Server base URL, with or without /v1 (openai). */
  url?: string;
  /** Model name sent to the server (openai). */
  model?: string;
  /** GGUF file (llama-cpp). */
  gguf?: string;
  /** Name of the environment variable holding the API key (default OPENAI_API_KEY; unset is fine for local servers). */
  apiKeyEnv?: string;
  /** Calls in flight at once. */
  concurrency?: number;
  /** Per-call limit, milliseconds. */
  timeoutMs?: number;
  /** Retries after the first attempt (openai). */
  retries?: number;
  /** Let llama.cpp use a GPU when it finds one (llama-cpp; default CPU only). */
  gpu?: boolean;
  /** CPU threads (llama-cpp; default 1 for models under 256 MiB, else llama.cpp's choice). */
  threads?: number;
  /** First backoff step, milliseconds; step k waits a random time in [0, base * 2^k), at most MAX_BACKOFF_MS. */
  backoffBaseMs?: number;
  /** Called before each retry's wait (e.g. to log it). */
  onRetry?: (retry: { attempt: number; delayMs: number; error: ChatError }) => void;
}

export const CHAT_DEFAULTS = { apiKeyEnv: 'OPENAI_API_KEY', concurrency: 4, timeoutMs: 120_000, retries: 5, backoffBaseMs: 1000 };
const MAX_BACKOFF_MS = 60_000;
/** A Retry-After longer than this is cut to it, so a confused server cannot stall a run for hours. */
const MAX_RETRY_AFTER_MS = 600_000;

/**
 * A failed call. `retryable`: another attempt may succeed (429, 5xx, timeout, connection error,
 * unusable reply). `fatal`: every call would fail the same way (bad key, wrong URL or model, server
 * unreachable), so a caller with many items should stop rather than fail each one.
 */
export class ChatError extends Error {
  constructor(
    message: string,
    readonly kind: 'http' | 'timeout' | 'network' | 'reply',
    readonly retryable: boolean,
    readonly fatal: boolean,
    readonly retryAfterMs: number | null = null,
  ) {
    super(message);
    this.name = 'ChatError';
  }
}

/** Runs at most `limit` tasks at once; the rest wait in arrival order. */
export class Semaphore {
  private active = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(readonly limit: number) {}

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.active < this.limit) this.active++;
    else await new Promise<void>((resolve) => this.waiting.push(resolve)); // the slot is handed over by release()
    try {
      return await task();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    }
  }
}

export async function openChatModel(o: ChatOptions): Promise<ChatModel> {
  const concurrency = o.concurrency ?? CHAT_DEFAULTS.concurrency;
  const timeoutMs = o.timeoutMs ?? CHAT_DEFAULTS.timeoutMs;
  const retries = o.retries ?? CHAT_DEFAULTS.retries;
  checkPositiveIntegers({ '--llm-concurrency': concurrency, '--llm-timeout': timeoutMs });
  if (!Number.isInteger(retries) || retries < 0) throw new UserError(`--llm-retries must be a non-negative integer (got ${retries})`);
  if (o.backend === 'llama-cpp') {
    if (!o.gguf) throw new UserError('--llm-gguf FILE is required with the llama-cpp backend (a local .gguf model)');
    const { openLlamaCppChat } = await import('./chat-llama-cpp.ts');
    if (o.threads !== undefined) checkPositiveIntegers({ '--llm-threads': o.threads });
    return openLlamaCppChat(o.gguf, { concurrency, timeoutMs, gpu: o.gpu ?? false, threads: o.threads });
  }
  return openServerChat(o, { concurrency, timeoutMs, retries });
}

/** The chat-completions endpoint of a base URL given with or without /v1. */
export function chatCompletionsUrl(base: string): string {
  let url: URL;
  try {
    url = new URL(base);
  } catch {
    throw new UserError(`--llm-url ${base}: not a URL; pass e.g. http://127.0.0.1:8080 or https://api.openai.com/v1`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UserError(`--llm-url ${base}: must start with http:// or https://`);
  if (url.username || url.password) throw new UserError('--llm-url must not hold credentials; put the API key in the environment variable named by --llm-api-key-env');
  const path = url.pathname.replace(/\/+$/, '').replace(/\/v1$/, '');
  return `${url.origin}${path}/v1/chat/completions`;
}

/** Milliseconds a Retry-After header asks for (seconds or an HTTP date), or null. */
export function parseRetryAfter(header: string | null, now = Date.now()): number | null {
  if (header === null || header.trim() === '') return null;
  const text = header.trim();
  const ms = /^\d+(\.\d+)?$/.test(text) ? Number(text) * 1000 : Date.parse(text) - now;
  return Number.isFinite(ms) ? Math.min(MAX_RETRY_AFTER_MS, Math.max(0, ms)) : null;
}

/** Full jitter: a uniform wait in [0, min(cap, base * 2^attempt)). */
function backoffMs(attempt: number, baseMs: number): number {
  return Math.random() * Math.min(MAX_BACKOFF_MS, baseMs * 2 ** attempt);
}

function openServerChat(o: ChatOptions, limits: { concurrency: number; timeoutMs: number; retries: number }): ChatModel {
  if (!o.url) throw new UserError('--llm-url is required with an OpenAI-compatible server (e.g. http://127.0.0.1:8080)');
  if (!o.model) throw new UserError("--llm-model is required with an OpenAI-compatible server (the server's model name)");
  const endpoint = chatCompletionsUrl(o.url);
  const model = o.model;
  const keyEnv = o.apiKeyEnv ?? CHAT_DEFAULTS.apiKeyEnv;
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(keyEnv)) throw new UserError(`--llm-api-key-env ${keyEnv}: not an environment variable name`);
  const apiKey = process.env[keyEnv]?.trim() || null;
  if (apiKey === null && o.apiKeyEnv !== undefined && o.apiKeyEnv !== CHAT_DEFAULTS.apiKeyEnv) {
    throw new UserError(`--llm-api-key-env ${keyEnv}: the environment variable is not set`);
  }
  const scrub = (text: string): string => (apiKey ? text.split(apiKey).join('[api key]') : text);
  const slots = new Semaphore(limits.concurrency);
  const backoffBase = o.backoffBaseMs ?? CHAT_DEFAULTS.backoffBaseMs;

  const attempt = async (body: string): Promise<string> => {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), limits.timeoutMs);
    try {
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (apiKey) headers.authorization = `Bearer ${apiKey}`;
      const response = await fetch(endpoint, { method: 'POST', headers, body, signal: abort.signal });
      const text = await response.text();
      if (!response.ok) throw httpError(response.status, text, response.headers.get('retry-after'));
      return replyContent(text);
    } catch (err) {
      if (err instanceof ChatError) throw err;
      if (abort.signal.aborted) throw new ChatError(`no reply within ${limits.timeoutMs / 1000} s`, 'timeout', true, false);
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw new ChatError(`cannot connect (${cause?.code ?? cause?.message ?? (err as Error).message})`, 'network', true, false);
    } finally {
      clearTimeout(timer);
    }
  };

  return {
    backend: 'openai',
    model,
    async complete(messages, opts) {
      const body = JSON.stringify({ model, messages, max_tokens: opts.maxTokens, temperature: opts.temperature ?? 0 });
      for (let retry = 0; ; retry++) {
        let error: ChatError;
        try {
          return await slots.run(() => attempt(body));
        } catch (err) {
          error = err as ChatError;
        }
        if (!error.retryable || retry >= limits.retries) {
          const attempts = retry + 1;
          // A server that stays unreachable is down for every call, not just this one.
          const fatal = error.fatal || error.kind === 'network';
          throw new ChatError(scrub(`${endpoint}: ${error.message}${attempts > 1 ? ` (after ${attempts} attempts)` : ''}`), error.kind, false, fatal);
        }
        const delayMs = error.retryAfterMs ?? backoffMs(retry, backoffBase);
        o.onRetry?.({ attempt: retry + 1, delayMs, error: new ChatError(scrub(error.message), error.kind, true, false, error.retryAfterMs) });
        await sleep(delayMs);
      }
    },
    async dispose() {},
  };
}

/** The error for a non-2xx reply; the server's own message is shown when it sends one. */
function httpError(status: number, body: string, retryAfter: string | null): ChatError {
  let detail = body.trim();
  try {
    const parsed = JSON.parse(body) as { error?: { message?: unknown } | string; message?: unknown };
    const message = typeof parsed.error === 'string' ? parsed.error : (parsed.error?.message ?? parsed.message);
    if (typeof message === 'string') detail = message;
  } catch {
    // not JSON: show the start of the text
  }
  detail = detail.replace(/\s+/g, ' ').slice(0, 200);
  const retryable = status === 408 || status === 429 || status >= 500;
  // 401/403: the key; 404: the URL or the model name. Every call would get the same answer.
  const fatal = status === 401 || status === 403 || status === 404;
  const hint = status === 401 || status === 403 ? '; check the API key in the environment variable named by --llm-api-key-env' : status === 404 ? '; check --llm-url and --llm-model' : '';
  return new ChatError(`HTTP ${status}${detail ? ` ${detail}` : ''}${hint}`, 'http', retryable, fatal, retryable ? parseRetryAfter(retryAfter) : null);
}

/** choices[0].message.content of a chat-completions reply; anything else is a retryable ChatError. */
function replyContent(text: string): string {
  let content: unknown;
  try {
    content = (JSON.parse(text) as { choices?: { message?: { content?: unknown } }[] }).choices?.[0]?.message?.content;
  } catch {
    throw new ChatError(`reply is not JSON (${text.slice(0, 60).replace(/\s+/g, ' ')}…)`, 'reply', true, false);
  }
  if (typeof content !== 'string') throw new ChatError('reply has no choices[0].message.content string', 'reply', true, false);
  if (content.trim() === '') throw new ChatError('reply content is empty', 'reply', true, false);
  return content;
}
