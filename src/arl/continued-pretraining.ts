/**
 * ARL continued pretraining (methods.md section 2) runs the ordinary trainer (`arl train --init`) on
 * the recap-augmented shards. The one thing it may need beyond that: a model imported from Hugging
 * Face whose tokenizer lacks `<recap>` / `</recap>` gets them appended as two new ids (see
 * Tokenizer.vocabExtended), so its embedding (and untied LM head) must grow by those rows first.
 */
import * as tf from '@tensorflow/tfjs';
import { LlamaModel } from '../model/llama.ts';

/** Ids a tokenizer without the recap markers appends for them. */
export const APPENDED_MARKERS = 2;

/**
 * A copy of `model` with a vocabulary of `vocabSize` (larger by at most the appended markers); the
 * new rows of the embedding and LM head are the mean of the existing ones, the usual start for new
 * tokens (their logits begin near the average). Disposes `model`.
 */
export function growVocabulary(model: LlamaModel, vocabSize: number): LlamaModel {
  const extra = vocabSize - model.config.vocabSize;
  if (extra <= 0 || extra > APPENDED_MARKERS) throw new RangeError(`can only add the ${APPENDED_MARKERS} recap markers to the vocabulary (${model.config.vocabSize} -> ${vocabSize})`);
  const grown = new LlamaModel({ ...model.config, vocabSize });
  const targets = grown.namedWeights();
  for (const [i, { variable }] of model.namedWeights().entries()) {
    tf.tidy(() => {
      const w = variable.read();
      const target = targets[i].variable;
      // The vocabulary axis is the one whose length changed: rows of the embedding, columns of our [dim, vocab] head.
      const axis = w.shape.findIndex((n, k) => n !== target.shape[k]);
      if (axis < 0) target.write(w);
      else target.write(tf.concat([w, tf.tile(tf.mean(w, axis, true), axis === 0 ? [extra, 1] : [1, extra])], axis));
    });
  }
  model.dispose();
  return grown;
}
