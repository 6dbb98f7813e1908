import type { FinishReason } from '../engine/types.js';

/**
 * Where a JSON value ends in a generated text that arrives in pieces: strings and escapes are
 * skipped, brackets counted. An object, array or string ends at its closing character; a bare
 * number or literal at the whitespace after it (only then can it not go on). A run constrained to
 * JSON (`json_schema`) ends there, as llama-server ends once its grammar can only end.
 */
export class JsonEnd {
  #depth = 0;
  #inString = false;
  #escaped = false;
  #scalar = false;
  #done = false;

  get done(): boolean {
    return this.#done;
  }

  /** How much of `text` belongs to the value: all of it while the value goes on, else up to its end. */
  push(text: string): number {
    if (this.#done) return 0;
    for (let i = 0; i < text.length; i++) {
      const c = text[i]!;
      if (this.#inString) {
        if (this.#escaped) this.#escaped = false;
        else if (c === '\\') this.#escaped = true;
        else if (c === '"') {
          this.#inString = false;
          if (this.#depth === 0) return this.#end(i + 1);
        }
      } else if (c === '"') this.#inString = true;
      else if (c === '{' || c === '[') this.#depth++;
      else if (c === '}' || c === ']') {
        if (--this.#depth <= 0) return this.#end(i + 1);
      } else if (/\s/.test(c)) {
        if (this.#scalar) return this.#end(i);
      } else if (this.#depth === 0) this.#scalar = true;
    }
    return text.length;
  }

  /** The finish reason of a run whose output this was: one stopped at its value's end (or at its length just after) ends by "stop". */
  finish(reason: FinishReason): FinishReason {
    return this.#done && (reason === 'abort' || reason === 'length') ? 'stop' : reason;
  }

  #end(at: number): number {
    this.#done = true;
    return at;
  }
}
