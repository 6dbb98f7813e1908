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
    const { pass, held, from } = splitAtMark(this.#held + text, this.#stops);
    this.#held = held;
    this.#stopped = from !== undefined;
    return pass;
  }

  /** What is still held back, at the end of the run. */
  flush(): string {
    const rest = this.#stopped ? '' : this.#held;
    this.#held = '';
    return rest;
  }
}

/**
 * Splits `text` at the first of `marks`: `pass` goes on now, `held` is a partial mark at the end
 * (held back until the next text decides), `from` is the text from the mark on (undefined without one).
 */
function splitAtMark(text: string, marks: readonly string[]): { pass: string; held: string; from?: string } {
  let first = -1;
  for (const mark of marks) {
    const at = text.indexOf(mark);
    if (at >= 0 && (first < 0 || at < first)) first = at;
  }
  if (first >= 0) return { pass: text.slice(0, first), held: '', from: text.slice(first) };
  let keep = 0;
  for (const mark of marks) {
    for (let n = Math.min(mark.length - 1, text.length); n > keep; n--) {
      if (text.endsWith(mark.slice(0, n))) {
        keep = n;
        break;
      }
    }
  }
  return { pass: text.slice(0, text.length - keep), held: text.slice(text.length - keep) };
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
    const { pass, held, from } = splitAtMark(this.#held + text, [OPEN]);
    this.#held = held;
    this.#captured = from;
    return pass;
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
