import type { Logger } from 'pino';
import type { Peer } from '../auth.js';
import type { Client } from '../clients.js';
import type { Connection } from './connection.js';
import { RpcError } from './errors.js';
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

/** What a handler knows about the request it serves. */
export interface MethodContext {
  /** The request id; undefined for a notification. */
  id: JsonRpcId | undefined;
  /** Aborts when the request is cancelled, e.g. its connection closed. */
  signal: AbortSignal;
  /** The transport that carried the request ("http", "tcp", ...). */
  transport: string;
  /** Who sent the request: limits and stream ownership go by it. */
  client: Client;
  /** Carries the request's ids (`req_id`, unique within the server, and the JSON-RPC `rpc_id`) and the client's id. */
  log: Logger;
  /** The live connection that carried the request (absent on HTTP): handlers may push messages on it. */
  connection?: Connection;
}

/**
 * What a handler returns when its responses are pushed on `ctx.connection` instead (a live
 * stream's chunks): the dispatcher then answers nothing itself.
 */
export const PUSHED: unique symbol = Symbol('responses pushed on the connection');

/** One entry of the method table. */
export interface Method {
  description: string;
  /** JSON Schema of the params object; published by `rkllm_list_functions`. */
  params: Record<string, unknown>;
  /** Validates raw params (throwing -32602) and returns them typed. */
  parse: (params: unknown) => unknown;
  handler: (params: never, ctx: MethodContext) => unknown;
  /** Whether the active engine can serve the method; true when absent. */
  supported?: () => boolean;
}

export type MethodTable = ReadonlyMap<string, Method>;

/** Transport-level facts the dispatcher passes on to handlers. */
export interface RequestOrigin {
  transport: string;
  signal: AbortSignal;
  connection?: Connection;
  /** The client end, with the key it presented. */
  peer: Peer;
}

/** Admits each request before its method is looked up: says who sent it, or throws a refusal (a missing key, a limit). */
export interface RequestGate {
  admit(request: JsonRpcRequest, peer: Peer): Client;
}

export interface DispatcherOptions {
  methods: MethodTable;
  log: Logger;
  /** Requests in one batch at most. */
  maxBatch: number;
  gate: RequestGate;
  /** Told how long each request took to answer (metrics). */
  onAnswered?: (method: string, transport: string, seconds: number) => void;
}

/**
 * Turns raw messages into responses. Knows nothing of sockets: every transport hands it the bytes
 * of one message and writes back what it returns (nothing for notifications).
 */
export class Dispatcher {
  readonly #methods: MethodTable;
  readonly #log: Logger;
  readonly #maxBatch: number;
  readonly #gate: RequestGate;
  readonly #onAnswered: NonNullable<DispatcherOptions['onAnswered']>;
  /** Numbers requests for the logs. */
  #received = 0;

  constructor(options: DispatcherOptions) {
    this.#methods = options.methods;
    this.#log = options.log;
    this.#maxBatch = options.maxBatch;
    this.#gate = options.gate;
    this.#onAnswered = options.onAnswered ?? (() => {});
  }

  get methods(): MethodTable {
    return this.#methods;
  }

  /** Handles one message (a request, a notification or a batch). Undefined means "send nothing". */
  async handle(raw: Uint8Array | string, origin: RequestOrigin): Promise<JsonRpcResponse | JsonRpcResponse[] | undefined> {
    let message: unknown;
    try {
      message = parseMessage(raw);
    } catch (err) {
      return errorResponse(null, err as RpcError);
    }
    if (!Array.isArray(message)) return this.#one(message, origin);
    if (message.length === 0) return errorResponse(null, new RpcError('INVALID_REQUEST', 'Invalid Request: empty batch'));
    if (message.length > this.#maxBatch) {
      return errorResponse(
        null,
        new RpcError('INVALID_REQUEST', `Invalid Request: a batch holds at most ${this.#maxBatch} requests; got ${message.length}`),
      );
    }
    const responses = await Promise.all(message.map((m) => this.#one(m, origin)));
    const sent = responses.filter((r): r is JsonRpcResponse => r !== undefined);
    return sent.length > 0 ? sent : undefined;
  }

  async #one(value: unknown, origin: RequestOrigin): Promise<JsonRpcResponse | undefined> {
    let request;
    try {
      request = validateRequest(value);
    } catch (err) {
      return errorResponse(salvageId(value), err as RpcError);
    }
    const isNotification = !('id' in request);
    const id = isNotification ? null : (request.id as JsonRpcId);
    const { method } = request;
    const log = this.#log.child({ req_id: `r${++this.#received}`, rpc_id: id, transport: origin.transport });
    const started = performance.now();
    try {
      const client = this.#gate.admit(request, origin.peer);
      const result = await this.call(method, request.params, {
        id: isNotification ? undefined : id,
        signal: origin.signal,
        transport: origin.transport,
        client,
        log: log.child({ client: client.id }),
        ...(origin.connection ? { connection: origin.connection } : {}),
      });
      log.debug({ method }, 'answered');
      return isNotification || result === PUSHED ? undefined : resultResponse(id, result);
    } catch (err) {
      const error = this.#toRpcError(err, method, log);
      log.debug({ method, code: error.code }, 'answered with an error');
      return isNotification ? undefined : errorResponse(id, error);
    } finally {
      this.#onAnswered(method, origin.transport, (performance.now() - started) / 1000);
    }
  }

  /** Looks the method up before touching its params, validates them, then runs the handler. */
  async call(name: string, params: unknown, ctx: MethodContext): Promise<unknown> {
    const method = this.#methods.get(name);
    if (!method) throw new RpcError('METHOD_NOT_FOUND', `Method not found: ${name}`);
    if (Array.isArray(params)) throw new RpcError('INVALID_PARAMS', 'Invalid params: params must be an object with named fields');
    const parsed = method.parse(params ?? {});
    return await method.handler(parsed as never, ctx);
  }

  #toRpcError(err: unknown, method: string, log: Logger): RpcError {
    if (err instanceof RpcError) return err;
    log.error({ err, method }, 'internal error');
    return new RpcError('INTERNAL_ERROR', 'Internal error');
  }
}
