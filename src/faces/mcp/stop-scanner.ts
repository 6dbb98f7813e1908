/**
 * Finds stop sequences in generated text as it arrives. Text that could be the start of a stop
 * sequence is held back until it is known not to be, so what `push` releases, joined, is exactly
 * the final text: everything before the first stop sequence.
 */
export class StopScanner {
  readonly #stops: readonly string[];
  #held = '';
  #stopped = false;

  constructor(stops: readonly string[]) {
    this.#stops = stops.filter((s) => s !== '');
  }

  get stopped(): boolean {
    return this.#stopped;
  }

  /** Takes the next piece of text; returns what can be released now. */
  push(delta: string): string {
    if (this.#stopped) return '';
    const text = this.#held + delta;
    let cut = -1;
    for (const stop of this.#stops) {
      const at = text.indexOf(stop);
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut >= 0) {
      this.#stopped = true;
      this.#held = '';
      return text.slice(0, cut);
    }
    const keep = this.#pendingPrefix(text);
    this.#held = text.slice(text.length - keep);
    return text.slice(0, text.length - keep);
  }

  /** The text is complete: releases what was held back. */
  flush(): string {
    const held = this.#held;
    this.#held = '';
    return held;
  }

  /** The length of the longest end of `text` that begins some stop sequence. */
  #pendingPrefix(text: string): number {
    let longest = 0;
    for (const stop of this.#stops) {
      for (let n = Math.min(stop.length - 1, text.length); n > longest; n--) {
        if (text.endsWith(stop.slice(0, n))) {
          longest = n;
          break;
        }
      }
    }
    return longest;
  }
}
