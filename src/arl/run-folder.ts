/** Rules shared by the steps that read an ARL run folder: its tokenizer, the identity of a segment, and recap text. */
import { UserError } from '../io/errors.ts';
import { RECAP_CLOSE, RECAP_OPEN, type Tokenizer } from '../tokenizer/sentencepiece.ts';

/**
 * Refuses a tokenizer other than the one step 1 recorded (its sha256 in summary.json): token positions in the
 * folder mean nothing under another. `what` says what was made with it, `hint` what to pass instead.
 */
export function checkRunTokenizer(dir: string, recorded: unknown, tokenizer: Pick<Tokenizer, 'sha256'>, what: string, hint: string): void {
  if (recorded !== tokenizer.sha256) throw new UserError(`${dir}: ${what} with another tokenizer (sha256 ${String(recorded).slice(0, 12)}…); ${hint}`);
}

/** One key per distinct segment of a document (the tokens from `start` to `end`). */
export function segmentKey(doc: string, start: number, end: number): string {
  return JSON.stringify([doc, start, end]);
}

/** The text with every `<recap>` and `</recap>` replaced by a space, so a recap cannot open or close another. */
export function replaceRecapMarkers(text: string): string {
  return text.split(RECAP_OPEN).join(' ').split(RECAP_CLOSE).join(' ');
}
