import { HttpChannel } from './http-channel.js';
import { LiveChannel } from './live-channel.js';
import type { Channel, Chunk, RkllmClientOptions, RunParams, RunResult } from './types.js';
import { openTcp, openWs } from './wires.js';

export { RkllmError, type Chunk, type FinishReason, type RkllmClientOptions, type RunParams, type RunResult } from './types.js';

/**
 * A client of an rkllm-mcp server, over WebSocket, TCP or HTTP. It connects on first use; over
 * HTTP each call is its own request.
 *
 * ```ts
 * await using client = new RkllmClient({ url: 'ws://127.0.0.1:8083' });
 * for await (const chunk of client.runStream({ prompt_input: 'Once', max_new_tokens: 40 })) process.stdout.write(chunk.delta);
 * ```
 */
export class RkllmClient implements AsyncDisposable {
  readonly url: string;
  readonly #options: RkllmClientOptions;
  #channel: Promise<Channel> | undefined;
  #closed = false;

  constructor(options: RkllmClientOptions) {
    const scheme = new URL(options.url).protocol;
    if (!['ws:', 'wss:', 'tcp:', 'http:', 'https:'].includes(scheme)) {
      throw new TypeError(`RkllmClient: unsupported URL scheme "${scheme}" (use ws://, tcp:// or http://)`);
    }
    this.url = options.url;
    this.#options = options;
  }

  /** Calls any method and resolves to its result; a JSON-RPC error rejects with an RkllmError. */
  async call<T = unknown>(method: string, params?: unknown): Promise<T> {
    return (await (await this.#open()).call(method, params)) as T;
  }

  /** Runs a prompt to the end: the result of `rkllm_run`. */
  run(params: RunParams): Promise<RunResult> {
    return this.call<RunResult>('rkllm_run', params);
  }

  /**
   * Streams a run (`rkllm_run_async`): its chunks, as they are generated, up to the final one
   * (`end: true`, with `finish_reason` and `perf`). Leaving the loop early aborts the stream.
   */
  async *runStream(params: RunParams): AsyncGenerator<Chunk, void, undefined> {
    yield* (await this.#open()).stream(params);
  }

  /** Aborts a stream, queued or running (`rkllm_abort`); resolves to how many were aborted. */
  abort(streamId: string): Promise<{ aborted: number; stream_id?: string }> {
    return this.call('rkllm_abort', { stream_id: streamId });
  }

  /** Closes the connection; calls in flight reject. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const channel = await this.#channel?.catch(() => undefined);
    await channel?.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #open(): Promise<Channel> {
    if (this.#closed) return Promise.reject(new Error('RkllmClient: closed'));
    this.#channel ??= this.#connect().catch((err: unknown) => {
      this.#channel = undefined;
      throw err;
    });
    return this.#channel;
  }

  async #connect(): Promise<Channel> {
    const { url, apiKey } = this.#options;
    const scheme = new URL(url).protocol;
    if (scheme === 'http:' || scheme === 'https:') return new HttpChannel(this.#options);
    if (scheme === 'tcp:') {
      const channel = new LiveChannel(await openTcp(url));
      if (apiKey !== undefined)
        await channel.call('authenticate', { api_key: apiKey }).catch(async (err: unknown) => {
          await channel.close();
          throw err;
        });
      return channel;
    }
    return new LiveChannel(await openWs(url, apiKey));
  }
}
