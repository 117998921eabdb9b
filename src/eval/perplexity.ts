/** Loss and perplexity of a model on a prepared split. */
import * as tf from '@tensorflow/tfjs';
import { TokenLoader } from '../data/loader.ts';
import type { Split } from '../data/format.ts';
import { UserError } from '../io/errors.ts';
import type { LlamaModel } from '../model/llama.ts';
import { languageModelLoss } from '../train/loss.ts';

export interface LossReport {
  loss: number;
  perplexity: number;
  tokens: number;
}

/** Every input and target id of a batch must be a row of the model's embedding and logits. */
function checkIdsInVocabulary(model: LlamaModel, dataDir: string, ...batches: Int32Array[]): void {
  const vocab = model.config.vocabSize;
  const outside = batches.map((ids) => ids.find((id) => id >= vocab)).find((id) => id !== undefined);
  if (outside !== undefined) {
    throw new UserError(`${dataDir}: holds token id ${outside}, outside the model's vocabulary of ${vocab}; prepare the data with the model's tokenizer (arl prepare --tokenizer CHECKPOINT/tokenizer.model)`);
  }
}

/**
 * Mean next-token loss over the first `batches` batches of a split, read from its start so
 * repeated evaluations see the same tokens. batches = 0 covers the split once.
 */
export async function evaluateLoss(model: LlamaModel, dataDir: string, split: Split, opts: { batches: number; batch: number; seq: number }): Promise<LossReport> {
  const loader = TokenLoader.open(dataDir, split);
  const perBatch = opts.batch * (opts.seq + 1);
  const batches = opts.batches > 0 ? opts.batches : Math.max(1, Math.floor(loader.totalTokens / perBatch));
  let total = 0;
  for (let i = 0; i < batches; i++) {
    const { x, y } = loader.nextBatch(opts.batch, opts.seq);
    if (loader.vocabSize > model.config.vocabSize) checkIdsInVocabulary(model, loader.dir, x, y);
    const loss = tf.tidy(() => languageModelLoss(model, x, y, opts.batch, opts.seq));
    total += (await loss.data())[0];
    loss.dispose();
  }
  const loss = total / batches;
  return { loss, perplexity: Math.exp(loss), tokens: batches * opts.batch * opts.seq };
}
