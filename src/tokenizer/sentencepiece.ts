import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SentencePieceProcessor } from 'sentencepiece-js';
import { UserError } from '../io/errors.ts';
import { parseModelProto, PieceType, type ModelInfo } from './model-proto.ts';

/** The SentencePiece model trained on the bundled Brown corpus (see data/tokenizer/README.md). */
export const BUNDLED_TOKENIZER_PATH = fileURLToPath(new URL('../../data/tokenizer/brown.model', import.meta.url));

export const RECAP_OPEN = '<recap>';
export const RECAP_CLOSE = '</recap>';
const RECAP_MARKER = /(<recap>|<\/recap>)/;

/**
 * A SentencePiece tokenizer with `<recap>` and `</recap>` as single tokens. Models trained with them as
 * user-defined symbols (like the bundled one) handle them natively; for other models (e.g. a Hugging Face
 * checkpoint's tokenizer.model) they are appended to the vocabulary and split out of the text here.
 */
export class Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  readonly unkId: number;
  readonly recapOpenId: number;
  readonly recapCloseId: number;
  /** True when the recap markers were appended after the model's own pieces (ids vocabSize-2 and vocabSize-1). */
  readonly vocabExtended: boolean;

  private constructor(
    /** Absolute path of the .model file. */
    readonly modelPath: string,
    /** Hex SHA-256 of the .model file, to check that data and checkpoints agree on the tokenizer. */
    readonly sha256: string,
    private readonly processor: SentencePieceProcessor,
    private readonly pieces: readonly string[],
    ids: { bos: number; eos: number; unk: number; recapOpen: number; recapClose: number },
  ) {
    this.vocabSize = pieces.length;
    this.bosId = ids.bos;
    this.eosId = ids.eos;
    this.unkId = ids.unk;
    this.recapOpenId = ids.recapOpen;
    this.recapCloseId = ids.recapClose;
    this.vocabExtended = ids.recapOpen >= pieces.length - 2 && pieces.length > 0 && !this.isNativeMarkerModel();
  }

  static async load(modelPath: string): Promise<Tokenizer> {
    const path = resolve(modelPath);
    const fail = (reason: string): never => {
      throw new UserError(`${path}: cannot read SentencePiece model (${reason}); pass --tokenizer PATH to a valid .model file`);
    };
    let bytes: Buffer;
    let info: ModelInfo;
    try {
      bytes = readFileSync(path);
    } catch (err) {
      return fail((err as NodeJS.ErrnoException).code ?? String(err));
    }
    try {
      info = parseModelProto(bytes);
    } catch (err) {
      return fail(`not a SentencePiece model: ${(err as Error).message}`);
    }
    const processor = await loadProcessor(path);
    const status = processor.processor.status();
    const statusText = status.ToString();
    status.delete();
    if (statusText !== 'OK') fail(statusText);

    const pieces = info.pieces.map((p) => p.piece);
    const idOf = (piece: string, type: number): number =>
      info.pieces.findIndex((p) => p.piece === piece && p.type === type);
    const unk = info.pieces.findIndex((p) => p.type === PieceType.UNKNOWN);
    const bos = idOf(info.bosPiece, PieceType.CONTROL);
    const eos = idOf(info.eosPiece, PieceType.CONTROL);
    if (bos < 0 || eos < 0) fail('no BOS/EOS control pieces, which documents are delimited with');
    let recapOpen = idOf(RECAP_OPEN, PieceType.USER_DEFINED);
    let recapClose = idOf(RECAP_CLOSE, PieceType.USER_DEFINED);
    if (recapOpen < 0 || recapClose < 0) {
      recapOpen = pieces.push(RECAP_OPEN) - 1;
      recapClose = pieces.push(RECAP_CLOSE) - 1;
    }
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    return new Tokenizer(path, sha256, processor, pieces, { bos, eos, unk, recapOpen, recapClose });
  }
}
