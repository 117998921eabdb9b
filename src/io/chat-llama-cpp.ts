/**
 * A local GGUF model as a ChatModel, through node-llama-cpp: no server, no network. Only the prebuilt
 * binaries that npm installed (@node-llama-cpp/<platform>) are used; it never downloads or builds
 * llama.cpp. One context holds a sequence per concurrent call; each call replays its messages
 * through the model's chat template on a free sequence and clears it afterwards.
 */
import { existsSync, statSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import type { ChatHistoryItem, Llama, LlamaContextSequence } from 'node-llama-cpp';
import { ChatError, type ChatModel, Semaphore } from './chat.ts';
import { UserError } from './errors.ts';

/** Context per sequence: enough for a prompt with a segment and its continuation, small enough for CPU memory. */
const MAX_CONTEXT_TOKENS = 8192;
/**
 * Below this file size one CPU thread is the default: a small model's per-op work is too little to
 * share, and llama.cpp's spinning thread barriers on a busy machine made a 1 MB model ~100x slower.
 */
const SINGLE_THREAD_BELOW_BYTES = 256 * 2 ** 20;

export interface LlamaCppOptions {
  concurrency: number;
  timeoutMs: number;
  /** Let llama.cpp use a GPU (CUDA, Vulkan, Metal) when it finds one; otherwise CPU only. */
  gpu: boolean;
  /** CPU threads; default 1 for small models, else llama.cpp's choice (the cores useful for math). */
  threads?: number;
}

async function loadLlama(gpu: boolean, threads: number | undefined): Promise<Llama> {
  const { getLlama, LlamaLogLevel } = await import('node-llama-cpp');
  const fixed = { maxThreads: threads, build: 'never', skipDownload: true, progressLogs: false, logLevel: LlamaLogLevel.error } as const;
  try {
    if (!gpu) return await getLlama({ ...fixed, gpu: false });
    const llama = await getLlama({ ...fixed, gpu: 'auto' });
    // A GPU backend can load with no usable device (e.g. Vulkan without a GPU); the CPU build is then the honest choice.
    if (llama.gpu === false || (await llama.getGpuDeviceNames()).length > 0) return llama;
    await llama.dispose();
    return await getLlama({ ...fixed, gpu: false });
  } catch (err) {
    throw new UserError(`node-llama-cpp: no usable prebuilt llama.cpp binary for this platform (${(err as Error).message}); reinstall with npm ci`);
  }
}

export async function openLlamaCppChat(gguf: string, limits: LlamaCppOptions): Promise<ChatModel> {
  const modelPath = resolve(gguf);
  if (!existsSync(modelPath) || !statSync(modelPath).isFile()) throw new UserError(`--llm-gguf ${gguf}: no such file`);
  const { LlamaChatSession } = await import('node-llama-cpp');
  const threads = limits.threads ?? (statSync(modelPath).size < SINGLE_THREAD_BELOW_BYTES ? 1 : undefined);
  const llama = await loadLlama(limits.gpu, threads);
  let model;
  try {
    model = await llama.loadModel({ modelPath });
  } catch (err) {
    await llama.dispose();
    throw new UserError(`${modelPath}: cannot load GGUF model (${(err as Error).message})`);
  }
  const context = await model.createContext({ sequences: limits.concurrency, contextSize: { max: MAX_CONTEXT_TOKENS } });
  const free: LlamaContextSequence[] = Array.from({ length: limits.concurrency }, () => context.getSequence());
  const slots = new Semaphore(limits.concurrency);

  return {
    backend: 'llama-cpp',
    model: basename(modelPath),
    complete(messages, opts) {
      const last = messages[messages.length - 1];
      if (last?.role !== 'user') throw new Error('complete() needs the conversation to end with a user message');
      const history: ChatHistoryItem[] = messages.slice(0, -1).map((m) =>
        m.role === 'assistant' ? { type: 'model', response: [m.content] } : { type: m.role, text: m.content },
      );
      return slots.run(async () => {
        const sequence = free.pop()!;
        const session = new LlamaChatSession({ contextSequence: sequence });
        const abort = new AbortController();
        const timer = setTimeout(() => abort.abort(), limits.timeoutMs);
        try {
          session.setChatHistory(history);
          const reply = await session.prompt(last.content, { maxTokens: opts.maxTokens, temperature: opts.temperature ?? 0, signal: abort.signal });
          if (reply.trim() === '') throw new ChatError(`${basename(modelPath)}: the model replied with nothing`, 'reply', false, false);
          return reply;
        } catch (err) {
          if (err instanceof ChatError) throw err;
          if (abort.signal.aborted) throw new ChatError(`${basename(modelPath)}: no reply within ${limits.timeoutMs / 1000} s`, 'timeout', false, false);
          throw new ChatError(`${basename(modelPath)}: ${(err as Error).message}`, 'reply', false, false);
        } finally {
          clearTimeout(timer);
          session.dispose({ disposeSequence: false });
          await sequence.clearHistory();
          free.push(sequence);
        }
      });
    },
    async dispose() {
      await context.dispose();
      await model.dispose();
      await llama.dispose();
    },
  };
}
