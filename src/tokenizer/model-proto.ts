/**
 * Minimal reader for SentencePiece's `.model` file (a serialized `sentencepiece.ModelProto`). The WASM build of
 * sentencepiece-js exposes no vocabulary queries (piece count, id → piece), so we read them from the file.
 * Field numbers follow sentencepiece_model.proto.
 */

/** The `SentencePiece.Type` values we act on. */
export const PieceType = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4 } as const;

export interface ModelPiece {
  piece: string;
  /** SentencePiece.Type: the values above, 5 = UNUSED, 6 = BYTE. */
  type: number;
  /** The unigram log-probability (BPE: the negated merge rank). */
  score: number;
}

export interface ModelInfo {
  pieces: ModelPiece[];
  /** TrainerSpec.bos_piece / eos_piece: the processor resolves BOS and EOS ids by these names. */
  bosPiece: string;
  eosPiece: string;
}

const MODEL_PIECES = 1;
const MODEL_TRAINER_SPEC = 2;
const PIECE_TEXT = 1;
const PIECE_SCORE = 2;
const PIECE_TYPE = 3;
const TRAINER_BOS_PIECE = 46;
const TRAINER_EOS_PIECE = 47;

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_BYTES = 2;
const WIRE_FIXED32 = 5;

/** Parses the parts of a ModelProto we need; throws an Error describing the first malformation found. */
export function parseModelProto(bytes: Uint8Array): ModelInfo {
  const info: ModelInfo = { pieces: [], bosPiece: '<s>', eosPiece: '</s>' };
  for (const field of readFields(bytes)) {
    if (field.number === MODEL_PIECES) info.pieces.push(parsePiece(bytesOf(field)));
    if (field.number === MODEL_TRAINER_SPEC) {
      for (const spec of readFields(bytesOf(field))) {
        if (spec.number === TRAINER_BOS_PIECE) info.bosPiece = textOf(spec);
        if (spec.number === TRAINER_EOS_PIECE) info.eosPiece = textOf(spec);
      }
    }
  }
  if (info.pieces.length === 0) throw new Error('no vocabulary pieces');
  return info;
}

function parsePiece(bytes: Uint8Array): ModelPiece {
  const piece: ModelPiece = { piece: '', type: PieceType.NORMAL, score: 0 };
  for (const field of readFields(bytes)) {
    if (field.number === PIECE_TEXT) piece.piece = textOf(field);
    if (field.number === PIECE_SCORE) piece.score = floatOf(field);
    if (field.number === PIECE_TYPE) piece.type = Number(field.value);
  }
  return piece;
}

interface Field {
  number: number;
  wireType: number;
  value: bigint | Uint8Array;
}

function* readFields(bytes: Uint8Array): Generator<Field> {
  let pos = 0;
  const varint = (): bigint => {
    let result = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      if (pos >= bytes.length) throw new Error('truncated varint');
      const byte = bytes[pos++]!;
      result |= BigInt(byte & 0x7f) << shift;
      if (byte < 0x80) return result;
    }
    throw new Error('varint too long');
  };
  const take = (length: number): Uint8Array => {
    if (pos + length > bytes.length) throw new Error('truncated field');
    const slice = bytes.subarray(pos, pos + length);
    pos += length;
    return slice;
  };
  while (pos < bytes.length) {
    const key = varint();
    const number = Number(key >> 3n);
    const wireType = Number(key & 7n);
    if (number === 0) throw new Error('invalid field number 0');
    switch (wireType) {
      case WIRE_VARINT:
        yield { number, wireType, value: varint() };
        break;
      case WIRE_FIXED64:
        yield { number, wireType, value: take(8) };
        break;
      case WIRE_BYTES:
        yield { number, wireType, value: take(Number(varint())) };
        break;
      case WIRE_FIXED32:
        yield { number, wireType, value: take(4) };
        break;
      default:
        throw new Error(`unsupported wire type ${wireType}`);
    }
  }
}

function bytesOf(field: Field): Uint8Array {
  if (field.wireType !== WIRE_BYTES || typeof field.value === 'bigint') {
    throw new Error(`field ${field.number} is not a length-delimited value`);
  }
  return field.value;
}

function floatOf(field: Field): number {
  if (field.wireType !== WIRE_FIXED32 || typeof field.value === 'bigint') throw new Error(`field ${field.number} is not a 32-bit float`);
  return new DataView(field.value.buffer, field.value.byteOffset, 4).getFloat32(0, true);
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function textOf(field: Field): string {
  return utf8.decode(bytesOf(field));
}
