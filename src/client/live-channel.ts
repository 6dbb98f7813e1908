import { EventEmitter, on } from 'node:events';
import { resultOf, type Channel, type Chunk, type Reply, type RunParams } from './types.js';
import type { Wire } from './wires.js';

/**
 * JSON-RPC over a live connection (WebSocket, TCP): replies are routed by id, and a stream's
 * chunks are the many replies to its `rkllm_run_async`.
 */
export class LiveChannel implements Channel {
  readonly #wire: Wire;
  readonly #routes = new Map<number, (reply: Reply | Error) => void>();
  #nextId = 1;
  #closedBy: Error | undefined;

  constructor(wire: Wire) {
    this.#wire = wire;
    wire.onMessage = (text) => {
      const reply = JSON.parse(text) as Reply;
      if (typeof reply.id === 'number') this.#routes.get(reply.id)?.(reply);
    };
    wire.onClose = (error) => {
      this.#closedBy ??= error;
      for (const route of this.#routes.values()) route(error);
      this.#routes.clear();
    };
  }

  async call(method: string, params?: unknown): Promise<unknown> {
    const reply = await new Promise<Reply | Error>((resolve) => {
      const id = this.#send(method, params, (reply) => {
        this.#routes.delete(id);
        resolve(reply);
      });
    });
    return resultOf(reply);
  }

  async *stream(params: RunParams): AsyncGenerator<Chunk, void, undefined> {
    // Listening before the request is sent: a closed connection answers it at once.
    const replies = new EventEmitter();
    const received = on(replies, 'reply') as AsyncIterableIterator<[Reply | Error]>;
    const id = this.#send('rkllm_run_async', params, (reply) => replies.emit('reply', reply));
    let streamId: string | undefined;
    let ended = false;
    try {
      for await (const [reply] of received) {
        const { chunk } = resultOf(reply) as { chunk: Chunk };
        streamId = chunk.stream_id;
        ended = chunk.end;
        yield chunk;
        if (ended) return;
      }
    } finally {
      this.#routes.delete(id);
      if (!ended && !this.#closedBy)
        await this.call('rkllm_abort', streamId ? { stream_id: streamId } : { request_id: id }).catch(() => {});
    }
  }

  close(): Promise<void> {
    return this.#wire.close();
  }

  #send(method: string, params: unknown, route: (reply: Reply | Error) => void): number {
    const id = this.#nextId++;
    if (this.#closedBy) {
      route(this.#closedBy);
      return id;
    }
    this.#routes.set(id, route);
    this.#wire.send(JSON.stringify({ jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) }));
    return id;
  }
}
