/** Batched next-token log-probabilities at chosen positions of several token sequences: the one forward both ARL steps use. */
import * as tf from '@tensorflow/tfjs';
import { releaseUnusedGpuMemory } from '../backend.ts';
import type { LlamaModel } from '../model/llama.ts';
import { targetLogProbs } from '../ops/cross-entropy.ts';

export interface ScoredSequence {
  /** Tokens the model reads, starting at position 0 (one row of the batch). */
  input: ArrayLike<number>;
  /** Offsets in `input` whose next token is scored, ascending. */
  offsets: number[];
  /** The next token at each offset. */
  nextTokens: number[];
}

/** Id written after a shorter sequence to fill its row; causal attention keeps it out of every score. */
const PADDING_ID = 0;

/** One batch's forward, recorded, with the read of its values already started. */
interface StartedBatch {
  values: Promise<Float32Array>;
  tensor: tf.Tensor;
}

/**
 * A batch shape to pad every batch to: sequences of `length` tokens, and the scored rows to a multiple of
 * `rowMultiple`. Full batches of one shape reuse the backend's pooled buffers (and, where a kernel is compiled per
 * shape, its pipelines), where batches of their own shapes make new ones.
 */
export interface BatchShape {
  length: number;
  rowMultiple: number;
}

/**
 * Records the forward of `sequences` (see nextTokenLogProbs) and starts reading its values back. On webgpu,
 * data() encodes the copy and submits at once, so a forward recorded after this one queues behind the copy.
 */
function startBatch(model: LlamaModel, sequences: readonly ScoredSequence[], shape?: BatchShape): StartedBatch {
  const length = Math.max(shape?.length ?? 0, ...sequences.map((s) => s.input.length));
  const ids = new Int32Array(sequences.length * length).fill(PADDING_ID);
  const rows: number[] = [];
  const targets: number[] = [];
  sequences.forEach((sequence, b) => {
    ids.set(sequence.input, b * length);
    for (const offset of sequence.offsets) rows.push(b * length + offset);
    targets.push(...sequence.nextTokens);
  });
  const scored = rows.length;
  // Padding rows score the first row again; their values are dropped.
  while (shape && rows.length % shape.rowMultiple !== 0) {
    rows.push(0);
    targets.push(PADDING_ID);
  }
  const tensor = tf.tidy(() => {
    const { hidden } = model.hidden(tf.tensor2d(ids, [sequences.length, length], 'int32'));
    const scoredRows = tf.gather(tf.reshape(hidden, [-1, model.config.dim]), tf.tensor1d(rows, 'int32')) as tf.Tensor2D;
    return targetLogProbs(model.project(scoredRows), tf.tensor1d(targets, 'int32'));
  });
  // Asynchronous read: the webgpu backend cannot read synchronously in Node.
  return { tensor, values: (tensor.data() as Promise<Float32Array>).then((values) => values.subarray(0, scored)) };
}

/**
 * log p(nextTokens | input up to and including each offset) for all sequences in one forward pass,
 * flattened in sequence order. Rows are right-padded to the longest input: a position never attends
 * to later ones, so each score equals that of the sequence run alone. Only the scored rows of the
 * hidden states are projected to the vocabulary.
 */
export async function nextTokenLogProbs(model: LlamaModel, sequences: ScoredSequence[]): Promise<Float32Array> {
  return (await nextTokenLogProbsOfBatches(model, [sequences]))[0];
}

/**
 * nextTokenLogProbs of each batch, in order, with the next batch's forward recorded before this one's values are
 * awaited: the device works on it while this batch is read back and the next one is prepared. With `shape`, every
 * batch is padded to it (see BatchShape).
 */
export async function nextTokenLogProbsOfBatches(model: LlamaModel, batches: readonly ScoredSequence[][], shape?: BatchShape): Promise<Float32Array[]> {
  const results: Float32Array[] = [];
  const inFlight: StartedBatch[] = [];
  let started = 0;
  try {
    while (results.length < batches.length) {
      while (inFlight.length < 2 && started < batches.length) inFlight.push(startBatch(model, batches[started++], shape));
      const batch = inFlight.shift()!;
      try {
        results.push(await batch.values);
      } finally {
        batch.tensor.dispose();
      }
      // Batches of their own shapes would grow tfjs-webgpu's buffer pool with each of them; one shape reuses it.
      if (!shape) releaseUnusedGpuMemory();
    }
    if (shape) releaseUnusedGpuMemory();
  } finally {
    for (const batch of inFlight) {
      batch.values.catch(() => undefined); // the error that stopped us is the one reported
      batch.tensor.dispose();
    }
  }
  return results;
}

/** log p(continuation | prompt): the continuation's tokens read in after the prompt, in one forward. */
export async function continuationLogProb(model: LlamaModel, prompt: readonly number[], continuation: readonly number[]): Promise<number> {
  const input = [...prompt, ...continuation.slice(0, -1)];
  const logProbs = await nextTokenLogProbs(model, [{ input, offsets: continuation.map((_, i) => prompt.length - 1 + i), nextTokens: [...continuation] }]);
  return logProbs.reduce((a, b) => a + b, 0);
}

/** A log-prob as written to output files (6 decimals); totals are taken before rounding. */
export function roundLogProb(x: number): number {
  return Math.round(x * 1e6) / 1e6;
}
