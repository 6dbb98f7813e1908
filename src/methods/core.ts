import { setTimeout as delay } from 'node:timers/promises';
import type { Logger } from 'pino';
import { notOwned } from '../auth.js';
import type { Client } from '../clients.js';
import { ENGINE_FEATURE_NAMES } from '../engine/capabilities.js';
import type { Engine } from '../engine/types.js';
import { PUSHED, type Method, type MethodContext } from '../jsonrpc/dispatcher.js';
import { fault } from '../errors.js';
import { errorResponse, resultResponse, type JsonRpcId } from '../jsonrpc/message.js';
import type { Connection } from '../jsonrpc/connection.js';
import type { Delivery } from '../streams/delivery.js';
import type { ChunkOutlet } from '../streams/live-sink.js';
import { requestKey, type BufferStore } from '../streams/buffer-store.js';
import type { RunParams, StreamHub } from '../streams/hub.js';
import { collect, type Chunk, type Stream } from '../streams/stream.js';
import { bool, compileParams, int, object, str, type JsonSchema } from '../request-schema.js';
import { confineRunPaths, readRunImages, runParamsSchema, toRunParams, type ImageFiles } from './run-params.js';
import type { ConfinedFolder } from '../paths.js';

/**
 * How a table entry is marked: `admin`, it changes the engine for everyone (only an admin key may
 * call it, checked by the dispatcher); `streams`, it starts or resumes a stream (refused to
 * unauthenticated datagrams on UDP beyond loopback); `supported`, from the engine's capabilities.
 */
type MethodFlags = Pick<Method, 'admin' | 'streams' | 'supported'>;

/** Builds the table entry `name`, whose params are checked against `schema` before `handler` runs. */
export function method<P>(
  name: string,
  description: string,
  schema: JsonSchema,
  handler: (params: P, ctx: MethodContext<Client>) => unknown,
  flags: MethodFlags = {},
): [string, Method<Client>] {
  return [name, { description, params: schema, parse: compileParams<P>(schema), handler, ...flags }];
}

/** The entry, marked as changing the engine for everyone (see `MethodFlags`). */
export function adminOnly<W>(entry: [string, Method<W>]): [string, Method<W>] {
  return [entry[0], { ...entry[1], admin: true }];
}

/**
 * A long poll that has data waits this long for more before it answers (unless the stream ends
 * first): a fast generator then fills each answer with several tokens instead of one, for at most
 * this much extra delay. 5 ms rather than 2 ms: about 10 tokens per poll instead of 4 on the tiny
 * model, so a polling client costs the server (and itself) less than half as many round trips; a
 * person cannot see 5 ms, and a slow model (an NPU's 10-30 tokens/s) is answered token by token as before.
 */
const POLL_LINGER_MS = 5;

export interface CoreDeps {
  engine: Engine;
  hub: StreamHub;
  /** The hub's buffer store, which `poll` reads. */
  store: BufferStore;
  /** What `rkllm_is_running` reports, over every loaded model: whether one generates, and the runs holding a slot and queued. */
  streams: () => { active: number; queued: number; running: boolean };
  /** Longest `wait_ms` a poll may ask for. */
  maxWaitMs: number;
  cleanupIntervalS: number;
  bufferTimeoutS: number;
  /** Where a run's `prompt_cache_path` is resolved. */
  promptCaches: ConfinedFolder;
  /** Where a run's `multimodal_input.image` file names are read. */
  images: ImageFiles;
  /** The context length a run's `max_new_tokens` is checked against, by the model it names (default: the engine's). */
  maxContext?: (model: string | undefined) => number;
}

interface StreamRef {
  stream_id?: string;
  request_id?: JsonRpcId;
}

interface PollParams extends StreamRef {
  after_seq?: number;
  wait_ms?: number;
}

/** A JSON-RPC id given back as `request_id`. */
export const requestIdSchema: JsonSchema = {
  type: ['string', 'number', 'null'],
  description: 'The JSON-RPC id of the rkllm_run_async request',
};

const streamRefProperties = {
  stream_id: str('The stream id returned by rkllm_run_async', 64),
  request_id: requestIdSchema,
};

const runAsyncParamsSchema: JsonSchema = {
  ...runParamsSchema,
  properties: {
    ...(runParamsSchema.properties as Record<string, JsonSchema>),
    detach: bool('Live transports: keep running and buffering when the connection closes, so the stream can be resumed'),
  },
};

/**
 * The replies to `requestId` on a live connection, as the outlet a stream is pushed to: each chunk
 * becomes a result `{"chunk": {..., "stream_id"}}` answering the request, naming its stream so it
 * can be resumed; an error that stops delivery answers the request too.
 */
