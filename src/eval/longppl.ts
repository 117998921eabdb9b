/**
 * Perplexity and LongPPL (PKU-ML/LongPPL; methods.md section 1) of a model over documents.
 *
 * Key tokens are chosen by an evaluator model's dual forward pass (ARL step 1's scoring, reused); LongPPL is the
 * perplexity of the evaluated model on exactly those tokens, with its full (long) context. The evaluator may be
 * the evaluated model itself or another checkpoint, as LongPPL scores every model with one fixed evaluator.
 */
import { tokenizeDocument } from '../arl/document.ts';
import { type DocumentScores, type KeyTokenOptions, scoreDocument, selectKeyTokens, validateKeyTokenOptions } from '../arl/key-tokens.ts';
import { readDocuments } from '../data/corpus.ts';
import { UserError } from '../io/errors.ts';
import type { LlamaModel } from '../model/llama.ts';
import type { Tokenizer } from '../tokenizer/sentencepiece.ts';

export interface LongPplReport {
  documents: number;
  tokens_scored: number;
  key_tokens: number;
  /** Mean negative log-likelihood (nats) of the evaluated model over every scored token. */
  loss: number | null;
  /** exp(loss); null when no token was scored. */
  perplexity: number | null;
  /** exp(mean NLL over key tokens); null when the evaluator found no key token. */
  longppl: number | null;
}

export interface LongPplRun {
  model: LlamaModel;
  /** Chooses the key tokens; `model` itself when absent. */
  evaluator?: LlamaModel;
  tokenizer: Tokenizer;
  /** Corpus source for readDocuments: `brown`, a .txt file or folder, or a .jsonl file. */
  corpus: string;
  /** The field of each JSON line holding the text (default "text"). */
  textField?: string;
  /** Key-token options, for the evaluator's window. */
  options: KeyTokenOptions;
  maxDocs?: number;
  onDocument?: (documents: number, report: LongPplReport) => void;
}

/** Long log-prob of every token (NaN at 0) from `scores`, or from a fresh pass when the model differs from the evaluator. */
async function longLogProbs(model: LlamaModel, tokens: number[], evaluatorScores: DocumentScores, sameModel: boolean, options: KeyTokenOptions): Promise<Float32Array> {
  if (sameModel) return evaluatorScores.long;
  // Only long log-probs are needed: short chunks of S + W = maxSeq starting every long stride are the long windows themselves.
  const stride = Math.min(options.longStride, model.config.maxSeq - 1);
  const longOnly: KeyTokenOptions = { ...options, longStride: stride, chunk: stride, shortContext: model.config.maxSeq - stride };
  return (await scoreDocument(model, tokens, longOnly)).long;
}

export async function evaluateLongPpl(run: LongPplRun): Promise<LongPplReport> {
  const evaluator = run.evaluator ?? run.model;
  const sameModel = evaluator === run.model;
  validateKeyTokenOptions(run.options, evaluator.config.maxSeq);
  if (evaluator.config.vocabSize !== run.model.config.vocabSize) {
    throw new UserError(`the evaluator has a vocabulary of ${evaluator.config.vocabSize} tokens and the evaluated model ${run.model.config.vocabSize}; LongPPL needs both to share one tokenizer`);
  }
  let documents = 0;
  let tokensScored = 0;
  let nllSum = 0;
  let keyTokens = 0;
  let keyNllSum = 0;
  const report = (): LongPplReport => ({
    documents,
    tokens_scored: tokensScored,
    key_tokens: keyTokens,
    loss: tokensScored > 0 ? nllSum / tokensScored : null,
    perplexity: tokensScored > 0 ? Math.exp(nllSum / tokensScored) : null,
    longppl: keyTokens > 0 ? Math.exp(keyNllSum / keyTokens) : null,
  });
  for await (const { text } of readDocuments(run.corpus, { textField: run.textField })) {
    if (run.maxDocs !== undefined && documents >= run.maxDocs) break;
    documents++;
    const { tokens } = tokenizeDocument(text, run.tokenizer);
    if (tokens.length >= 2) {
      const evaluatorScores = await scoreDocument(evaluator, tokens, run.options);
      const long = await longLogProbs(run.model, tokens, evaluatorScores, sameModel, run.options);
      for (let i = 1; i < tokens.length; i++) nllSum -= long[i]!;
      tokensScored += tokens.length - 1;
      for (const pos of selectKeyTokens(evaluatorScores, run.options)) {
        keyNllSum -= long[pos]!;
        keyTokens++;
      }
    }
    run.onDocument?.(documents, report());
  }
  return report();
}
