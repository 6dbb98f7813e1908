import { resultOf, type Channel, type Chunk, type Reply, type RkllmClientOptions, type RunParams } from './types.js';

/**
 * JSON-RPC over HTTP: one `POST /` per call. A stream is started with `rkllm_run_async` and read
 * by long polls that carry the last seq received (`after_seq`), so a poll whose reply is lost is
 * simply sent again and nothing is lost or repeated.
 */
export class HttpChannel implements Channel {
  readonly #options: RkllmClientOptions;
  readonly #fetch: typeof fetch;
  #nextId = 1;

  constructor(options: RkllmClientOptions) {
    this.#options = options;
    this.#fetch = options.fetch ?? globalThis.fetch;
  }

  async call(method: string, params?: unknown): Promise<unknown> {
    const { url, apiKey } = this.#options;
    const body = JSON.stringify({ jsonrpc: '2.0', id: this.#nextId++, method, ...(params === undefined ? {} : { params }) });
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (apiKey !== undefined) headers.authorization = `Bearer ${apiKey}`;
    const res = await this.#fetch(url, { method: 'POST', body, headers });
    const text = await res.text();
    if (!text.startsWith('{')) throw new Error(`${url} answered HTTP ${res.status} without JSON-RPC: ${text.slice(0, 200)}`);
    return resultOf(JSON.parse(text) as Reply);
  }

  async *stream(params: RunParams): AsyncGenerator<Chunk, void, undefined> {
    const { stream_id } = (await this.call('rkllm_run_async', params)) as { stream_id: string };
    let afterSeq = -1;
    let ended = false;
    try {
      while (!ended) {
        const chunk = await this.#poll(stream_id, afterSeq);
        if (!chunk) continue;
        afterSeq = chunk.seq;
        ended = chunk.end;
        yield chunk;
      }
      await this.call('poll', { stream_id, after_seq: afterSeq, wait_ms: 0 }).catch(() => {});
    } finally {
      if (!ended) await this.call('rkllm_abort', { stream_id }).catch(() => {});
    }
  }

  /** One long poll, repeated when its reply is lost on the network. */
  async #poll(streamId: string, afterSeq: number): Promise<Chunk | null> {
    for (let failures = 0; ; failures++) {
      try {
        const { chunk } = (await this.call('poll', {
          stream_id: streamId,
          after_seq: afterSeq,
          wait_ms: this.#options.pollWaitMs ?? 5000,
        })) as {
          chunk: Chunk | null;
        };
        return chunk;
      } catch (err) {
        if (!(err instanceof TypeError || err instanceof SyntaxError) || failures >= (this.#options.maxRetries ?? 5)) throw err;
      }
    }
  }

  async close(): Promise<void> {}
}
