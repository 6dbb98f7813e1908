import { fault, type ServerError } from './errors.js';

/** The `limits` settings. Each applies per client: per API key, or per address without keys. 0 turns a limit off. */
export interface ClientLimitSettings {
  /** Requests a client may sustain per second. */
  requestsPerSecond: number;
  /** Requests a client may send at once beyond that rate (the size of its token bucket). */
  requestBurst: number;
  /** Streams a client may have queued or running at once. */
  maxStreams: number;
  /** Connections a client may hold open on each transport (HTTP: requests in progress). */
  maxConnections: number;
}

/** How often buckets that have refilled are forgotten, in ms. */
const PRUNE_INTERVAL_MS = 60_000;

interface Bucket {
  tokens: number;
  /** When `tokens` was last brought up to date (ms, on the limiter's clock). */
  at: number;
}

/**
 * A limit was reached. The refusal names the setting and says, in `retry_after` (seconds), when
 * trying again may succeed: a client refused for its stream or connection count is told 1.
 */
function limitReached(
  message: 'requests' | 'streams' | 'connections',
  vars: { max: number; what?: string },
  setting: string,
  retryAfter = 1,
): ServerError {
  const data = { limit: setting, retry_after: retryAfter };
  return fault('RATE_LIMITED', message, { what: '', ...vars, ...data }, data);
}

/**
 * Enforces the per-client limits: a token bucket for the request rate, and counts of streams and
 * of connections per transport. It holds state only for clients that are counted or whose bucket
 * is not full, so memory follows the active clients, not every client ever seen.
 */
export class ClientLimits {
  readonly #settings: ClientLimitSettings;
  readonly #now: () => number;
  readonly #buckets = new Map<string, Bucket>();
  readonly #counts = new Map<string, number>();
  #prunedAt: number;

  constructor(settings: ClientLimitSettings, now: () => number = () => performance.now()) {
    this.#settings = settings;
    this.#now = now;
    this.#prunedAt = now();
  }

  /** Spends one request of `client`'s rate, or throws RATE_LIMITED saying when one will be available. */
  request(client: string): void {
    const { requestsPerSecond: rate, requestBurst: burst } = this.#settings;
    if (rate === 0) return;
    const now = this.#now();
    this.#prune(now);
    const bucket = this.#buckets.get(client) ?? { tokens: burst, at: now };
    bucket.tokens = Math.min(burst, bucket.tokens + ((now - bucket.at) / 1000) * rate);
    bucket.at = now;
    this.#buckets.set(client, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return;
    }
    // Whole milliseconds, rounded up; the epsilon keeps float noise from adding one.
    const retryAfter = Math.ceil(((1 - bucket.tokens) / rate) * 1000 - 1e-6) / 1000;
    throw limitReached('requests', { max: rate }, 'limits.requests_per_second', retryAfter);
  }

  /** Counts a new stream of `client`; returns its release, to call once when the stream ends. */
  stream(client: string): () => void {
    const max = this.#settings.maxStreams;
    return this.#take(`${client}\nstreams`, max, () => limitReached('streams', { max }, 'limits.max_streams'));
  }

  /** Counts a new connection of `client` on `transport`; returns its release, to call once when it closes. */
  connection(client: string, transport: string): () => void {
    const max = this.#settings.maxConnections;
    const what = transport === 'http' ? 'HTTP requests in progress' : `${transport.toUpperCase()} connections`;
    return this.#take(`${client}\n${transport}`, max, () => limitReached('connections', { max, what }, 'limits.max_connections'));
  }

  /** Clients currently holding state (for tests of memory bounds). */
  get tracked(): number {
    return new Set([...this.#buckets.keys(), ...[...this.#counts.keys()].map((k) => k.split('\n')[0])]).size;
  }

  #take(counter: string, max: number, refusal: () => ServerError): () => void {
    const held = this.#counts.get(counter) ?? 0;
    if (max > 0 && held >= max) throw refusal();
    this.#counts.set(counter, held + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.#counts.get(counter) ?? 1) - 1;
      if (left > 0) this.#counts.set(counter, left);
      else this.#counts.delete(counter);
    };
  }

  /** Forgets the buckets that have refilled: a new bucket starts full, so nothing changes for them. */
  #prune(now: number): void {
    if (now - this.#prunedAt < PRUNE_INTERVAL_MS) return;
    this.#prunedAt = now;
    const { requestsPerSecond: rate, requestBurst: burst } = this.#settings;
    for (const [client, bucket] of this.#buckets) {
      if (bucket.tokens + ((now - bucket.at) / 1000) * rate >= burst) this.#buckets.delete(client);
    }
  }
}
