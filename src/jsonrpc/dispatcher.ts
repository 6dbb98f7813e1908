import type { Logger } from 'pino';
import { ERRORS, fault, ServerError } from '../errors.js';
import type { Connection } from './connection.js';
import {
  errorResponse,
  parseMessage,
  resultResponse,
  salvageId,
  validateRequest,
  type JsonRpcId,
  type JsonRpcRequest,
  type JsonRpcResponse,
} from './message.js';

/** Levels of arrays and objects params may nest: deeper ones are refused before any schema or handler recurses into them. */
export const MAX_PARAMS_DEPTH = 64;

/** Whether `value` holds arrays or objects more than `max` levels deep; iterative, so no depth overflows it. */
function nestsDeeperThan(value: unknown, max: number): boolean {
  const stack: Array<[unknown, number]> = [[value, 0]];
  while (stack.length > 0) {
    const [item, depth] = stack.pop()!;
    if (typeof item !== 'object' || item === null) continue;
    if (depth + 1 > max) return true;
    for (const child of Object.values(item)) stack.push([child, depth + 1]);
  }
  return false;
}

/**
 * What a handler knows about the request it serves. `Who` is whoever the gate says sent it (the
 * server's `Client`); the dispatcher only passes it on.
 */
export interface MethodContext<Who = unknown> extends Omit<RequestOrigin, 'peer'> {
  /** The request id; undefined for a notification. */
  id: JsonRpcId | undefined;
  /** Who sent the request: limits and stream ownership go by it. */
  client: Who;
  /** Carries the request's ids (`req_id`, unique within the server, and the JSON-RPC `rpc_id`) and the client's id. Made on first use. */
  log: Logger;
}

/**
 * What a handler returns when its responses are pushed on `ctx.connection` instead (a live
 * stream's chunks): the dispatcher then answers nothing itself.
 */
export const PUSHED: unique symbol = Symbol('responses pushed on the connection');

/** One entry of the method table. */
export interface Method<Who = unknown> {
  description: string;
  /** JSON Schema of the params object; published by `rkllm_list_functions`. */
  params: Record<string, unknown>;
  /** Validates raw params (throwing -32602) and returns them typed. */
  parse: (params: unknown) => unknown;
  handler(params: never, ctx: MethodContext<Who>): unknown;
  /** Whether the active engine can serve the method; true when absent. */
  supported?: () => boolean;
  /** It changes the engine for every client (or shows their state): only an admin may call it; others get FORBIDDEN. */
  admin?: boolean;
  /** It starts or resumes a stream: refused on a restricted connection (see `Connection.restricted`). */
  streams?: boolean;
}

export type MethodTable<Who = unknown> = ReadonlyMap<string, Method<Who>>;

/** Transport-level facts the dispatcher passes on to handlers. `ClientEnd` is the client end as the transport knows it. */
export interface RequestOrigin<ClientEnd = unknown> {
  /** The transport that carried the request ("http", "tcp", ...). */
  transport: string;
  /** Aborts when the request is cancelled, e.g. its connection closed. */
  signal: AbortSignal;
  /** The live connection that carried the request (absent on HTTP): handlers may push messages on it. */
  connection?: Connection;
  /** The client end, with the key it presented. */
  peer: ClientEnd;
}

/** Admits each request before its method is looked up: says who sent it, or throws a refusal (a missing key, a limit). */
export interface RequestGate<ClientEnd, Who> {
  admit(request: JsonRpcRequest, peer: ClientEnd): Who;
}

/** Whoever sent a request, as far as the dispatcher cares: an id for the logs, and whether it may call admin methods. */
export interface Sender {
  readonly id: string;
  readonly admin: boolean;
}

export interface DispatcherOptions<ClientEnd, Who extends Sender> {
  methods: MethodTable<Who>;
  log: Logger;
  /** Requests in one batch at most. */
  maxBatch: number;
  gate: RequestGate<ClientEnd, Who>;
  /** Told how long each request took to answer (metrics). */
  onAnswered?: (method: string, transport: string, seconds: number) => void;
}

/**
 * Turns raw messages into responses. Knows nothing of sockets: every transport hands it the bytes
 * of one message and writes back what it returns (nothing for notifications).
 */
