/** A minimal JSON-RPC over HTTP client for tests, on Node's own fetch. */

export interface RpcResponse<T = any> {
  jsonrpc: '2.0';
  id: string | number | null;
  result?: T;
  error?: { code: number; message: string; data?: any };
}

export interface Chunk {
  seq: number;
  delta: string;
  end: boolean;
  stream_id?: string;
  finish_reason?: string;
  perf?: Record<string, number>;
  error?: { code: number; message: string };
}

export class HttpRpc {
  #nextId = 1;
  /** `headers` go with every request (e.g. an Authorization header). */
  constructor(
    readonly url: string,
    readonly headers: Record<string, string> = {},
  ) {}

  /** POSTs a raw body; returns status, headers and parsed body (undefined for an empty body). */
  async raw(
    body: string | Uint8Array,
    headers: Record<string, string> = {},
  ): Promise<{ status: number; body: any; text: string; headers: Headers }> {
    const res = await fetch(this.url, {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/json', ...this.headers, ...headers },
    });
    const text = await res.text();
    return { status: res.status, text, body: text === '' ? undefined : JSON.parse(text), headers: res.headers };
  }

  /** Sends one request with a fresh numeric id (or the id given). */
  async call<T = any>(method: string, params?: unknown, id: string | number | null = this.#nextId++): Promise<RpcResponse<T>> {
    const { body } = await this.raw(JSON.stringify({ jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) }));
    return body as RpcResponse<T>;
  }

  /** Calls and returns the result, throwing on a JSON-RPC error. */
  async result<T = any>(method: string, params?: unknown): Promise<T> {
    const res = await this.call<T>(method, params);
    if (res.error) throw new Error(`${method}: ${res.error.code} ${res.error.message}`);
    return res.result as T;
  }

  /** Starts a stream; returns its stream id and request id. */
  async start(params: Record<string, unknown>, id?: string | number): Promise<{ stream_id: string; request_id: string | number }> {
    const res = await this.call('rkllm_run_async', params, id ?? this.#nextId++);
    if (res.error) throw new Error(`rkllm_run_async: ${res.error.code} ${res.error.message}`);
    return res.result;
  }

  /**
   * Long-polls a stream to its end and returns every chunk received. With `afterSeq`, polls
   * carry the last seq seen (the loss-free mode); `drop` decides which replies to "lose".
   */
  async drain(
    streamId: string,
    options: { waitMs?: number; afterSeq?: boolean; drop?: (n: number) => boolean } = {},
  ): Promise<{ chunks: Chunk[]; text: string; polls: number; last: Chunk }> {
    const chunks: Chunk[] = [];
    let lastSeq = -1;
    let polls = 0;
    for (;;) {
      const params: Record<string, unknown> = { stream_id: streamId, wait_ms: options.waitMs ?? 2000 };
      if (options.afterSeq) params.after_seq = lastSeq;
      const res = await this.call<{ chunk: Chunk | null }>('poll', params);
      polls++;
      if (res.error) throw new Error(`poll: ${res.error.code} ${res.error.message}`);
      if (options.drop?.(polls)) continue;
      const chunk = res.result!.chunk;
      if (!chunk) continue;
      chunks.push(chunk);
      lastSeq = chunk.seq;
      if (chunk.end) {
        return { chunks, text: chunks.map((c) => c.delta).join(''), polls, last: chunk };
      }
    }
  }

  /** Long-polls until at least one chunk of `streamId` has arrived; returns the first. */
  async firstChunk(streamId: string): Promise<Chunk> {
    for (let polls = 0; polls < 50; polls++) {
      const { chunk } = await this.result<{ chunk: Chunk | null }>('poll', { stream_id: streamId, after_seq: -1, wait_ms: 5000 });
      if (chunk) return chunk;
    }
    throw new Error('no chunk came');
  }
}
