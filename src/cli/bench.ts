/**
 * `arl bench`: throughput of the chosen backend on a model given by flags, printed as JSON lines:
 * training tokens/s (full AdamW steps), forward tokens/s, generation tokens/s with and without
 * the KV cache, and memory. Random weights and random tokens: speed does not depend on them.
 */
import * as tf from '@tensorflow/tfjs';
import { pipelineStats, settle } from '../backend.ts';
import { keyTokenOptions, measureKeyTokenThroughput } from '../arl/key-tokens.ts';
import { secondsPerCall } from '../core/timing.ts';
import { measureSegmentThroughput, segmentOptions } from '../arl/relevant-segment.ts';
import { ADAPTER_KINDS } from '../lift/adapter.ts';
import { measureLiftThroughput } from '../lift/throughput.ts';
import { DecodeBatch } from '../infer/decode-session.ts';
import { generate } from '../infer/generate.ts';
import { argmax } from '../infer/sampling.ts';
import { makeConfig, parameterCount } from '../model/config.ts';
import { LlamaModel } from '../model/llama.ts';
import { makeRng } from '../core/random.ts';
import { AdamW } from '../train/optimizer.ts';
import { runSteps, trainStep } from '../train/trainer.ts';
import { BACKEND_FLAGS, PRECISION_FLAGS, snakeCaseKeys, startBackend } from './common.ts';
import { LossScaler, scaledStep } from '../train/loss-scale.ts';
import { usePrecision } from '../train/precision.ts';
import { setMatmulPrecision } from '../ops/matmul.ts';
import { type ArgsOf, defineCommand, defineOptions } from './options.ts';

const BENCH_FLAGS = defineOptions({
  vocab: { type: 'number', default: 512, describe: 'vocabulary size of the benchmark model' },
  dim: { type: 'number', default: 128, describe: 'model width' },
  layers: { type: 'number', default: 2, describe: 'transformer blocks' },
  heads: { type: 'number', default: 4, describe: 'query heads' },
  'kv-heads': { type: 'number', describe: 'key/value heads (default: --heads)' },
  'hidden-dim': { type: 'number', describe: 'SwiGLU hidden width (default: the usual multiple of --dim)' },
  'tie-embeddings': { type: 'boolean', default: false, describe: 'share the input embedding with the output projection' },
  seq: { type: 'number', default: 128, describe: 'training sequence length' },
  batch: { type: 'number', default: 8, describe: 'sequences per training step' },
  steps: { type: 'number', default: 10, describe: 'timed training steps' },
  'warmup-steps': { type: 'number', default: 2, describe: 'untimed training steps first (at least the first step is untimed)' },
  'gen-context': { type: 'number', default: 1000, describe: 'prompt length for the generation benchmark' },
  'gen-tokens': { type: 'number', default: 16, describe: 'tokens generated per generation measurement' },
  'skip-generate': { type: 'boolean', default: false, describe: 'skip the generation benchmark' },
  'decode-rows': { type: 'number', default: 0, describe: 'also time batched decoding on webgpu: this many sessions of one DecodeBatch (and 1, to compare) decoding --gen-tokens tokens each after --gen-context' },
  'key-tokens': { type: 'boolean', default: true, describe: 'also time ARL key-token scoring and the relevant-segment search (--no-key-tokens to skip)' },
  lift: { type: 'boolean', default: true, describe: 'also time LIFT on the tiny preset, per adapter kind (--no-lift to skip)' },
  profile: { type: 'boolean', default: false, describe: 'also print per-kernel times of one training step and of generation (GPU time on webgpu)' },
  ...PRECISION_FLAGS,
});

type BenchArgs = ArgsOf<typeof BENCH_FLAGS & typeof BACKEND_FLAGS>;

function randomTokens(count: number, vocab: number, rng: () => number): Int32Array {
  const out = new Int32Array(count);
  for (let i = 0; i < count; i++) out[i] = Math.floor(rng() * vocab);
  return out;
}

/**
 * `rows` sessions of one DecodeBatch, each after its own random prompt, decoding `tokens` tokens together
 * (logits read back, as the recap agent does); one untimed step first.
 */
