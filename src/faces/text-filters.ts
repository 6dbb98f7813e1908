/**
 * What the faces do to generated text on its way to the client, each in one place: stop strings
 * (OpenAI's and Ollama's `stop`, MCP's `stop`) and tool calls.
 *
 * Tool calls: the engine offers tools in the `<tools>`/`<tool_call>` convention
 * (src/engine/llama/prompt-format.ts); a model calls one by writing
 * `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`. When a client forces a call
 * (`tool_choice` "required" or a named function), the output is constrained to that JSON object
 * itself, without the tags.
 */

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
/** A tool offered by a request, in OpenAI's shape (Ollama's is the same). */
export interface ToolDefinition {
  type: 'function';
  function: { name: string; description?: string; parameters?: Record<string, unknown> };
}

/** One call the model made. `arguments` is a JSON text, as OpenAI sends it. */
export interface ToolCall {
  name: string;
  arguments: string;
}

const OPEN = '<tool_call>';

/** The JSON Schema a forced call must match: one of `tools` (or the named one), with its parameters. */
export function forcedCallSchema(tools: readonly ToolDefinition[], name?: string): Record<string, unknown> {
  const chosen = name === undefined ? tools : tools.filter((t) => t.function.name === name);
  const variants = chosen.map((t) => ({
    type: 'object',
    properties: { name: { const: t.function.name }, arguments: t.function.parameters ?? { type: 'object' } },
    required: ['name', 'arguments'],
  }));
  return variants.length === 1 ? variants[0]! : { oneOf: variants };
}

/** Reads one call from a JSON text `{"name", "arguments"}`; undefined when it is not one. */
export function parseCall(text: string): ToolCall | undefined {
  try {
    const value = JSON.parse(text) as { name?: unknown; arguments?: unknown };
    if (typeof value.name !== 'string') return undefined;
    const args = typeof value.arguments === 'string' ? value.arguments : JSON.stringify(value.arguments ?? {});
    return { name: value.name, arguments: args };
  } catch {
    return undefined;
  }
}

/**
 * Splits generated text into what the client reads and the calls: text passes through until
 * `<tool_call>` appears (a partial tag is held back); from there on everything is captured and,
 * at the end, read as calls. Captured text that holds no valid call is given back as text.
 */
export class ToolCallCatcher {
  #held = '';
  #captured: string | undefined;

  push(text: string): string {
    if (this.#captured !== undefined) {
      this.#captured += text;
      return '';
    }
    const all = this.#held + text;
    const at = all.indexOf(OPEN);
    if (at >= 0) {
      this.#captured = all.slice(at);
      this.#held = '';
      return all.slice(0, at);
    }
    const keep = partialStop(all, [OPEN]);
    this.#held = all.slice(all.length - keep);
    return all.slice(0, all.length - keep);
  }

  /** The rest of the text and the calls, at the end of the run. */
  finish(): { text: string; calls: ToolCall[] } {
    const rest = this.#held;
    this.#held = '';
    if (this.#captured === undefined) return { text: rest, calls: [] };
    const calls: ToolCall[] = [];
    for (const match of this.#captured.matchAll(/<tool_call>\s*([\s\S]*?)\s*(?:<\/tool_call>|$)/g)) {
      const call = parseCall(match[1]!);
      if (call) calls.push(call);
    }
    return calls.length > 0 ? { text: '', calls } : { text: this.#captured, calls: [] };
  }
}
