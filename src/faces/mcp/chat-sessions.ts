/** One message of a conversation, as the `chat` tool takes it. */
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/**
 * The histories of `chat` sessions, by client and session name: a session is seen only by the
 * client (API key, or address without keys) that made it. At most `max` are kept; the least
 * recently used is forgotten first.
 */
export class ChatSessions {
  readonly #max: number;
  readonly #histories = new Map<string, readonly ChatMessage[]>();

  constructor(max: number) {
    this.#max = max;
  }

  get size(): number {
    return this.#histories.size;
  }

  history(clientId: string, session: string): readonly ChatMessage[] {
    return this.#histories.get(key(clientId, session)) ?? [];
  }

  save(clientId: string, session: string, messages: readonly ChatMessage[]): void {
    const k = key(clientId, session);
    this.#histories.delete(k);
    this.#histories.set(k, messages);
    for (const oldest of this.#histories.keys()) {
      if (this.#histories.size <= this.#max) break;
      this.#histories.delete(oldest);
    }
  }
}

function key(clientId: string, session: string): string {
  return JSON.stringify([clientId, session]);
}

const SPEAKERS = { system: 'System', user: 'User', assistant: 'Assistant' } as const;

/**
 * A conversation as one prompt: each message on its own lines after its speaker, ending with the
 * assistant's turn to speak. Engine-neutral: the engine wraps it in its own chat template as one
 * user turn.
 */
export function conversationPrompt(messages: readonly ChatMessage[]): string {
  return `${messages.map((m) => `${SPEAKERS[m.role]}: ${m.content}`).join('\n')}\nAssistant:`;
}
