/**
 * LIFT step 1, segmentation: the long input is cut into overlapping segments (the paper: 2048
 * tokens, stride 768, for Llama-3's 8192-token window; scaled here to the model's window).
 */
import { UserError } from '../io/errors.ts';

/** The paper's sizes relative to its 8192-token window. */
const PAPER_WINDOW = 8192;
const PAPER_SEGMENT = 2048;
const PAPER_STRIDE = 768;
/** Head + tail context of a contextualized example: 4096 of 8192. */
const PAPER_CONTEXT = 4096;

export interface SegmentSizes {
  length: number;
  stride: number;
  /** Tokens of head + tail context in a contextualized example. */
  context: number;
}

/** The paper's segment length, stride and context scaled to a model window of `window` tokens. */
export function defaultSegmentSizes(window: number): SegmentSizes {
  const scaled = (n: number) => Math.max(1, Math.round((n * window) / PAPER_WINDOW));
  return { length: scaled(PAPER_SEGMENT), stride: scaled(PAPER_STRIDE), context: scaled(PAPER_CONTEXT) };
}

/**
 * Segments [start, end) of `tokenCount` tokens: every `stride` tokens a segment of `length`, the
 * last one ending at the input's end so every token is covered. An input shorter than one
 * segment is one (short) segment.
 */
export function segmentRanges(tokenCount: number, length: number, stride: number): [number, number][] {
  if (tokenCount <= 0) throw new UserError('the input is empty: nothing to train on');
  if (stride > length) throw new UserError(`--segment-stride ${stride} exceeds --segment-length ${length}: tokens between segments would never be trained on`);
  if (tokenCount <= length) return [[0, tokenCount]];
  const ranges: [number, number][] = [];
  for (let start = 0; start + length < tokenCount; start += stride) ranges.push([start, start + length]);
  ranges.push([tokenCount - length, tokenCount]);
  return ranges;
}
