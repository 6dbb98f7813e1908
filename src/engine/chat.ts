/** Conversations (`RKLLMInput.messages`) for engines that take one prompt per run. */
import { fault } from '../errors.js';
import type { ChatMessage } from './params.js';

/** The role names a flattened transcript gives each earlier turn. */
const SPEAKER: Record<ChatMessage['role'], string> = { system: 'System', user: 'User', assistant: 'Assistant', tool: 'Tool' };

/**
 * A conversation as one prompt, for a runtime that wraps each prompt in its own chat template
 * (RKLLM): the last message is the prompt, with its role; earlier turns go before it as a plain
 * transcript ("User: ...", "Assistant: ..."). Throws INVALID_PARAMS for an empty conversation or
 * one that does not end with a user or tool message.
 */
export function flattenChat(messages: readonly ChatMessage[]): { role: 'user' | 'tool'; prompt: string } {
  const last = lastTurn(messages);
  const earlier = messages.slice(0, -1).map((m) => `${SPEAKER[m.role]}: ${m.content}`);
  return { role: last.role, prompt: earlier.length === 0 ? last.content : `${earlier.join('\n')}\n${SPEAKER[last.role]}: ${last.content}` };
}

/** The message a reply answers: the last one, which must be from the user or a tool. */
export function lastTurn(messages: readonly ChatMessage[]): ChatMessage & { role: 'user' | 'tool' } {
  const last = messages.at(-1);
  if (!last) throw fault('INVALID_PARAMS', 'detail', { detail: '"messages" is empty: there is nothing to answer' });
  if (last.role !== 'user' && last.role !== 'tool') {
    throw fault('INVALID_PARAMS', 'detail', { detail: `the last message must be from "user" or "tool"; got "${last.role}"` });
  }
  return last as ChatMessage & { role: 'user' | 'tool' };
}

/** Where an image goes in a prompt; the runtime replaces it with the image tags and embeddings. */
export const IMAGE_PLACEHOLDER = '<image>';

/**
 * A message's text with its `count` images placed, as Rockchip's VL demos write it: text that
 * already holds one `<image>` per image is kept; text with none gets them before it. Throws
 * INVALID_PARAMS when the text holds some placeholders, but not one per image.
 */
export function placeImages(text: string, count: number): string {
  const held = text.split(IMAGE_PLACEHOLDER).length - 1;
  if (held === count) return text;
  if (held === 0) return IMAGE_PLACEHOLDER.repeat(count) + text;
  throw fault('INVALID_PARAMS', 'detail', {
    detail: `the text holds ${held} "${IMAGE_PLACEHOLDER}" placeholders for ${count} images: give one per image, or none to put them before the text`,
  });
}
