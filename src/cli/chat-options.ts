/** The --llm-* flags, named the same way by every command that talks to an LLM, and the client settings they give. */
import { CHAT_DEFAULTS, type ChatBackend, type ChatOptions } from '../io/chat.ts';
import { UserError } from '../io/errors.ts';
import { type ArgsOf, defineOptions } from './options.ts';

export const CHAT_FLAGS = defineOptions({
  'llm-url': { type: 'string', describe: 'OpenAI-compatible server, with or without /v1 (vLLM, Ollama, llama.cpp server, OpenAI)' },
  'llm-model': { type: 'string', describe: 'model name the server knows' },
  'llm-gguf': { type: 'string', describe: 'local .gguf model file (llama-cpp backend, no server)' },
  'llm-api-key-env': { type: 'string', describe: `environment variable holding the API key (default ${CHAT_DEFAULTS.apiKeyEnv}; never printed or stored)` },
  'llm-concurrency': { type: 'number', default: CHAT_DEFAULTS.concurrency, describe: 'LLM calls in flight at once' },
  'llm-timeout': { type: 'number', default: CHAT_DEFAULTS.timeoutMs / 1000, describe: 'seconds before one LLM call is abandoned (and retried)' },
  'llm-retries': { type: 'number', default: CHAT_DEFAULTS.retries, describe: 'retries of a call after 429, 5xx, timeouts, connection errors or unusable replies' },
  'llm-gpu': { type: 'boolean', default: false, describe: 'llama-cpp: use a GPU (CUDA, Vulkan, Metal) when llama.cpp finds one' },
  'llm-threads': { type: 'number', describe: 'llama-cpp: CPU threads (default 1 for models under 256 MiB, else all math cores)' },
});

export type ChatArgs = ArgsOf<typeof CHAT_FLAGS>;

/** ChatOptions from the parsed --llm-* flags. */
export function chatOptionsFromArgs(args: ChatArgs, backend: ChatBackend): ChatOptions {
  if (!(args.llmTimeout > 0)) throw new UserError(`--llm-timeout must be a positive number of seconds (got ${args.llmTimeout})`);
  return {
    backend,
    url: args.llmUrl,
    model: args.llmModel,
    gguf: args.llmGguf,
    apiKeyEnv: args.llmApiKeyEnv,
    concurrency: args.llmConcurrency,
    timeoutMs: Math.round(args.llmTimeout * 1000),
    retries: args.llmRetries,
    gpu: args.llmGpu,
    threads: args.llmThreads,
  };
}
