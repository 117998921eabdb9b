import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SentencePieceProcessor } from 'sentencepiece-js';
import { fsErrorReason } from '../data/fs-errors.ts';
import { UserError } from '../io/errors.ts';
import { parseModelProto, PieceType, type ModelInfo, type ModelPiece } from './model-proto.ts';

/** The SentencePiece model trained on the bundled Brown corpus (see data/tokenizer/README.md). */
export const BUNDLED_TOKENIZER_PATH = fileURLToPath(new URL('../../data/tokenizer/brown.model', import.meta.url));

export const RECAP_OPEN = '<recap>';
export const RECAP_CLOSE = '</recap>';
/** Splits text around the markers, keeping them (capturing group). */
const RECAP_SPLIT = /(<recap>|<\/recap>)/;

interface TokenizerParts {
  modelPath: string;
  sha256: string;
  processor: SentencePieceProcessor;
  pieces: ModelPiece[];
  bosId: number;
  eosId: number;
  unkId: number;
  recapOpenId: number;
  recapCloseId: number;
  vocabExtended: boolean;
}

/**
 * A SentencePiece tokenizer with `<recap>` and `</recap>` as single tokens. Models trained with them as
 * user-defined symbols (like the bundled one) handle them natively; for other models (e.g. a Hugging Face
 * checkpoint's tokenizer.model) they are appended to the vocabulary and split out of the text here.
 */
export class Tokenizer {
  /** Absolute path of the .model file. */
  readonly modelPath: string;
  /** Hex SHA-256 of the .model file, so prepared data and checkpoints can check they share a tokenizer. */
  readonly sha256: string;
  /** Number of token ids, including appended recap markers. */
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  readonly unkId: number;
  readonly recapOpenId: number;
  readonly recapCloseId: number;
  /** True when the model lacked the recap markers and they were appended as ids vocabSize-2 and vocabSize-1. */
  readonly vocabExtended: boolean;
  /** Every piece with its type and score, by id (appended recap markers are user-defined, score 0). */
  readonly vocabulary: readonly ModelPiece[];
  private readonly processor: SentencePieceProcessor;

  private constructor(parts: TokenizerParts) {
    this.modelPath = parts.modelPath;
    this.sha256 = parts.sha256;
    this.processor = parts.processor;
    this.vocabulary = parts.pieces;
    this.vocabSize = parts.pieces.length;
    this.bosId = parts.bosId;
    this.eosId = parts.eosId;
    this.unkId = parts.unkId;
    this.recapOpenId = parts.recapOpenId;
    this.recapCloseId = parts.recapCloseId;
    this.vocabExtended = parts.vocabExtended;
  }

  /** Loads a SentencePiece .model file from disk; any problem with it is a UserError. */
  static async load(modelPath: string): Promise<Tokenizer> {
    const path = resolve(modelPath);
    const fail = (reason: string): never => {
      throw new UserError(
        `${path}: cannot read SentencePiece model (${reason}); pass --tokenizer PATH to a valid .model file`,
      );
    };
    let bytes: Buffer;
    try {
      bytes = readFileSync(path);
    } catch (err) {
      return fail(fsErrorReason(err));
    }
    let info: ModelInfo;
    try {
      info = parseModelProto(bytes);
    } catch (err) {
      return fail(`not a SentencePiece model: ${(err as Error).message}`);
    }
    const processor = await loadProcessor(path).catch((err: Error) => fail(err.message));
    const status = processor.processor.status();
    const statusText = status.ToString();
    status.delete();
    if (statusText !== 'OK') fail(statusText);

    const idOf = (piece: string, type: number): number =>
      info.pieces.findIndex((p) => p.piece === piece && p.type === type);
    const bosId = idOf(info.bosPiece, PieceType.CONTROL);
    const eosId = idOf(info.eosPiece, PieceType.CONTROL);
    if (bosId < 0 || eosId < 0) fail('it has no BOS/EOS control pieces, which delimit documents');
    const pieces = [...info.pieces];
    let recapOpenId = idOf(RECAP_OPEN, PieceType.USER_DEFINED);
    let recapCloseId = idOf(RECAP_CLOSE, PieceType.USER_DEFINED);
    const vocabExtended = recapOpenId < 0 || recapCloseId < 0;
    if (vocabExtended) {
      recapOpenId = pieces.push({ piece: RECAP_OPEN, type: PieceType.USER_DEFINED, score: 0 }) - 1;
      recapCloseId = pieces.push({ piece: RECAP_CLOSE, type: PieceType.USER_DEFINED, score: 0 }) - 1;
    }
    return new Tokenizer({
      modelPath: path,
      sha256: createHash('sha256').update(bytes).digest('hex'),
      processor,
      pieces,
      bosId,
      eosId,
      unkId: info.pieces.findIndex((p) => p.type === PieceType.UNKNOWN),
      recapOpenId,
      recapCloseId,
      vocabExtended,
    });
  }

  /** Token ids of `text`, without BOS/EOS; each `<recap>` / `</recap>` becomes its single marker id. */
  encode(text: string): number[] {
    if (!this.vocabExtended) return this.processor.encodeIds(text);
    let ids: number[] = [];
    for (const segment of text.split(RECAP_SPLIT)) {
      if (segment === RECAP_OPEN) ids.push(this.recapOpenId);
      else if (segment === RECAP_CLOSE) ids.push(this.recapCloseId);
      // concat rather than push(...segment ids): a long segment would exceed the engine's argument limit
      else ids = ids.concat(this.processor.encodeIds(segment));
    }
    return ids;
  }

  /** Text of `ids`; BOS/EOS decode to nothing, recap markers to `<recap>` / `</recap>`. */
  decode(ids: readonly number[]): string {
    for (const id of ids) this.checkId(id);
    if (!this.vocabExtended) return this.processor.decodeIds([...ids]);
    // Decode each run between markers on its own, mirroring how encode() tokenized the segments.
    let text = '';
    let run: number[] = [];
    for (const id of ids) {
      if (id !== this.recapOpenId && id !== this.recapCloseId) {
        run.push(id);
        continue;
      }
      if (run.length > 0) text += this.processor.decodeIds(run);
      text += id === this.recapOpenId ? RECAP_OPEN : RECAP_CLOSE;
      run = [];
    }
    if (run.length > 0) text += this.processor.decodeIds(run);
    return text;
  }

  /** The vocabulary piece of `id`, e.g. `▁the`, `<0x0A>` or `<recap>`. */
  pieceOf(id: number): string {
    this.checkId(id);
    return this.vocabulary[id]!.piece;
  }

  private checkId(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new RangeError(`token id ${id} is outside the vocabulary (size ${this.vocabSize})`);
    }
  }
}

/**
 * Loads the model into a fresh WASM processor. The Emscripten runtime inside sentencepiece-js registers
 * process-wide handlers that rethrow every uncaught exception and unhandled rejection, once per load; we remove
 * them so they neither override the CLI's own error handling nor pile up.
 */
async function loadProcessor(path: string): Promise<SentencePieceProcessor> {
  const emitter: NodeJS.EventEmitter = process;
  const events = ['uncaughtException', 'unhandledRejection'];
  const before = new Set(events.flatMap((event) => emitter.listeners(event)));
  const processor = new SentencePieceProcessor();
  try {
    await processor.load(path);
  } finally {
    for (const event of events) {
      for (const listener of emitter.listeners(event)) {
        if (!before.has(listener)) emitter.removeListener(event, listener as (...args: unknown[]) => void);
      }
    }
  }
  return processor;
}
