import { unauthorized, type ApiKey, type ApiKeys, type ClientEnd } from './auth.js';
import { fault, type ServerError } from './errors.js';
import type { Connection } from './jsonrpc/connection.js';
import { peekJson, type JsonRpcRequest } from './jsonrpc/message.js';
import type { ClientLimits } from './limits.js';
import type { StreamOwner } from './streams/hub.js';

/** The method that binds a key to a live connection (TCP, WebSocket, stdio). */
export const AUTHENTICATE = 'authenticate';

/**
 * Who sent a request, as limits, logs and stream ownership know them: the API key it carried, or,
 * without keys, its address. The streams it starts get ids bound to its key, and count against its
 * stream limit.
 */
export class Client implements StreamOwner {
  readonly #limits: ClientLimits;
  readonly #keysRequired: boolean;

  constructor(
    readonly peer: ClientEnd,
    readonly key: ApiKey | undefined,
    limits: ClientLimits,
    keysRequired: boolean,
  ) {
    this.#limits = limits;
    this.#keysRequired = keysRequired;
  }

  /** The key's id with keys ("key_…"), the client's address without. Its runs' `keep_history` conversation is kept under it. */
  get id(): string {
    return this.key?.id ?? this.peer.address;
  }

  /** Whether it may change the engine for everyone and see every client's state: an admin key, or anyone when there are no keys. */
  get admin(): boolean {
    return !this.#keysRequired || this.key?.admin === true;
  }

  get queueKey(): string {
    return this.id;
  }

  streamId(fresh: string): string {
    return this.key ? this.key.sign(fresh) : fresh;
  }

  admitStream(): () => void {
    return this.#limits.stream(this.id);
  }

  /** Whether this client may poll, abort or attach to `streamId`: only the key that started a stream may, when there are keys. */
  owns(streamId: string): boolean {
    return this.key ? this.key.signed(streamId) : !this.#keysRequired;
  }
}

export interface ClientGateOptions {
  keys: ApiKeys;
  limits: ClientLimits;
  /** Sees every refusal made before a request reaches the dispatcher (HTTP 401, connection limits), for metrics. */
  onRefusal?: (error: ServerError) => void;
}

/**
 * Admits clients: checks their keys (from a header, a connection's session, or the `api_key`
 * member of a request) and their limits. Transports ask it about headers and connections; the
 * dispatcher asks it about each request.
 */
export class ClientGate {
  readonly #keys: ApiKeys;
  readonly #limits: ClientLimits;
  readonly #onRefusal: (error: ServerError) => void;

  constructor(options: ClientGateOptions) {
    this.#keys = options.keys;
    this.#limits = options.limits;
    this.#onRefusal = options.onRefusal ?? (() => {});
  }

  /**
   * The key of an Authorization header. Throws UNAUTHORIZED when keys are required and the header
   * holds a wrong key, or holds none while `missing` is "refuse" (HTTP). With "allow" (WebSocket),
   * a connection without the header may still call `authenticate`.
   */
  keyFromHeader(header: string | undefined, missing: 'refuse' | 'allow'): ApiKey | undefined {
    if (!this.#keys.required) return undefined;
    if (header === undefined && missing === 'allow') return undefined;
    const key = this.#keys.fromAuthorization(header);
    if (!key) throw this.#refuse(unauthorized());
    return key;
  }

  /** Whether requests must carry a key. */
  get keysRequired(): boolean {
    return this.#keys.required;
  }

  /**
   * Counts a new connection (HTTP: a request in progress) against its client's limit for
   * `transport`, and returns the release. A connection that has not authenticated yet counts
   * against its address until it does (`authenticate`), then against its key.
   */
  admitConnection(peer: ClientEnd, transport: string): () => void {
    try {
      return this.#limits.connection(peer.key?.id ?? peer.address, transport);
    } catch (err) {
      throw this.#refuse(err as ServerError);
    }
  }

  /**
   * Admits one request of a face on the HTTP port (OpenAI, Ollama): the key of its Authorization
   * header, one request of its client's rate, and its place in the client's HTTP connection limit
   * until `release` is called. Throws UNAUTHORIZED (attempts charged to the address) or
   * RATE_LIMITED, counted as refusals.
   */
  admitHttp(authorization: string | undefined, address: string): { client: Client; release: () => void } {
    const key = this.#keys.fromAuthorization(authorization);
    try {
      const client = this.#client({ address, key }, key);
      return { client, release: this.#limits.connection(client.id, 'http') };
    } catch (err) {
      throw this.#refuse(err as ServerError);
    }
  }

  /**
   * Whether a raw message (a datagram) carries a valid `api_key` in every request it holds; false
   * without keys. UDP beyond loopback answers other datagrams with no more than their own size.
   */
  presentsKey(raw: Uint8Array): boolean {
    if (!this.#keys.required) return false;
    const message = peekJson(raw);
    const requests = Array.isArray(message) ? message : [message];
    return (
      requests.length > 0 &&
      requests.every((r) => typeof r === 'object' && r !== null && this.#keys.find((r as { api_key?: unknown }).api_key) !== undefined)
    );
  }

  /**
   * Admits one request: works out who sent it and spends one request of its rate. Refuses a
   * missing or wrong key (except for `authenticate` itself) and an exhausted rate; attempts without
   * a valid key are charged to the client's address, so guessing keys is rate-limited too.
   */
  admit(request: JsonRpcRequest, peer: ClientEnd): Client {
    const key = 'api_key' in request ? this.#keys.find(request.api_key) : peer.key;
    return this.#client(peer, key, request.method === AUTHENTICATE);
  }

  /**
   * `authenticate`: binds `secret`'s key to the live connection the request came on. Its later
   * requests need no key. The connection then counts against that key's connection limit.
   */
  authenticate(secret: string, client: Client, connection: Connection | undefined, transport: string): { authenticated: true } {
    if (!connection || connection.lossy) {
      throw fault('INVALID_REQUEST', 'authenticate_not_live', { method: AUTHENTICATE });
    }
    if (!this.#keys.required) return { authenticated: true };
    const key = this.#keys.find(secret);
    if (!key) throw unauthorized();
    const { peer } = client;
    if (peer.key === key) return { authenticated: true };
    if (peer.key) throw fault('INVALID_REQUEST', 'already_authenticated');
    const release = this.#limits.connection(key.id, transport);
    if (connection.closed.aborted) release();
    else connection.closed.addEventListener('abort', release, { once: true });
    peer.key = key;
    peer.authenticated?.();
    return { authenticated: true };
  }

  /** The client of `peer` with `key`, one request of its rate spent; without a required key (and not `exempt`), the attempt is charged to the address and refused. */
  #client(peer: ClientEnd, key: ApiKey | undefined, exempt = false): Client {
    if (this.#keys.required && !key && !exempt) {
      this.#limits.request(peer.address);
      throw unauthorized();
    }
    const client = new Client(peer, key, this.#limits, this.#keys.required);
    this.#limits.request(client.id);
    return client;
  }

  #refuse(error: ServerError): ServerError {
    this.#onRefusal(error);
    return error;
  }
}
