/** Chat messages and tools of both APIs (OpenAI's and Ollama's are the same shape): the engine's conversation (`RKLLMInput.messages`). */
import { placeImages } from '../engine/chat.js';
import { imageBytes, type ImageLimits } from '../engine/rknn/image.js';
import type { ChatMessage } from '../engine/types.js';
import { ServerError } from '../errors.js';
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

/** How big an image a face decodes: unbounded here, as the body's limit bounds it; the engine checks the image limits (vision.*). */
const UNBOUNDED: ImageLimits = { maxBytes: Number.MAX_SAFE_INTEGER, maxPixels: Number.MAX_SAFE_INTEGER };

/**
 * An image sent inline, as base64 or a `data:image/...;base64,` URL, as bytes. The server fetches
 * nothing: an http(s) URL is INVALID_PARAMS (reason `image_url`). A refusal names `where` (OpenAI's `param`).
 */
export function readImage(source: unknown, where: string): Uint8Array {
  if (typeof source !== 'string' || source === '')
    throw badField(where, 'must be an image as base64 or a data URL (data:image/png;base64,...)');
  return naming(where, () => imageBytes(source, UNBOUNDED));
}

/** Runs `fn`; a ServerError it throws names `where`, in its message and as its `path`. */
export function naming<T>(where: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (!(err instanceof ServerError)) throw err;
    throw new ServerError(err.name, `${err.message} ("${where}")`, { ...(err.data as object), path: where });
  }
}

/** A message as the faces read it: its content, with one `<image>` per image placed (`placeImages`), and its images. */
export interface FaceMessage extends ChatMessage {
  images?: Uint8Array[];
}

type Part = { type?: unknown; text?: unknown; image_url?: unknown; data?: unknown } | null;

/**
 * A message's content: a string, null, or an array of parts: text (`{"type": "text", "text"}`),
 * OpenAI's `{"type": "image_url", "image_url": {"url": "data:..."}}` (`detail` ignored) and MCP's
 * `{"type": "image", "data": base64, "mimeType"}`; the text parts joined, the images in order.
 */
function readContent(content: unknown, where: string): { text: string; images: Uint8Array[] } {
  const images: Uint8Array[] = [];
  if (content === undefined || content === null) return { text: '', images };
  if (typeof content === 'string') return { text: content, images };
  if (!Array.isArray(content)) throw badField(where, 'must be a string or an array of content parts');
  const text = content
    .map((part: Part, i) => {
      const at = `${where}[${i}]`;
      if (part?.type === 'text' && typeof part.text === 'string') return part.text;
      if (part?.type === 'image_url') {
        const url = typeof part.image_url === 'string' ? part.image_url : (part.image_url as { url?: unknown } | null)?.url;
        images.push(readImage(url, `${at}.image_url.url`));
      } else if (part?.type === 'image') images.push(readImage(part.data, `${at}.data`));
      else throw badField(at, `is a content part of type ${JSON.stringify(part?.type)}; the parts are "text", "image_url" and "image"`);
      return '';
    })
    .join('');
  return { text, images };
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
 * Reads `messages` (OpenAI's, Ollama's or the MCP chat tool's shape): each has a role and a
 * content, and may have images (image parts in the content, Ollama's `images`: base64 strings);
 * an assistant's `tool_calls` are appended to its content as the model writes them.
 */
export function readMessages(value: unknown): FaceMessage[] {
  if (!Array.isArray(value) || value.length === 0) throw badField('messages', 'must be a non-empty array of messages');
  return value.map((item: unknown, i): FaceMessage => {
    if (typeof item !== 'object' || item === null) throw badField(`messages[${i}]`, 'must be an object');
    const m = item as Record<string, unknown>;
    const role = typeof m.role === 'string' ? ROLES[m.role] : undefined;
    if (!role) throw badField(`messages[${i}].role`, `must be one of system, user, assistant, tool; got ${JSON.stringify(m.role)}`);
    let { text: content, images } = readContent(m.content, `messages[${i}].content`);
    if (m.images !== undefined && m.images !== null) {
      if (!Array.isArray(m.images)) throw badField(`messages[${i}].images`, 'must be an array of images as base64');
      images = [...images, ...m.images.map((image: unknown, j) => readImage(image, `messages[${i}].images[${j}]`))];
    }
    if (role === 'assistant') {
      const calls = readCalls(m, `messages[${i}]`).map((c) => toolCallText(c.name, c.args));
      content = [content, ...calls].filter((t) => t !== '').join('\n');
    }
    return images.length === 0
      ? { role, content }
      : { role, content: naming(`messages[${i}].content`, () => placeImages(content, images.length)), images };
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
