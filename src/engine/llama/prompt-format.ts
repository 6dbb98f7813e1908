import { fault } from '../../errors.js';
import type { ChatTemplate, FunctionTools, RKLLMInput } from '../types.js';

/** A piece of prompt text; `special` pieces may spell special tokens (e.g. `<|im_start|>`), user text may not. */
export interface PromptSegment {
  text: string;
  special: boolean;
}

/** The tag that wraps a function result when `rkllm_set_function_tools` named none. */
export const DEFAULT_TOOL_RESPONSE_TAG = 'tool_response';

/** Qwen3's empty thinking block: appended to a turn when a thinking model is asked not to think. */
export const EMPTY_THINKING = '<think>\n\n</think>\n\n';

const EMPTY_TEMPLATE: ChatTemplate = { system_prompt: '', prompt_prefix: '', prompt_postfix: '' };

/** Checks that `tools` is a JSON array of objects and returns one compact JSON line per tool. */
function parseTools(tools: string): string[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(tools);
  } catch (err) {
    throw fault('INVALID_PARAMS', 'detail', {
      detail: `"tools" must be a JSON array of tool definitions; it is not JSON (${(err as Error).message})`,
    });
  }
  if (!Array.isArray(parsed) || !parsed.every((tool) => typeof tool === 'object' && tool !== null && !Array.isArray(tool))) {
    throw fault('INVALID_PARAMS', 'detail', {
      detail: `"tools" must be a JSON array of tool definitions (objects); got ${tools.slice(0, 80)}`,
    });
  }
  return parsed.map((tool) => JSON.stringify(tool));
}

/** The system text that offers tools, in the `<tools>`/`<tool_call>` convention of Qwen-style models. */
function toolsSystemText(systemPrompt: string, toolLines: string[]): string {
  return (
    `${systemPrompt}\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n` +
    `You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n${toolLines.join('\n')}\n</tools>\n\n` +
    'For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n' +
    '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
  );
}

/**
 * How prompts are wrapped before tokenization: RKLLM's chat template (system prompt, prefix,
 * postfix), the function tools offered in the system prompt, the "tool" role, and thinking mode.
 * Immutable: `withTemplate` and `withTools` return a new format, so a caller can check one
 * before adopting it.
 */
export class PromptFormat {
  readonly template: ChatTemplate;
  /** The system text that offers the tools; undefined when none are offered. */
  readonly #toolsSystem: string | undefined;
  readonly #toolTag: string;

  constructor(template: ChatTemplate = EMPTY_TEMPLATE, toolsSystem?: string, toolTag: string = DEFAULT_TOOL_RESPONSE_TAG) {
    this.template = { ...template };
    this.#toolsSystem = toolsSystem;
    this.#toolTag = toolTag;
  }

  withTemplate(template: ChatTemplate): PromptFormat {
    return new PromptFormat(template, this.#toolsSystem, this.#toolTag);
  }

  /**
   * Offers tools and names the tag of tool results; an empty `tools` string offers none. Throws
   * -32602 when `tools` is not a JSON array of objects.
   */
  withTools(tools: FunctionTools): PromptFormat {
    const system = tools.tools.trim() === '' ? undefined : toolsSystemText(tools.system_prompt, parseTools(tools.tools));
    return new PromptFormat(this.template, system, tools.tool_response_str || DEFAULT_TOOL_RESPONSE_TAG);
  }

  /** What starts a conversation: the tools' system text when tools are offered, else the template's system prompt. */
  system(): PromptSegment[] {
    const text = this.#toolsSystem ?? this.template.system_prompt;
    return text === '' ? [] : [{ text, special: true }];
  }

  /**
   * One turn: the prompt between the template's prefix and postfix. A "tool" turn wraps the
   * prompt in the tool response tag. When the model thinks (`thinkingModel`) and the input asks
   * it not to, the turn ends with an empty thinking block, as Qwen3's template does.
   */
  turn(input: Pick<RKLLMInput, 'role' | 'enable_thinking'>, prompt: string, thinkingModel: boolean): PromptSegment[] {
    const t = this.template;
    const tag = this.#toolTag;
    const body: PromptSegment[] =
      input.role === 'tool'
        ? [
            { text: `<${tag}>\n`, special: true },
            { text: prompt, special: false },
            { text: `\n</${tag}>`, special: true },
          ]
        : [{ text: prompt, special: false }];
    const thinking = thinkingModel && !input.enable_thinking ? EMPTY_THINKING : '';
    return [{ text: t.prompt_prefix, special: true }, ...body, { text: `${t.prompt_postfix}${thinking}`, special: true }].filter(
      (segment) => segment.text !== '',
    );
  }
}