export function chunkOutlet(connection: Connection, requestId: JsonRpcId): ChunkOutlet {
  return {
    closed: connection.closed,
    sendLimit: connection.sendLimit,
    send: (streamId, chunk) => connection.send(resultResponse(requestId, { chunk: { ...chunk, stream_id: streamId } })),
    fail: (error) => void connection.send(errorResponse(requestId, error)),
    hold: () => connection.hold(),
  };
}

/**
 * How the chunks of `rkllm_run_async` reach its caller. Over HTTP, and for a notification (which
 * cannot be answered), they are buffered for `poll`. On a live connection they are pushed; they are
 * buffered too when the connection loses messages (UDP: gaps are repaired with `poll`) or the run
 * is detached (it outlives the connection); otherwise the run ends when the connection closes.
 */
export function runDelivery(ctx: MethodContext, detach: boolean): Delivery {
  const { connection, id } = ctx;
  if (!connection || id === undefined) return { kind: 'buffer' };
  return { kind: connection.lossy || detach ? 'push+buffer' : 'push', outlet: chunkOutlet(connection, id) };
}

/** Logs a stream's start and end under the request that started it. */
function logLifetime(stream: Stream, log: Logger): void {
  log.info({ stream_id: stream.id }, 'stream started');
  void stream.ended.then((last) =>
    log.info({ stream_id: stream.id, finish_reason: last.finish_reason, chunks: last.seq + 1 }, 'stream ended'),
  );
}

/** Joins chunks read from a buffer into the one chunk a poll returns. */
export function joinChunks(streamId: string, chunks: Chunk[]): Chunk & { stream_id: string } {
  // The last chunk's own fields (finish_reason, perf, error, outputs) carry over as they are.
  const last = chunks.at(-1)!;
  return { ...last, delta: chunks.map((c) => c.delta).join(''), stream_id: streamId };
}

