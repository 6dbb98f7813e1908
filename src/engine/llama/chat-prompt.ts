/**
 * A conversation (`RKLLMInput.messages`) as tokens. A model whose GGUF carries a chat template
 * gets it, through node-llama-cpp's chat wrappers (`resolveChatWrapper`, which picks a
 * specialised wrapper or runs the Jinja template); any other model gets the configured template
 * (`rkllm_set_chat_template`, {@link PromptFormat}): its system prompt (or the request's system
 * messages, as plain text), each user or tool turn between its prefix and postfix, and each
 * assistant turn as it was written.
 */
import { resolveChatWrapper, type ChatHistoryItem, type ChatWrapper, type Token } from 'node-llama-cpp';
import { lastTurn } from '../chat.js';
import type { ChatMessage, FunctionTools } from '../types.js';
import type { LoadedModel } from './model.js';
import { DEFAULT_TOOL_RESPONSE_TAG, PromptFormat, type PromptSegment } from './prompt-format.js';

function systemText(messages: readonly ChatMessage[]): string {
  return messages
    .filter((m) => m.role === 'system')
    .map((m) => m.content)
    .join('\n');
}

export function tokenize(loaded: LoadedModel, segments: PromptSegment[]): Token[] {
  return segments.flatMap((segment) => loaded.model.tokenize(segment.text, segment.special));
}

/** BOS (when the model wants it), then `start` (a system prompt): how every conversation starts. */
export function startTokens(loaded: LoadedModel, start: PromptSegment[]): Token[] {
  const bos = loaded.model.tokens.bos;
  return [...(bos !== null && loaded.model.tokens.shouldPrependBosToken ? [bos] : []), ...tokenize(loaded, start)];
}

/** The tokens of a conversation, from BOS to where the assistant's reply begins. */
export function chatTokens(loaded: LoadedModel, messages: readonly ChatMessage[], format: PromptFormat, tools?: FunctionTools): Token[] {
  lastTurn(messages);
  if (loaded.chatWrapper === undefined) {
    const template = loaded.model.fileInfo.metadata.tokenizer?.chat_template;
    loaded.chatWrapper = typeof template === 'string' && template !== '' ? resolveChatWrapper(loaded.model) : null;
  }
  const wrapper = loaded.chatWrapper;
  return wrapper ? withWrapper(loaded, wrapper, messages, tools) : withFormat(loaded, messages, format, tools);
}

function withWrapper(loaded: LoadedModel, wrapper: ChatWrapper, messages: readonly ChatMessage[], tools?: FunctionTools): Token[] {
  let system = systemText(messages);
  if (tools) system = new PromptFormat().withTools({ ...tools, system_prompt: system }).system()[0]?.text ?? system;
  const tag = tools?.tool_response_str || DEFAULT_TOOL_RESPONSE_TAG;
  const history: ChatHistoryItem[] = system === '' ? [] : [{ type: 'system', text: system }];
  for (const m of messages) {
    if (m.role === 'user') history.push({ type: 'user', text: m.content });
    else if (m.role === 'tool') history.push({ type: 'user', text: `<${tag}>\n${m.content}\n</${tag}>` });
    else if (m.role === 'assistant') history.push({ type: 'model', response: [m.content] });
  }
  history.push({ type: 'model', response: [] });
  return wrapper.generateContextState({ chatHistory: history }).contextText.tokenize(loaded.model.tokenizer);
}

function withFormat(loaded: LoadedModel, messages: readonly ChatMessage[], format: PromptFormat, tools?: FunctionTools): Token[] {
  const system = systemText(messages);
  let start: PromptSegment[];
  if (tools) start = format.withTools({ ...tools, system_prompt: system || format.template.system_prompt }).system();
  else start = system === '' ? format.system() : [{ text: system, special: false }];
  const tokens = startTokens(loaded, start);
  for (const m of messages) {
    if (m.role === 'assistant') tokens.push(...tokenize(loaded, [{ text: m.content, special: false }]));
    else if (m.role !== 'system')
      tokens.push(...tokenize(loaded, format.turn({ role: m.role, enable_thinking: false }, m.content, loaded.thinking)));
  }
  return tokens;
}