export class Dispatcher<ClientEnd, Who extends Sender> {
  readonly #options: DispatcherOptions<ClientEnd, Who>;
  /** Numbers requests for the logs. */
  #received = 0;

  constructor(options: DispatcherOptions<ClientEnd, Who>) {
    this.#options = options;
  }

  /** Handles one message (a request, a notification or a batch). Undefined means "send nothing". */
  async handle(raw: Uint8Array | string, origin: RequestOrigin<ClientEnd>): Promise<JsonRpcResponse | JsonRpcResponse[] | undefined> {
    let message: unknown;
    try {
      message = parseMessage(raw);
    } catch (err) {
      return errorResponse(null, err as ServerError);
    }
    if (!Array.isArray(message)) return this.#one(message, origin);
    if (message.length === 0) return errorResponse(null, fault('INVALID_REQUEST', 'empty_batch'));
    if (message.length > this.#options.maxBatch) {
      return errorResponse(null, fault('INVALID_REQUEST', 'batch_too_large', { max_batch: this.#options.maxBatch, count: message.length }));
    }
    const responses = await Promise.all(message.map((m) => this.#one(m, origin)));
    const sent = responses.filter((r): r is JsonRpcResponse => r !== undefined);
    return sent.length > 0 ? sent : undefined;
  }

  async #one(value: unknown, origin: RequestOrigin<ClientEnd>): Promise<JsonRpcResponse | undefined> {
    let request;
    try {
      request = validateRequest(value);
    } catch (err) {
      return errorResponse(salvageId(value), err as ServerError);
    }
    const isNotification = !('id' in request);
    const id = isNotification ? null : (request.id as JsonRpcId);
    const { method } = request;
    const bindings = { req_id: `r${++this.#received}`, rpc_id: id, transport: origin.transport };
    // Child loggers cost more than a trivial method: made only when something logs.
    let log: Logger | undefined;
    const requestLog = (): Logger => (log ??= this.#options.log.child(bindings));
    const debug = this.#options.log.isLevelEnabled('debug');
    const started = performance.now();
    try {
      const client = this.#options.gate.admit(request, origin.peer);
      let clientLog: Logger | undefined;
      const result = await this.call(method, request.params, {
        id: isNotification ? undefined : id,
        // Read when a handler asks: a transport may make it only then (HTTP does).
        get signal() {
          return origin.signal;
        },
        transport: origin.transport,
        client,
        get log() {
          return (clientLog ??= requestLog().child({ client: client.id }));
        },
        ...(origin.connection ? { connection: origin.connection } : {}),
      });
      if (debug) requestLog().debug({ method }, 'answered');
      return isNotification || result === PUSHED ? undefined : resultResponse(id, result);
    } catch (err) {
      if (!(err instanceof ServerError)) requestLog().error({ err, method }, 'internal error');
      const error = err instanceof ServerError ? err : fault('INTERNAL_ERROR', 'internal');
      if (debug) requestLog().debug({ method, code: ERRORS[error.name].code }, 'answered with an error');
      return isNotification ? undefined : errorResponse(id, error);
    } finally {
      this.#options.onAnswered?.(method, origin.transport, (performance.now() - started) / 1000);
    }
  }

  /** Looks the method up before touching its params, validates them, then runs the handler. */
  async call(name: string, params: unknown, ctx: MethodContext<Who>): Promise<unknown> {
    const method = this.#options.methods.get(name);
    if (!method) throw fault('METHOD_NOT_FOUND', 'unknown', { method: name });
    if (method.admin && !ctx.client.admin) throw fault('FORBIDDEN', 'admin', { method: name });
    if (method.streams && ctx.connection?.restricted) throw fault('FORBIDDEN', 'udp_stream');
    if (Array.isArray(params)) throw fault('INVALID_PARAMS', 'positional');
    if (nestsDeeperThan(params, MAX_PARAMS_DEPTH)) throw fault('INVALID_PARAMS', 'too_deep', { max_depth: MAX_PARAMS_DEPTH });
    const parsed = method.parse(params ?? {});
    return await method.handler(parsed as never, ctx);
  }
}
