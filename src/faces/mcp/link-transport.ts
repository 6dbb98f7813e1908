import type { JSONRPCMessage, Transport } from '@modelcontextprotocol/server';
import type { StdioLink } from '../../transports/stdio.js';

type Id = string | number;

/**
 * The SDK's `Transport` over the project's stdio connection, which it shares with JSON-RPC: the
 * stdio transport hands over MCP's messages (`deliver`), and this writes MCP's replies as lines.
 * Each request in progress holds the connection open, so that once stdin ends its reply is still
 * flushed; a cancelled request (which the SDK does not answer) and closing release their holds.
 */
export class LinkTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: <T extends JSONRPCMessage>(message: T) => void;
  readonly #link: StdioLink;
  readonly #holds = new Map<string, () => void>();
  #closed = false;

  constructor(link: StdioLink) {
    this.#link = link;
  }

  async start(): Promise<void> {}

  /** One message from the client. */
  deliver(message: JSONRPCMessage): void {
    if (this.#closed) return;
    if ('method' in message && 'id' in message) this.#holds.set(key(message.id), this.#link.hold());
    if ('method' in message && message.method === 'notifications/cancelled') {
      const requestId = (message.params as { requestId?: Id } | undefined)?.requestId;
      if (requestId !== undefined) this.#release(requestId);
    }
    this.onmessage?.(message);
  }

  async send(message: JSONRPCMessage): Promise<void> {
    if (this.#closed) return;
    this.#link.send(message);
    if (!('method' in message) && 'id' in message && message.id !== undefined) this.#release(message.id);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const release of this.#holds.values()) release();
    this.#holds.clear();
    this.onclose?.();
  }

  #release(id: Id): void {
    this.#holds.get(key(id))?.();
    this.#holds.delete(key(id));
  }
}

function key(id: Id): string {
  return JSON.stringify(id);
}
