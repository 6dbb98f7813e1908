/**
 * JSON-RPC clients for the live transports (TCP, UDP, WebSocket, stdio), on real sockets and pipes.
 * Responses are routed by id, because a live stream answers one request many times. Every wait is
 * bounded, so a test fails instead of hanging.
 */
import type { ChildProcess } from 'node:child_process';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { connect, type Socket } from 'node:net';
import { WebSocket } from 'ws';
import type { Chunk, RpcResponse } from './rpc.js';
import { spawnCli } from './server-process.js';

export type LiveTransport = 'tcp' | 'udp' | 'ws';
export const LIVE_TRANSPORTS: LiveTransport[] = ['tcp', 'udp', 'ws'];

/** A chunk as live transports push it: it always names its stream. */
export type LiveChunk = Chunk & { stream_id: string };

export interface Drained {
  /** The chunks received live (over UDP: those not lost). */
  chunks: LiveChunk[];
  text: string;
  last: LiveChunk;
  /** UDP: how many gaps were repaired with `poll`. */
  repairs?: number;
}

const DEFAULT_WAIT_MS = 30_000;

function key(id: string | number | null): string {
  return JSON.stringify(id);
}

/** Splits "host:port" (IPv4 here). */
export function hostPort(address: string): { host: string; port: number } {
  const at = address.lastIndexOf(':');
  return { host: address.slice(0, at), port: Number(address.slice(at + 1)) };
}

/** Splits NDJSON into parsed lines; keeps every raw line for inspection. */
class LineParser {
  #rest = '';
  constructor(readonly onLine: (line: string) => void) {}
  push(data: Buffer | string): void {
    this.#rest += data.toString();
    let newline: number;
    while ((newline = this.#rest.indexOf('\n')) >= 0) {
      const line = this.#rest.slice(0, newline);
      this.#rest = this.#rest.slice(newline + 1);
      this.onLine(line);
    }
  }
}

/** The transport-independent part: id routing, requests, stream collection. */
export abstract class LiveRpc {
  /** Every message received, in order. */
  readonly received: RpcResponse[] = [];
  #queues = new Map<string, RpcResponse[]>();
  #waiters = new Map<string, () => void>();
  #arrivals = new Set<() => void>();
  #nextId = 1;
  /** Sees every message the moment it arrives (the benchmark stamps arrival times with it). */
  onMessage: ((message: RpcResponse) => void) | undefined;

  /** Sends one message exactly as given (framing added by the transport). */
  abstract sendRaw(data: string | Buffer): void;
  abstract close(): Promise<void>;

