/**
 * The benchmark's client, run on a worker thread (its own core, as a separate client process would
 * be): `streams` concurrent streams over one transport. HTTP clients start with rkllm_run_async and
 * long-poll to the end; TCP, WebSocket and UDP clients read the pushed chunks (UDP repairing gaps
 * with poll). Reports when each seq arrived (wall clock, so the server's thread can compare) and
 * the totals.
 */
import type { Agent } from 'node:http';
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { connectLive, type LiveTransport } from '../test/helpers/live-rpc.js';
import type { Chunk } from '../src/streams/stream.js';
import { benchAgent, burstFirstChunk, llamaServerBurst, llamaServerStream, requestsPerSecond, send } from './load.js';

export type BenchTransport = 'http' | LiveTransport;

export interface ClientInput {
  transport: BenchTransport;
  /** Bound addresses by transport, as the server reports them. */
  addresses: Record<string, string>;
  streams: number;
  params: Record<string, unknown>;
}

/** Other jobs the worker runs (see load.ts); each answers with a number or a list of numbers. */
export type LoadJob =
  | {
      job: 'burst';
      transport: LiveTransport;
      addresses: Record<string, string>;
      streams: number;
      rounds: number;
      params: Record<string, unknown>;
    }
  | { job: 'rps'; url: string; body?: string; connections: number; seconds: number }
  | { job: 'llama-stream'; base: string; streams: number; prompt: string; tokens: number }
  | { job: 'llama-burst'; base: string; streams: number; rounds: number; prompt: string; tokens: number };

export interface ClientReport {
  /** When the client held each chunk's seq (wall clock, ms). */
  received: Array<{ stream_id: string; seq: number; at: number }>;
  /** HTTP only: polls sent. */
  polls: number;
  /** Tokens generated over all streams (from the final chunks' perf). */
  tokens: number;
  seconds: number;
}

/** Milliseconds since the epoch with sub-millisecond precision, comparable across threads. */
export function wallClock(): number {
  return performance.timeOrigin + performance.now();
}

/** JSON-RPC over HTTP on Node's own client (see `send`): one keep-alive connection per stream. */
class PollClient {
  readonly #agent: Agent;
  readonly #url: URL;
  #id = 1;

  constructor(url: string, streams: number) {
    this.#agent = benchAgent(streams);
    this.#url = new URL(url);
  }

  async result<T>(method: string, params: unknown): Promise<T> {
    const { text } = await send(this.#agent, this.#url, JSON.stringify({ jsonrpc: '2.0', id: this.#id++, method, params }));
    const reply = JSON.parse(text()) as { result?: T; error?: { code: number; message: string } };
    if (reply.error) throw new Error(`${method}: ${reply.error.code} ${reply.error.message}`);
    return reply.result as T;
  }

  close(): void {
    this.#agent.destroy();
  }
}

async function pollStream(rpc: PollClient, params: Record<string, unknown>, report: ClientReport): Promise<void> {
  const { stream_id } = await rpc.result<{ stream_id: string }>('rkllm_run_async', params);
  let after = -1;
  for (;;) {
    const { chunk } = await rpc.result<{ chunk: Chunk | null }>('poll', { stream_id, wait_ms: 10_000 });
    report.polls++;
    const at = wallClock();
    if (!chunk) continue;
    for (let seq = after + 1; seq <= chunk.seq; seq++) report.received.push({ stream_id, seq, at });
    after = chunk.seq;
    if (chunk.end) {
      report.tokens += chunk.perf?.generate_tokens ?? 0;
      return;
    }
  }
}

async function pollAll(input: ClientInput, report: ClientReport): Promise<void> {
  const rpc = new PollClient(`http://${input.addresses.http}/`, input.streams);
  try {
    await Promise.all(Array.from({ length: input.streams }, () => pollStream(rpc, input.params, report)));
  } finally {
    rpc.close();
  }
}

/** One connection per stream, as independent clients would have. */
async function liveAll(input: ClientInput, transport: LiveTransport, report: ClientReport): Promise<void> {
  const one = async (): Promise<void> => {
    const rpc = await connectLive(transport, input.addresses);
    rpc.onMessage = (message) => {
      const chunk = (message.result as { chunk?: Chunk & { stream_id: string } } | undefined)?.chunk;
      if (chunk) report.received.push({ stream_id: chunk.stream_id, seq: chunk.seq, at: wallClock() });
    };
    try {
      const { last } = await rpc.stream(input.params);
      report.tokens += last.perf?.generate_tokens ?? 0;
    } finally {
      await rpc.close();
    }
  };
  await Promise.all(Array.from({ length: input.streams }, one));
}

async function run(input: ClientInput): Promise<ClientReport> {
  const report: ClientReport = { received: [], polls: 0, tokens: 0, seconds: 0 };
  const started = performance.now();
  if (input.transport === 'http') await pollAll(input, report);
  else await liveAll(input, input.transport, report);
  report.seconds = (performance.now() - started) / 1000;
  return report;
}

/** llama-server streams: tokens/s over all of them. */
async function llamaStreams(job: Extract<LoadJob, { job: 'llama-stream' }>): Promise<number> {
  const started = performance.now();
  const runs = await Promise.all(Array.from({ length: job.streams }, () => llamaServerStream(job.base, job.prompt, job.tokens)));
  return runs.reduce((n, r) => n + r.tokens, 0) / ((performance.now() - started) / 1000);
}

async function load(job: LoadJob): Promise<number | number[]> {
  switch (job.job) {
    case 'burst':
      return burstFirstChunk(job.transport, job.addresses, job.streams, job.rounds, job.params);
    case 'rps':
      return requestsPerSecond(job.url, job.body, job.connections, job.seconds);
    case 'llama-stream':
      return llamaStreams(job);
    case 'llama-burst':
      return llamaServerBurst(job.base, job.streams, job.rounds, job.prompt, job.tokens);
  }
}

if (!isMainThread && parentPort) {
  const port = parentPort;
  const data = workerData as ClientInput | LoadJob;
  ('job' in data ? load(data) : run(data)).then(
    (report) => port.postMessage(report),
    (err: unknown) => {
      throw err;
    },
  );
}