async function timeBatchedDecoding(model: LlamaModel, rows: number, context: number, tokens: number, rng: () => number): Promise<object> {
  const batch = new DecodeBatch(model, rows);
  const sessions = Array.from({ length: rows }, () => batch.session());
  try {
    const step = async (ids: number[][]): Promise<number[][]> => (await Promise.all(sessions.map((s, i) => s.append(ids[i]!)))).map((logits) => [argmax(logits)]);
    let next = await step(sessions.map(() => Array.from(randomTokens(context, model.config.vocabSize, rng))));
    next = await step(next);
    const before = batch.stats.steps;
    const start = performance.now();
    for (let t = 0; t < tokens; t++) next = await step(next);
    const seconds = (performance.now() - start) / 1000;
    const steps = batch.stats.steps - before;
    return { rows, context, tokens_each: tokens, steps, ms_per_step: (1000 * seconds) / steps, tokens_per_s: (rows * tokens) / seconds };
  } finally {
    for (const s of sessions) s.dispose();
    batch.dispose();
  }
}

/**
 * Kernel-by-kernel profile of `fn` (tf.profile; on webgpu each program is timed on the GPU with
 * timestamp queries, so `kernel_ms` is device time and `wall_ms - kernel_ms` is dispatch overhead).
 */
async function profileKernels(what: string, fn: () => Promise<unknown>, top = 20): Promise<Record<string, unknown>> {
  const start = performance.now();
  const info = await tf.profile(fn as () => Promise<tf.TensorContainer>);
  const wallMs = performance.now() - start;
  type Entry = { calls: number; ms: number; shapes: string };
  const byName = new Map<string, Entry>();
  const byShape = new Map<string, Entry>();
  const add = (map: Map<string, Entry>, key: string, ms: number, shapes: string): void => {
    const entry = map.get(key) ?? { calls: 0, ms: 0, shapes };
    entry.calls += 1;
    entry.ms += ms;
    map.set(key, entry);
  };
  let kernelMs = 0;
  for (const k of info.kernels) {
    const ms = typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
    kernelMs += ms;
    const shapes = `${JSON.stringify(k.inputShapes)}->${JSON.stringify(k.outputShapes)}`;
    add(byName, k.name, ms, shapes);
    add(byShape, `${k.name} ${shapes}`, ms, shapes);
  }
  const list = (map: Map<string, Entry>, key: 'name' | 'kernel'): Record<string, unknown>[] =>
    [...map.entries()].sort((a, b) => b[1].ms - a[1].ms).slice(0, top).map(([name, e]) => ({ [key]: name, calls: e.calls, ms: Number(e.ms.toFixed(3)), ...(key === 'name' ? { first_shapes: e.shapes } : {}) }));
  return { bench: 'profile', what, dispatches: info.kernels.length, kernel_ms: Number(kernelMs.toFixed(2)), wall_ms: Number(wallMs.toFixed(2)), kernels: list(byName, 'name'), by_shape: list(byShape, 'kernel') };
}