  protected deliver(text: string): void {
    const message = JSON.parse(text) as RpcResponse;
    this.onMessage?.(message);
    this.received.push(message);
    const k = key(message.id);
    const queue = this.#queues.get(k) ?? [];
    queue.push(message);
    this.#queues.set(k, queue);
    this.#waiters.get(k)?.();
    for (const arrival of [...this.#arrivals]) arrival();
  }

  newId(): number {
    return this.#nextId++;
  }

  /** The next message answering `id`. */
  async next(id: string | number | null, timeoutMs = DEFAULT_WAIT_MS): Promise<RpcResponse> {
    const k = key(id);
    const queued = this.#queues.get(k)?.shift();
    if (queued) return queued;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(k);
        reject(new Error(`no message for id ${k} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiters.set(k, () => {
        clearTimeout(timer);
        this.#waiters.delete(k);
        resolve();
      });
    });
    return this.#queues.get(k)!.shift()!;
  }

  /** Resolves once at least `count` messages for `id` have arrived and wait to be taken. */
  untilPending(id: string | number | null, count: number, timeoutMs = DEFAULT_WAIT_MS): Promise<void> {
    if (this.pending(id).length >= count) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#arrivals.delete(arrival);
        reject(new Error(`fewer than ${count} messages for id ${key(id)} within ${timeoutMs} ms`));
      }, timeoutMs);
      const arrival = (): void => {
        if (this.pending(id).length < count) return;
        clearTimeout(timer);
        this.#arrivals.delete(arrival);
        resolve();
      };
      this.#arrivals.add(arrival);
    });
  }

  /** Messages for `id` that arrived and were not taken yet. */
  pending(id: string | number | null): RpcResponse[] {
    return this.#queues.get(key(id)) ?? [];
  }

  send(method: string, params?: unknown, id: string | number | null = this.newId()): string | number | null {
    this.sendRaw(JSON.stringify({ jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) }));
    return id;
  }

  async call(method: string, params?: unknown, id?: string | number | null): Promise<RpcResponse> {
    return this.next(this.send(method, params, id));
  }

  async result(method: string, params?: unknown): Promise<any> {
    const res = await this.call(method, params);
    if (res.error) throw new Error(`${method}: ${res.error.code} ${res.error.message}`);
    return res.result;
  }

  /** Reads the chunks answering `id` until the final one; an error response throws. */
  async collect(id: string | number | null, timeoutMs = DEFAULT_WAIT_MS): Promise<Drained> {
    const chunks: LiveChunk[] = [];
    for (;;) {
      const res = await this.next(id, timeoutMs);
      if (res.error) throw new Error(`stream ${key(id)}: ${res.error.code} ${res.error.message}`);
      const chunk = res.result.chunk as LiveChunk;
      chunks.push(chunk);
      if (chunk.end) return { chunks, text: chunks.map((c) => c.delta).join(''), last: chunk };
    }
  }

  /** Starts a stream with `rkllm_run_async` and reads it to the end. */
  async stream(params: Record<string, unknown>, id?: string | number): Promise<Drained> {
    return this.collect(this.send('rkllm_run_async', params, id));
  }
}

/** NDJSON over one TCP connection. */
export class TcpRpc extends LiveRpc {
  readonly socket: Socket;
  readonly closed: Promise<void>;

  private constructor(socket: Socket) {
    super();
    this.socket = socket;
    const lines = new LineParser((line) => this.deliver(line));
    socket.on('data', (data) => lines.push(data));
    socket.on('error', () => {});
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
  }

  static async connect(address: string): Promise<TcpRpc> {
    const { host, port } = hostPort(address);
    const socket = connect({ host, port, noDelay: true });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    return new TcpRpc(socket);
  }

  sendRaw(data: string | Buffer): void {
    this.socket.write(typeof data === 'string' ? `${data}\n` : data);
  }

  async close(): Promise<void> {
    this.socket.destroy();
    await this.closed;
  }
}

/** One message per text frame. */
export class WsRpc extends LiveRpc {
  readonly ws: WebSocket;
  readonly closed: Promise<{ code: number; reason: string }>;

  private constructor(ws: WebSocket) {
    super();
    this.ws = ws;
    ws.on('message', (data: Buffer) => this.deliver(data.toString()));
    ws.on('error', () => {});
    this.closed = new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  }

  /** `headers` go with the handshake (e.g. an Authorization header). */
  static async connect(address: string, headers: Record<string, string> = {}): Promise<WsRpc> {
    // Listen before the socket opens: a message may arrive right behind the handshake.
    const client = new WsRpc(new WebSocket(`ws://${address}/`, { headers }));
    await new Promise<void>((resolve, reject) => {
      client.ws.once('open', resolve);
      client.ws.once('error', reject);
    });
    return client;
  }

  sendRaw(data: string | Buffer): void {
    this.ws.send(data, { binary: typeof data !== 'string' });
  }

  async close(): Promise<void> {
    this.ws.terminate();
    await this.closed;
  }
}

/** One message per datagram. `drop` can discard received datagrams, to simulate loss. */
export class UdpRpc extends LiveRpc {
  readonly socket: UdpSocket;
  readonly #to: { host: string; port: number };
  drop: ((message: RpcResponse) => boolean) | undefined;

  private constructor(socket: UdpSocket, to: { host: string; port: number }) {
    super();
    this.socket = socket;
    this.#to = to;
    socket.on('message', (data) => {
      if (this.drop?.(JSON.parse(data.toString()) as RpcResponse)) return;
      this.deliver(data.toString());
    });
  }

  static async connect(address: string): Promise<UdpRpc> {
    const socket = createSocket('udp4');
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
    return new UdpRpc(socket, hostPort(address));
  }

  sendRaw(data: string | Buffer): void {
    this.socket.send(typeof data === 'string' ? Buffer.from(data) : data, this.#to.port, this.#to.host);
  }

  /**
   * Reads a stream the way a UDP client must: chunks may be lost, so on a gap in seq (or when
   * nothing arrives for a while) it fetches what it missed with `poll` and `after_seq`. At the end it
   * acknowledges the final chunk, which releases the stream's buffer.
   */
  override async collect(id: string | number | null, timeoutMs = DEFAULT_WAIT_MS): Promise<Drained> {
    const chunks: LiveChunk[] = [];
    const early = new Map<number, LiveChunk>();
    const deadline = Date.now() + timeoutMs;
    let text = '';
    let upTo = -1;
    let last: LiveChunk | undefined;
    let streamId: string | undefined;
    let repairs = 0;
    const poll = (params: Record<string, unknown>): Promise<RpcResponse | undefined> =>
      this.next(this.send('poll', params), 1000).catch(() => undefined);
    const take = (chunk: LiveChunk): void => {
      if (chunk.seq <= upTo) return;
      text += chunk.delta;
      upTo = chunk.seq;
      if (chunk.end) last = chunk;
    };
    while (!last) {
      if (Date.now() > deadline) throw new Error(`stream ${key(id)} did not end within ${timeoutMs} ms`);
      const res = await this.next(id, 500).catch(() => undefined);
      if (res?.error) throw new Error(`stream ${key(id)}: ${res.error.code} ${res.error.message}`);
      if (res) {
        const chunk = res.result.chunk as LiveChunk;
        chunks.push(chunk);
        streamId = chunk.stream_id;
        early.set(chunk.seq, chunk);
      }
      for (let next = early.get(upTo + 1); next; next = early.get(upTo + 1)) take(next);
      const gap = [...early.keys()].some((seq) => seq > upTo + 1);
      // Until a chunk names the stream, keep waiting: request ids need not be unique across clients.
      if ((gap || !res) && !last && streamId !== undefined) {
        const polled = await poll({ stream_id: streamId, after_seq: upTo });
        const chunk = polled?.result?.chunk as LiveChunk | null | undefined;
        if (chunk) {
          repairs++;
          streamId = chunk.stream_id;
          take(chunk);
        }
      }
    }
    await poll({ stream_id: last.stream_id, after_seq: last.seq });
    return { chunks, text, last, repairs };
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.socket.close(() => resolve()));
  }
}

export function connectLive(transport: LiveTransport, addresses: Record<string, string>): Promise<LiveRpc> {
  const address = addresses[transport]!;
  if (transport === 'tcp') return TcpRpc.connect(address);
  if (transport === 'ws') return WsRpc.connect(address);
  return UdpRpc.connect(address);
}

/** A server spawned with `--stdio`, spoken to through its stdin and stdout. */
export class StdioRpc extends LiveRpc {
  readonly proc: ChildProcess;
  /** Every line the server wrote to stdout. */
  readonly stdoutLines: string[] = [];
  readonly exited: Promise<number | null>;
  /** Bound addresses of the network transports also enabled, from the readiness line. */
  addresses: Record<string, string> = {};
  #stderr = '';

  private constructor(proc: ChildProcess) {
    super();
    this.proc = proc;
    const lines = new LineParser((line) => {
      this.stdoutLines.push(line);
      this.deliver(line);
    });
    proc.stdout!.on('data', (data: Buffer) => lines.push(data));
    proc.stderr!.on('data', (data: Buffer) => (this.#stderr += data.toString()));
    // 'close', not 'exit': by then everything it wrote has been read.
    this.exited = new Promise((resolve) => proc.once('close', (code) => resolve(code)));
  }

  /** Spawns the server with `--stdio` (and no network transports unless asked) and waits for its readiness line. */
  static async spawn(args: string[] = ['--no-http', '--no-tcp', '--no-udp', '--no-ws'], env?: Record<string, string>): Promise<StdioRpc> {
    const proc = spawnCli(['--stdio', ...args], { ...(env ? { env } : {}) });
    const rpc = new StdioRpc(proc);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`server did not become ready:\n${rpc.stderr}`)), 60_000);
      const check = (): void => {
        const ready = rpc.stderr
          .split('\n')
          .slice(0, -1)
          .find((line) => line.includes('listening for connections'));
        if (!ready) return;
        rpc.addresses = (JSON.parse(ready) as { addresses: Record<string, string> }).addresses;
        clearTimeout(timer);
        proc.stderr!.off('data', check);
        resolve();
      };
      proc.stderr!.on('data', check);
      proc.once('exit', () => reject(new Error(`server exited before it was ready:\n${rpc.stderr}`)));
    });
    return rpc;
  }

  get stderr(): string {
    return this.#stderr;
  }

  sendRaw(data: string | Buffer): void {
    this.proc.stdin!.write(typeof data === 'string' ? `${data}\n` : data);
  }

  /** Closes stdin (the server then shuts down) and waits for the exit code. */
  async close(): Promise<void> {
    this.proc.stdin!.end();
    await this.exited;
  }

  /** Last resort for teardown. */
  kill(): void {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGKILL');
  }
}
