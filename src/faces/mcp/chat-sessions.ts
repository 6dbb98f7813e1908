import type { FaceMessage } from '../chat-messages.js';

/**
 * The histories of `chat` sessions, by client and session name: a session is seen only by the
 * client (API key, or address without keys) that made it. At most `max` are kept; the least
 * recently used is forgotten first. A message's images are kept with it, as the next call sends them again.
 */
export class ChatSessions {
  readonly #max: number;
  readonly #histories = new Map<string, readonly FaceMessage[]>();

  constructor(max: number) {
    this.#max = max;
  }

  history(clientId: string, session: string): readonly FaceMessage[] {
    return this.#histories.get(key(clientId, session)) ?? [];
  }

  save(clientId: string, session: string, messages: readonly FaceMessage[]): void {
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
