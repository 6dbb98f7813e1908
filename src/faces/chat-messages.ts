/** Chat messages and tools of both APIs (OpenAI's and Ollama's are the same shape): the engine's conversation (`RKLLMInput.messages`). */
import type { ChatMessage } from '../engine/types.js';
import { badField, field } from './http-kit.js';
import type { ToolDefinition } from './text-filters.js';

/** A call the assistant made earlier in the conversation, written back as the model wrote it. */
export function toolCallText(name: string, args: unknown): string {
  const parsed = typeof args === 'string' ? safeParse(args) : args;
  return `<tool_call>\n${JSON.stringify({ name, arguments: parsed ?? {} })}\n</tool_call>`;
}

function safeParse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** The text of a message's content: a string, null, or (OpenAI) an array of parts, of which text parts are kept. */
export function contentText(content: unknown, where: string): string {
  if (content === undefined || content === null) return '';
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((part: unknown, i) => {
        const p = part as { type?: unknown; text?: unknown };
        if (p?.type === 'text' && typeof p.text === 'string') return p.text;
        throw badField(`${where}[${i}]`, `is a content part of type ${JSON.stringify(p?.type)}; only "text" parts are supported`);
      })
      .join('');
  }
  throw badField(where, 'must be a string or an array of content parts');
}

const ROLES: Record<string, ChatMessage['role']> = {
  system: 'system',
  developer: 'system',
  user: 'user',
  assistant: 'assistant',
  tool: 'tool',
};

/** The calls an assistant message made (`tool_calls`, `{"function": {"name", "arguments"}}` each), as name and arguments. */
function readCalls(m: Record<string, unknown>, where: string): Array<{ name: string; args: unknown }> {
  if (!Array.isArray(m.tool_calls)) return [];
  return m.tool_calls.map((c: { function?: { name?: unknown; arguments?: unknown } } | null, i) => {
    if (typeof c?.function !== 'object' || c.function === null || typeof c.function.name !== 'string')
      throw badField(`${where}.tool_calls[${i}]`, 'must be {"function": {"name", "arguments"}}');
    return { name: c.function.name, args: c.function.arguments };
  });
}

/**
 * Reads `messages` (OpenAI's or Ollama's shape): each has a role and a content; an assistant's
 * `tool_calls` are appended to its content as the model writes them.
 */
export function readMessages(value: unknown): ChatMessage[] {
  if (!Array.isArray(value) || value.length === 0) throw badField('messages', 'must be a non-empty array of messages');
  return value.map((item: unknown, i): ChatMessage => {
    if (typeof item !== 'object' || item === null) throw badField(`messages[${i}]`, 'must be an object');
    const m = item as Record<string, unknown>;
    const role = typeof m.role === 'string' ? ROLES[m.role] : undefined;
    if (!role) throw badField(`messages[${i}].role`, `must be one of system, user, assistant, tool; got ${JSON.stringify(m.role)}`);
    let content = contentText(m.content, `messages[${i}].content`);
    if (role === 'assistant') {
      const calls = readCalls(m, `messages[${i}]`).map((c) => toolCallText(c.name, c.args));
      content = [content, ...calls].filter((t) => t !== '').join('\n');
    }
    return { role, content };
  });
}

/** `tools`: each `{"type": "function", "function": {"name", "parameters"}}`; Ollama lets `type` out (`typed` false). */
export function readTools(body: Record<string, unknown>, typed: boolean): ToolDefinition[] {
  const tools = field(body, 'tools', 'array') ?? [];
  tools.forEach((t, i) => {
    const tool = t as { type?: unknown; function?: { name?: unknown } } | null;
    if ((typed && tool?.type !== 'function') || typeof tool?.function?.name !== 'string')
      throw badField(`tools[${i}]`, 'must be {"type": "function", "function": {"name", "parameters"}}');
  });
  return tools as ToolDefinition[];
}
