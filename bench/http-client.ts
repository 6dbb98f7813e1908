/**
 * The benchmark's HTTP client, run on a worker thread: `streams` concurrent streams, each started
 * with rkllm_run_async and long-polled to its end. Reports when each seq arrived (wall clock, so
 * the server's thread can compare) and the totals.
 */
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { HttpRpc } from '../test/helpers/rpc.js';
import type { Chunk } from '../src/streams/stream.js';

export interface ClientInput {
  url: string;
  streams: number;
  params: Record<string, unknown>;
}

export interface ClientReport {
  /** When the client held each chunk's seq (wall clock, ms). */
  received: Array<{ stream_id: string; seq: number; at: number }>;
  polls: number;
  /** Tokens generated over all streams (from the final chunks' perf). */
  tokens: number;
  seconds: number;
}

/** Milliseconds since the epoch with sub-millisecond precision, comparable across threads. */
export function wallClock(): number {
  return performance.timeOrigin + performance.now();
}

async function stream(rpc: HttpRpc, params: Record<string, unknown>, report: ClientReport): Promise<void> {
  const { stream_id } = await rpc.start(params);
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

async function run(input: ClientInput): Promise<ClientReport> {
  const rpc = new HttpRpc(input.url);
  const report: ClientReport = { received: [], polls: 0, tokens: 0, seconds: 0 };
  const started = performance.now();
  await Promise.all(Array.from({ length: input.streams }, () => stream(rpc, input.params, report)));
  report.seconds = (performance.now() - started) / 1000;
  return report;
}

if (!isMainThread && parentPort) {
  const port = parentPort;
  run(workerData as ClientInput).then(
    (report) => port.postMessage(report),
    (err: unknown) => {
      throw err;
    },
  );
}
