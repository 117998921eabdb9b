/** Types for the parts of sentencepiece-js (which ships none) that we use. */
declare module 'sentencepiece-js' {
  export class SentencePieceProcessor {
    /** Reads the model file with fs.readFileSync (no network) into a fresh WASM instance. */
    load(modelPath: string): Promise<void>;
    encodeIds(text: string): number[];
    decodeIds(ids: number[]): string;
    /** The embind C++ processor; `load` discards the load status, but `status()` still reports it. */
    processor: { status(): { ToString(): string; delete(): void } };
  }
}
