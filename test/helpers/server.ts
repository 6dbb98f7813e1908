/**
 * A real server, started in this process with `startServer` on port 0 for every transport, running
 * the real engine (the built-in tiny model unless the settings say otherwise). Clients still talk
 * to it over real sockets. Its log is kept in memory, so tests can read it and wait for a line; its
 * streams are observed, so tests can wait for a stream to start, run or send a chunk instead of
 * sleeping.
 */
import { pino, type Logger } from 'pino';
import { startServer, type RunningServer } from '../../src/server.js';
import { merge, resolveSettings } from '../../src/settings-sources.js';
import type { Settings } from '../../src/settings.js';
import type { StreamObserver } from '../../src/streams/hub.js';
import type { Chunk } from '../../src/streams/stream.js';
import { connectLive, TcpRpc, UdpRpc, WsRpc, type LiveRpc, type LiveTransport } from './live-rpc.js';
import { HttpRpc } from './rpc.js';

/** Every transport on a free port, and a stop that ends what still runs at once rather than draining it. */
const TEST_SETTINGS = {
  http: { port: 0 },
  tcp: { port: 0 },
  udp: { port: 0 },
  ws: { port: 0 },
  shutdown: { drain_timeout_s: 0, final_poll_timeout_s: 0 },
};

/** The settings a test server runs with: the defaults, then the test defaults, then `overrides` (validated as a settings file is). */
export function testSettings(overrides: Record<string, unknown> = {}): Settings {
  return resolveSettings([{ source: 'test settings', values: merge(TEST_SETTINGS, overrides) }]);
}

/** A log kept in memory, one parsed JSON object per line. */
export interface CapturedLog {
  readonly log: Logger;
  readonly lines: ReadonlyArray<Record<string, any>>;
  /** Every line as written, joined: what the CLI would have printed on stderr. */
  text(): string;
  /** Resolves with the first line (already written or still to come) whose `msg` includes `text`. */
  line(text: string, timeoutMs?: number): Promise<Record<string, any>>;
}

export function captureLog(level: Settings['log_level'] = 'info'): CapturedLog {
  const raw: string[] = [];
  const lines: Array<Record<string, any>> = [];
  const waiters = new Set<(line: Record<string, any>) => void>();
  const write = (text: string): void => {
    raw.push(text);
    const line = JSON.parse(text) as Record<string, any>;
    lines.push(line);
    for (const waiter of waiters) waiter(line);
    if (process.env.TEST_SERVER_LOG) process.stderr.write(text);
  };
  const has = (line: Record<string, any>, text: string): boolean => String(line.msg).includes(text);
  return {
    log: pino({ level }, { write }),
    lines,
    text: () => raw.join(''),
    line: (text, timeoutMs = 30_000) => {
      const seen = lines.find((l) => has(l, text));
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(new Error(`no log line with "${text}" within ${timeoutMs} ms:\n${raw.join('')}`));
        }, timeoutMs);
        const waiter = (line: Record<string, any>): void => {
          if (!has(line, text)) return;
          clearTimeout(timer);
          waiters.delete(waiter);
          resolve(line);
        };
        waiters.add(waiter);
      });
    },
  };
}

/** What the server's streams do, as events a test can wait for. */
export class StreamEvents implements StreamObserver {
  /** The ids of the streams admitted, in order. */
  readonly startedIds: string[] = [];
  /** The final chunk of each stream that has ended. */
  readonly finals = new Map<string, Chunk>();
  readonly #chunks = new Map<string, number>();
  readonly #ended = new Set<string>();
  readonly #live = new Set<string>();
  readonly #waiters = new Set<() => void>();
  #runs = 0;

  chunk(streamId: string, chunk: Chunk): void {
    this.#chunks.set(streamId, (this.#chunks.get(streamId) ?? 0) + 1);
    if (chunk.end) {
      this.finals.set(streamId, chunk);
      this.#ended.add(streamId);
      this.#live.delete(streamId);
    }
    this.#wake();
  }

  started(streamId: string): void {
    this.startedIds.push(streamId);
    this.#live.add(streamId);
    this.#wake();
  }

