import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import { fault, type ServerError } from './errors.js';

/** Length of the ownership tag appended to the ids of streams started with a key. */
const TAG_LENGTH = 16;

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/**
 * One configured API key. Logs and limits know it by `id`, a short digest that does not reveal
 * the key. It also signs the ids of the streams started with it, so that ownership can be checked
 * from the id alone, on any instance that has the same keys, with nothing stored.
 */
export class ApiKey {
  readonly id: string;
  /** An admin key (setting `auth.admin_keys`): it may also call the methods that change the engine for everyone. */
  readonly admin: boolean;
  readonly #secret: string;

  constructor(secret: string, admin = false) {
    this.#secret = secret;
    this.admin = admin;
    this.id = `key_${sha256(`rkllm-mcp key id:${secret}`).toString('hex').slice(0, 12)}`;
  }

  /** Binds a fresh stream id to this key: `<id>.<tag>`. */
  sign(streamId: string): string {
    return `${streamId}.${this.#tag(streamId)}`;
  }

  /** Whether `streamId` was made by `sign` with this key. */
  signed(streamId: string): boolean {
    const dot = streamId.lastIndexOf('.');
    if (dot < 0) return false;
    const tag = Buffer.from(streamId.slice(dot + 1));
    const expected = Buffer.from(this.#tag(streamId.slice(0, dot)));
    return tag.length === expected.length && timingSafeEqual(tag, expected);
  }

  #tag(streamId: string): string {
    return createHmac('sha256', this.#secret).update(streamId).digest('base64url').slice(0, TAG_LENGTH);
  }
}

/**
 * The API keys of the server (settings `auth.api_keys` and `auth.admin_keys`, which are keys too).
 * With none, authentication is off. Keys are looked up by their SHA-256 digest, so how long a
 * lookup takes says nothing about them.
 */
export class ApiKeys {
  readonly #byDigest = new Map<string, ApiKey>();

  constructor(secrets: readonly string[], adminSecrets: readonly string[] = []) {
    for (const secret of secrets) this.#byDigest.set(sha256(secret).toString('hex'), new ApiKey(secret));
    for (const secret of adminSecrets) this.#byDigest.set(sha256(secret).toString('hex'), new ApiKey(secret, true));
  }

  /** Whether requests must carry a key. */
  get required(): boolean {
    return this.#byDigest.size > 0;
  }

  /** The key whose secret is `presented`, if any. */
  find(presented: unknown): ApiKey | undefined {
    return typeof presented === 'string' ? this.#byDigest.get(sha256(presented).toString('hex')) : undefined;
  }

  /** The key of an `Authorization: Bearer <key>` header, if the header holds a valid one. */
  fromAuthorization(header: string | undefined): ApiKey | undefined {
    const match = /^Bearer +(\S+) *$/i.exec(header ?? '');
    return match ? this.find(match[1]) : undefined;
  }
}

/**
 * The client end of a request, as its transport knows it: its address and the key it presented
 * (from the Authorization header on HTTP and WebSocket, or from `authenticate` on a live
 * connection). Without keys configured, `key` stays undefined.
 */
export interface ClientEnd {
  /** The client's IP address (without port), or "stdio". */
  readonly address: string;
  key: ApiKey | undefined;
  /** Called once when a live connection authenticates: it stops counting against its address (see `ClientGate.admitConnection`). */
  authenticated?: () => void;
}

/**
 * The one refusal for a missing or wrong key, on every transport (HTTP answers it with status
 * 401). It says nothing about why, nor about which keys exist.
 */
export function unauthorized(): ServerError {
  return fault('UNAUTHORIZED', 'key');
}

/**
 * What a key-holding client is told about a stream that another key started: exactly what it would
 * be told about a stream that does not exist.
 */
export function notOwned(streamId: string): ServerError {
  return fault('STREAM_NOT_FOUND', 'unknown', { stream_id: streamId }, { stream_id: streamId, reason: 'unknown' });
}

/** Whether binding `host` exposes the server beyond this machine. */
export function exposesBeyondLoopback(host: string): boolean {
  if (host === 'localhost') return false;
  if (isIP(host) === 4) return !host.startsWith('127.');
  return host !== '::1';
}