export async function runBench(args: BenchArgs): Promise<Record<string, unknown>[]> {
  const startupBegin = performance.now();
  const choice = await startBackend(args.backend, args.precision);
  // Refused with one line where mixed precision cannot run; the training steps then use it.
  const precisionDetail = await usePrecision(args.precision);
  if (precisionDetail) process.stderr.write(`precision: mixed (${precisionDetail})\n`);
  const backendReady = performance.now();
  // Generation and batched decoding need room for the prompt and the new tokens.
  const maxSeq = Math.max(args.seq, args.skipGenerate && args.decodeRows === 0 ? 0 : args.genContext + args.genTokens);
  const config = makeConfig(null, {
    vocabSize: args.vocab,
    dim: args.dim,
    layers: args.layers,
    heads: args.heads,
    kvHeads: args.kvHeads,
    hiddenDim: args.hiddenDim,
    tieEmbeddings: args.tieEmbeddings,
    maxSeq,
  });
  const base = { backend: choice.name, precision: args.precision, params: parameterCount(config), vocab: args.vocab, dim: args.dim, layers: args.layers, heads: args.heads, kv_heads: config.kvHeads, seq: args.seq, batch: args.batch };
  const lines: Record<string, unknown>[] = [];
  const emit = (line: Record<string, unknown>): void => {
    const snake = snakeCaseKeys(line) as Record<string, unknown>;
    lines.push(snake);
    console.log(JSON.stringify(snake));
  };
  let peakRss = process.memoryUsage().rss;
  const sampleMemory = (): void => {
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
  };
  const rng = makeRng(1);
  const model = new LlamaModel(config);
  const optimizer = new AdamW(model.variables(), { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 });
  const modelReady = performance.now();
  const tokens = args.batch * args.seq;
  try {
    const batch = (): { x: Int32Array; y: Int32Array } => ({ x: randomTokens(tokens, args.vocab, rng), y: randomTokens(tokens, args.vocab, rng) });
    const tensorsBefore = tf.memory().numTensors;
    // GPU buffers in use (webgpu only): with tensors, what must stay flat across steps.
    const gpuBytes = (): number | undefined => (tf.memory() as { numBytesInGPU?: number }).numBytesInGPU;
    const stepOptions = { batch: args.batch, seq: args.seq, accum: 1, clip: 1, lr: 1e-4 };
    // Step losses: the same seed gives the same batches, so runs with a kernel on and off (ARL_FLASH_ATTENTION=1 or 0)
    // can be checked against each other on the GPU.
    const losses: number[] = [];
    // Mixed precision steps as the trainer takes them: loss-scaled, an overflowed step skipped.
    const scaler = args.precision === 'mixed' ? new LossScaler() : null;
    let skippedSteps = 0;
    const benchStep = (): Promise<{ loss: number }> => {
      if (!scaler) return trainStep(model, optimizer, batch, stepOptions);
      return scaledStep(scaler, (lossScale) => trainStep(model, optimizer, batch, { ...stepOptions, lossScale })).then((r) => {
        if (r.skipped) skippedSteps += 1;
        return r;
      });
    };
    // Steps run as the trainer runs them (runSteps: on webgpu the next step is recorded before this one's loss is read).
    const runTrainSteps = (count: number): Promise<void> =>
      runSteps({
        from: 0,
        to: count,
        overlap: optimizer.gated,
        pauseAfter: () => false,
        record: benchStep,
        onDone: async ({ loss }) => {
          losses.push(loss);
          sampleMemory();
          return true;
        },
      });
    await runTrainSteps(1);
    const firstStepDone = performance.now() / 1000; // seconds since process start (performance.now() counts from there)
    const gpuBytesAfterFirstStep = gpuBytes();
    // Where the time to the first step went: module loading before our code ran, backend
    // (adapter, device), model (weight initialisation and upload), then the first step, of
    // which pipeline creation (shader compilation) is counted separately.
    emit({
      bench: 'startup',
      ...base,
      process_to_main_s: startupBegin / 1000,
      backend_s: (backendReady - startupBegin) / 1000,
      model_init_s: (modelReady - backendReady) / 1000,
      first_step_s: firstStepDone - modelReady / 1000,
      pipelines_created: pipelineStats.count,
      pipeline_creation_s: pipelineStats.ms / 1000,
      first_step_done_s: firstStepDone,
    });
    await runTrainSteps(args.warmupSteps - 1); // the first step counts as one of the warm-up steps
    const timedFrom = performance.now();
    await runTrainSteps(args.steps);
    const stepSeconds = (performance.now() - timedFrom) / 1000 / args.steps;
    emit({
      bench: 'train',
      ...base,
      ms_per_step: stepSeconds * 1000,
      tokens_per_s: tokens / stepSeconds,
      first_step_done_s: firstStepDone,
      first_loss: losses[0],
      last_loss: losses[losses.length - 1],
      tensors_before: tensorsBefore,
      tensors_after: tf.memory().numTensors,
      gpu_bytes_after_first_step: gpuBytesAfterFirstStep,
      gpu_bytes_after: gpuBytes(),
      // Every buffer the backend holds, its pool of freed buffers included: closer to the device's real use.
      gpu_bytes_allocated: (tf.memory() as { numBytesAllocatedInGPU?: number }).numBytesAllocatedInGPU,
      ...(scaler ? { loss_scale: scaler.scale, skipped_steps: skippedSteps } : {}),
    });

    const ids = tf.tensor2d(randomTokens(tokens, args.vocab, rng), [args.batch, args.seq], 'int32');
    const forwardSeconds = await secondsPerCall(async () => {
      const logits = tf.tidy(() => model.logits(ids));
      await settle(logits);
      logits.dispose();
      sampleMemory();
    }, 1, Math.max(2, Math.ceil(args.steps / 2)));
    ids.dispose();
    emit({ bench: 'forward', ...base, ms_per_batch: forwardSeconds * 1000, tokens_per_s: tokens / forwardSeconds });
    if (args.profile) emit({ ...base, ...(await profileKernels('train step', benchStep)) });

    if (args.keyTokens) {
      // ARL step 1 with its default S and W for this window, against plain forwards of full windows.
      const options = keyTokenOptions(config.maxSeq);
      const figures = await measureKeyTokenThroughput(model, options, 4 * config.maxSeq, 8, 2);
      emit({ bench: 'keytokens', ...base, window: config.maxSeq, short: options.shortContext, chunk: options.chunk, ...figures, cost_vs_forward: figures.forward_tokens_per_s / figures.scoring_tokens_per_s });
      sampleMemory();
      // ARL step 2 with its defaults: 8 key tokens in each of 4 documents, against forwards of its own pass shape.
      const segments = segmentOptions(options.shortContext, config.maxSeq);
      emit({ bench: 'segments', ...base, window: config.maxSeq, short: segments.shortContext, segment_tokens: segments.segmentTokens, reach: segments.reach, ...(await measureSegmentThroughput(model, segments)) });
      sampleMemory();
    }

    if (args.lift) {
      for (const kind of ADAPTER_KINDS) emit({ backend: choice.name, ...(await measureLiftThroughput(kind)) });
      sampleMemory();
    }

    if (!args.skipGenerate) {
      const prompt = Array.from(randomTokens(args.genContext, args.vocab, rng));
      // On webgpu the cached run goes through the decode graph; a second one without it (ARL_DECODE_GRAPH=0) compares.
      const graphRuns = choice.name === 'webgpu' ? [true, false] : [null];
      for (const [useCache, decodeGraph] of [...graphRuns.map((g) => [true, g] as const), [false, null] as const]) {
        if (decodeGraph === false) process.env.ARL_DECODE_GRAPH = '0';
        await generate(model, prompt, { maxNewTokens: 2, greedy: true, useCache }); // warm-up (kernel set-up)
        const start = performance.now();
        let firstToken = 0;
        const onToken = (): void => {
          firstToken ||= performance.now();
        };
        const produced = await generate(model, prompt, { maxNewTokens: args.genTokens, greedy: true, useCache, stopIds: [], onToken });
        const end = performance.now();
        const seconds = (end - start) / 1000;
        sampleMemory();
        // decode_ms_per_token leaves out the prompt's forward (the first token): the cost of each further token.
        const decodeMs = produced.length > 1 ? (end - firstToken) / (produced.length - 1) : null;
        emit({ bench: 'generate', ...base, kv_cache: useCache, ...(decodeGraph === null ? {} : { decode_graph: decodeGraph }), context: args.genContext, new_tokens: produced.length, ms_per_token: (seconds * 1000) / produced.length, decode_ms_per_token: decodeMs, tokens_per_s: produced.length / seconds });
        if (args.profile) {
          // One new token per generate call beyond the first (the prefill), so the profile of 2
          // tokens minus that of 1 is one decoding step; both are reported whole for simplicity.
          emit({ ...base, ...(await profileKernels(`generate 2 tokens, kv_cache ${useCache}${decodeGraph === null ? '' : `, decode graph ${decodeGraph}`}`, () => generate(model, prompt, { maxNewTokens: 2, greedy: true, useCache, stopIds: [] }))) });
        }
        if (decodeGraph === false) delete process.env.ARL_DECODE_GRAPH;
      }
    }
    if (args.decodeRows > 0 && choice.name === 'webgpu') {
      for (const rows of [1, args.decodeRows]) emit({ bench: 'decode-batch', ...base, ...(await timeBatchedDecoding(model, rows, args.genContext - 1, args.genTokens, rng)) });
    }
    emit({ bench: 'memory', ...base, peak_rss_mb: Math.round(peakRss / 2 ** 20), tf_bytes_mb: Math.round(tf.memory().numBytes / 2 ** 20), tensors: tf.memory().numTensors });
  } finally {
    optimizer.dispose();
    model.dispose();
    setMatmulPrecision('fp32');
  }
  return lines;
}

export const benchCommand = defineCommand({
  command: 'bench',
  describe: 'Measure training, forward and generation throughput (JSON lines)',
  options: BENCH_FLAGS,
  shared: BACKEND_FLAGS,
  examples: [
    ['$0 bench --backend wasm', 'llm.c reference config 1: vocab 512, dim 128, 2 layers, T 128, batch 8'],
    ['$0 bench --vocab 4096 --dim 256 --layers 4 --seq 256 --batch 8', 'llm.c reference config 2'],
    ['$0 bench --backend webgpu --precision mixed --skip-generate --no-key-tokens --no-lift', 'training throughput with f16 tensor-core products (refused where the GPU lacks them)'],
    ['$0 bench --backend webgpu --vocab 8192 --dim 512 --layers 8 --heads 8 --hidden-dim 1368 --tie-embeddings --seq 512 --batch 16', 'the GPU comparison model (shared/bench/torch_gpt_bench.py)'],
  ],
  handler: async (args) => {
    await runBench(args);
  },
});
