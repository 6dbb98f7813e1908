/**
 * Stop strings (OpenAI's and Ollama's `stop`): text is passed on as it comes, except what could be
 * the start of a stop string, which is held back until the next text decides. A stop string is
 * never passed on; once one is seen, nothing more is.
 */
export class StopFilter {
  readonly #stops: readonly string[];
  #held = '';
  #stopped = false;

  constructor(stops: readonly string[]) {
    this.#stops = stops.filter((s) => s !== '');
  }

  /** Whether a stop string was seen: the run should end. */
  get stopped(): boolean {
    return this.#stopped;
  }

  /** The text that can be passed on now. */
  push(text: string): string {
    if (this.#stopped) return '';
    const held = this.#held + text;
    let first = -1;
    for (const stop of this.#stops) {
      const at = held.indexOf(stop);
      if (at >= 0 && (first < 0 || at < first)) first = at;
    }
    if (first >= 0) {
      this.#stopped = true;
      this.#held = '';
      return held.slice(0, first);
    }
    const keep = partialStop(held, this.#stops);
    this.#held = held.slice(held.length - keep);
    return held.slice(0, held.length - keep);
  }

  /** What is still held back, at the end of the run. */
  flush(): string {
    const rest = this.#stopped ? '' : this.#held;
    this.#held = '';
    return rest;
  }
}

/** The length of the longest end of `text` that one of `stops` starts with: what must be held back. */
export function partialStop(text: string, stops: readonly string[]): number {
  let longest = 0;
  for (const stop of stops) {
    for (let n = Math.min(stop.length - 1, text.length); n > longest; n--) {
      if (text.endsWith(stop.slice(0, n))) {
        longest = n;
        break;
      }
    }
  }
  return longest;
}