/** The production methods of the server core. */
export function coreMethods(deps: CoreDeps): Array<[string, Method]> {
  const { engine, hub, store, streams } = deps;
  const runParams = async (params: Record<string, unknown>): Promise<RunParams> =>
    readRunImages(
      await confineRunPaths(
        toRunParams(params, deps.maxContext?.(params.model as string | undefined) ?? engine.param.max_context_len),
        deps.promptCaches,
      ),
      deps.images,
    );

  function onlyOne(ref: StreamRef): void {
    if (ref.stream_id !== undefined && ref.request_id !== undefined) {
      throw fault('INVALID_PARAMS', 'detail', { detail: 'give either "stream_id" or "request_id", not both' });
    }
  }

  /** Resolves a poll target to one buffered stream id of `client`'s: streams of other keys are as good as unknown. */
  async function bufferedStream(ref: StreamRef, client: Client): Promise<string> {
    onlyOne(ref);
    if (ref.stream_id !== undefined) {
      if (!client.owns(ref.stream_id)) throw notOwned(ref.stream_id);
      return ref.stream_id;
    }
    if (ref.request_id === undefined)
      throw fault('INVALID_PARAMS', 'detail', { detail: 'missing required field "stream_id" or "request_id"' });
    const ids = (await store.findByRequest(requestKey(ref.request_id))).filter((id) => client.owns(id));
    if (ids.length === 1) return ids[0]!;
    if (ids.length > 1) {
      throw fault('AMBIGUOUS_REQUEST_ID', 'poll', { count: ids.length, request_id: JSON.stringify(ref.request_id) }, { stream_ids: ids });
    }
    throw fault(
      'STREAM_NOT_FOUND',
      'unknown_request',
      { request_id: JSON.stringify(ref.request_id) },
      { request_id: ref.request_id, reason: 'unknown' },
    );
  }

  return [
    method<Record<string, unknown>>(
      'rkllm_run',
      'Runs a prompt to the end and returns the whole text (rkllm_run). Blocks until generation ends.',
      runParamsSchema,
      async (params, ctx) => {
        const run = await hub.generate(await runParams(params), { requestId: ctx.id, signal: ctx.signal, owner: ctx.client });
        const { text, last } = await collect(run);
        const { finish_reason, perf, error, last_hidden_layer, logits } = last;
        return {
          text,
          finish_reason,
          perf,
          ...(error && { error: error.message }),
          ...(last_hidden_layer && { last_hidden_layer }),
          ...(logits && { logits }),
        };
      },
      { streams: true },
    ),
    method<Record<string, unknown>>(
      'rkllm_run_async',
      'Starts a generation (rkllm_run_async). Over HTTP it answers at once with its stream_id; read the tokens with poll. ' +
        'On TCP, UDP, WebSocket and stdio each chunk is pushed as a response to this request, carrying the stream_id; ' +
        'detach: true keeps the run going, buffered, after the connection closes (resume it with rkllm_stream_attach).',
      runAsyncParamsSchema,
      async (params, ctx) => {
        const delivery = runDelivery(ctx, params.detach === true);
        const stream = await hub.start(await runParams(params), ctx.id, delivery, ctx.client);
        logLifetime(stream, ctx.log);
        if (delivery.kind !== 'buffer') return PUSHED;
        return { stream_id: stream.id, request_id: ctx.id ?? null, status: stream.state };
      },
      { streams: true },
    ),
    method<PollParams>(
      'poll',
      'Returns what a stream buffered since the last poll, joined into one chunk, or {"chunk": null}. ' +
        'Without after_seq it acknowledges what it returns; with after_seq it acknowledges up to that seq and returns everything after it. ' +
        'wait_ms long-polls until something arrives or the stream ends.',
      object({
        ...streamRefProperties,
        after_seq: int(-1, Number.MAX_SAFE_INTEGER, 'The last seq received; -1 for none'),
        wait_ms: int(0, deps.maxWaitMs, `Long-poll for up to this many ms (at most ${deps.maxWaitMs})`),
      }),
      async (params, ctx) => {
        const streamId = await bufferedStream(params, ctx.client);
        if (params.wait_ms) {
          // A buffer expires when nobody polls it for buffer_timeout_s, and waiting is not polling:
          // answer by half that time, so the client's next poll comes before its buffer could expire.
          const wait = Math.min(params.wait_ms, (deps.bufferTimeoutS * 1000) / 2);
          await store.wait(streamId, params.after_seq, wait, ctx.signal);
          const live = hub.select({ stream_id: streamId })[0];
          if (live?.state === 'running') await Promise.race([live.ended, delay(POLL_LINGER_MS)]);
        }
        const { chunks } = await store.poll(streamId, params.after_seq);
        return { chunk: chunks.length === 0 ? null : joinChunks(streamId, chunks) };
      },
    ),
    method<StreamRef>(
      'rkllm_abort',
      'Stops a stream, queued or running, by stream_id or request_id. Without parameters it stops every running generation (rkllm_abort).',
      object(streamRefProperties),
      async (params, ctx) => {
        onlyOne(params);
        const owned = (stream: Stream): boolean => ctx.client.owns(stream.id);
        if (params.stream_id === undefined && params.request_id === undefined) return { aborted: hub.abortRunning(owned) };
        const live = hub.select(params).filter(owned);
        if (live.length > 1) {
          const vars = { count: live.length, request_id: JSON.stringify(params.request_id) };
          throw fault('AMBIGUOUS_REQUEST_ID', 'abort', vars, { stream_ids: live.map((s) => s.id) });
        }
        if (live.length === 1) {
          live[0]!.abort();
          return { aborted: 1, stream_id: live[0]!.id };
        }
        // Not live here: another instance may generate it; an ended stream whose buffer remains is fine to "abort" (nothing to do).
        const streamId = await bufferedStream(params, ctx.client);
        return { aborted: (await hub.abortElsewhere(streamId)) ? 1 : 0, stream_id: streamId };
      },
    ),
    method<Record<string, never>>(
      'rkllm_is_running',
      'Tells whether a generation is running (rkllm_is_running), on any loaded model.',
      object({}),
      () => {
        const { running, active, queued } = streams();
        return { running, active, queued };
      },
    ),
    method<Record<string, never>>(
      'http_buffer_manager_status',
      'Reports the stream buffer manager: live buffers, limits and bytes buffered. A user key sees only its own live streams, and no totals.',
      object({}),
      async (_params, ctx) => {
        const limits = {
          initialized: true,
          max_buffers: store.limits.maxBuffers,
          cleanup_interval: deps.cleanupIntervalS,
          buffer_timeout: deps.bufferTimeoutS,
          max_buffer_bytes: store.limits.maxBufferBytes,
        };
        if (!ctx.client.admin) return { ...limits, live_streams: hub.live((stream) => ctx.client.owns(stream.id)).length };
        const { active_buffers, buffered_bytes } = await store.status();
        return { ...limits, active_buffers, buffered_bytes, live_streams: hub.liveCount };
      },
    ),
  ];
}

/**
 * `rkllm_list_functions`, generated from the final method table so it cannot drift from it. Each
 * method's `supported` comes from the engine's capabilities; `engine.features` lists them all.
 */
export function listFunctionsMethod(table: () => ReadonlyMap<string, Method>, engine: Engine): [string, Method] {
  return method<Record<string, never>>(
    'rkllm_list_functions',
    'Lists every method with its description, parameter schema and engine support.',
    object({}),
    () => ({
      engine: { name: engine.name, features: Object.fromEntries(ENGINE_FEATURE_NAMES.map((f) => [f, engine.supports(f)])) },
      functions: [...table()].map(([name, m]) => ({
        name,
        description: m.description,
        params: m.params,
        supported: m.supported ? m.supported() : true,
        ...(m.admin ? { admin: true } : {}),
      })),
    }),
  );
}