  /** Streams admitted (queued or running) whose final chunk has not been produced yet. */
  get live(): number {
    return this.#live.size;
  }

  running(): void {
    this.#runs++;
    this.#wake();
  }

  /** How many streams have got an engine slot so far (the engine runs them from that moment). */
  get runs(): number {
    return this.#runs;
  }

  /** Chunks produced so far by `streamId`. */
  chunks(streamId: string): number {
    return this.#chunks.get(streamId) ?? 0;
  }

  /** Resolves once `streamId` has produced at least `count` chunks. */
  untilChunks(streamId: string, count: number, timeoutMs?: number): Promise<void> {
    return this.until(() => this.chunks(streamId) >= count, `stream ${streamId} to produce ${count} chunks`, timeoutMs);
  }

  /** Resolves once `streamId` has produced its final chunk. */
  untilEnded(streamId: string, timeoutMs?: number): Promise<void> {
    return this.until(() => this.#ended.has(streamId), `stream ${streamId} to end`, timeoutMs);
  }

  /** Runs `action`, then resolves once one more stream than before has got an engine slot. */
  async untilNextRun(action: () => unknown, timeoutMs?: number): Promise<void> {
    const before = this.#runs;
    await action();
    await this.until(() => this.#runs > before, 'a stream to start running', timeoutMs);
  }

  /** Resolves once `condition` holds, checked after every stream event. */
  until(condition: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
    if (condition()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        reject(new Error(`waited ${timeoutMs} ms for ${what}`));
      }, timeoutMs);
      const check = (): void => {
        if (!condition()) return;
        clearTimeout(timer);
        this.#waiters.delete(check);
        resolve();
      };
      this.#waiters.add(check);
    });
  }

  #wake(): void {
    for (const waiter of [...this.#waiters]) waiter();
  }
}

export interface TestServerOptions {
  /** Settings over the test defaults (every port 0; streams ended at once on stop). */
  settings?: Record<string, unknown>;
}

/** A server running in this process, with clients for each transport. Close it in teardown (or `await using` it). */
export interface TestServer extends AsyncDisposable {
  readonly server: RunningServer;
  readonly settings: Settings;
  /** Bound addresses by transport ("127.0.0.1:PORT"). */
  readonly addresses: Record<string, string>;
  /** `http://host:port/` of the HTTP transport. */
  readonly url: string;
  /** A JSON-RPC client over HTTP, without headers. */
  readonly http: HttpRpc;
  readonly log: CapturedLog;
  readonly streams: StreamEvents;
  /** Opens a live client on `transport`; the caller closes it. */
  connect(transport: LiveTransport, headers?: Record<string, string>): Promise<LiveRpc>;
  tcp(): Promise<TcpRpc>;
  ws(headers?: Record<string, string>): Promise<WsRpc>;
  udp(): Promise<UdpRpc>;
  /** Shuts down as the CLI does on SIGTERM (with the test settings: ending what runs at once). Idempotent. */
  close(): Promise<void>;
}

/** Starts a server in this process and resolves once it serves (its model loaded). */
export async function startTestServer(options: TestServerOptions = {}): Promise<TestServer> {
  const settings = testSettings(options.settings);
  const log = captureLog(settings.log_level);
  const streams = new StreamEvents();
  const server = await startServer(settings, log.log, { observer: streams });
  const { addresses } = server;
  const url = `http://${addresses.http}/`;
  let closed: Promise<void> | undefined;
  const close = (): Promise<void> => (closed ??= server.shutdown());
  return {
    server,
    settings,
    addresses,
    url,
    http: new HttpRpc(url),
    log,
    streams,
    connect: (transport, headers) =>
      transport === 'ws' && headers ? WsRpc.connect(addresses.ws!, headers) : connectLive(transport, addresses),
    tcp: () => TcpRpc.connect(addresses.tcp!),
    ws: (headers) => WsRpc.connect(addresses.ws!, headers),
    udp: () => UdpRpc.connect(addresses.udp!),
    close,
    [Symbol.asyncDispose]: close,
  };
}
