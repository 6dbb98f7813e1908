/**
 * `npm run bench:soak -- --minutes N` (default 2): many mixed streams against one real server in
 * this process, for N minutes. HTTP clients poll with `after_seq`; TCP and WebSocket clients read
 * the pushed chunks; some streams are aborted midway, some abandoned (an HTTP stream never polled,
 * a live connection dropped). Every stream read to its end is checked: its seqs once each and in
 * order, and its text equal to the same prompt's text from a solo `rkllm_run` (greedy sampling).
 * The process's RSS is sampled every 2 s; the slope (MiB per minute, least squares over the second
 * half) shows whether memory grows. Not part of the test suite.
 */
import { parseArgs } from 'node:util';
import { connectLive, type LiveRpc } from '../test/helpers/live-rpc.js';
import { HttpRpc, type Chunk } from '../test/helpers/rpc.js';
import { greedy, PROMPTS } from '../test/helpers/prompts.js';
import { pino } from 'pino';
import { startServer } from '../src/server.js';
import { testSettings } from '../test/helpers/server.js';

const WORKERS = 8;
const MAX_TOKENS = 48;

interface Counts {
  streams: number;
  complete: number;
  aborted: number;
  abandoned: number;
  tokens: number;
  lost: number;
  duplicated: number;
  textMismatch: number;
  errors: number;
  firstProblems: string[];
}

function params(prompt: number): Record<string, unknown> {
  return { prompt_input: PROMPTS[prompt], max_new_tokens: MAX_TOKENS, ...greedy, seed: 1 };
}

/** Least-squares slope of y over x. */
function slope(points: Array<[number, number]>): number {
  const n = points.length;
  if (n < 2) return NaN;
  const mx = points.reduce((s, [x]) => s + x, 0) / n;
  const my = points.reduce((s, [, y]) => s + y, 0) / n;
  const num = points.reduce((s, [x, y]) => s + (x - mx) * (y - my), 0);
  const den = points.reduce((s, [x]) => s + (x - mx) ** 2, 0);
  return num / den;
}

function problem(counts: Counts, text: string): void {
  if (counts.firstProblems.length < 8) counts.firstProblems.push(text);
}

/** Checks a stream read to its end: seqs (each chunk covers the seqs after the previous one) and text. */
function check(counts: Counts, what: string, chunks: Chunk[], reference: string, aborted: boolean): void {
  const seen = new Set<number>();
  let previous = -1;
  for (const c of chunks) {
    if (c.seq <= previous || seen.has(c.seq)) {
      counts.duplicated++;
      problem(counts, `${what}: seq ${c.seq} after ${previous}`);
    }
    seen.add(c.seq);
    previous = Math.max(previous, c.seq);
  }
  const last = chunks.at(-1);
  if (!last?.end) {
    counts.lost++;
    problem(counts, `${what}: no final chunk`);
    return;
  }
  const text = chunks.map((c) => c.delta).join('');
  counts.tokens += last.perf?.generate_tokens ?? 0;
  if (aborted ? !reference.startsWith(text) : text !== reference) {
    counts.textMismatch++;
    problem(counts, `${what}: text ${JSON.stringify(text.slice(0, 60))} differs from ${JSON.stringify(reference.slice(0, 60))}`);
  }
  if (last.finish_reason === 'abort') counts.aborted++;
  else counts.complete++;
}

/** Live chunks must also come one seq at a time: a gap is a lost chunk. */
function gaps(chunks: Chunk[]): number {
  let lost = 0;
  for (let i = 1; i < chunks.length; i++) lost += Math.max(0, chunks[i]!.seq - chunks[i - 1]!.seq - 1);
  return lost + (chunks.length > 0 ? chunks[0]!.seq : 0);
}

async function httpStream(http: HttpRpc, counts: Counts, prompt: number, reference: string, mode: number): Promise<void> {
  const { stream_id } = await http.start(params(prompt));
  counts.streams++;
  if (mode === 0) {
    counts.abandoned++;
    return;
  }
  const chunks: Chunk[] = [];
  let after = -1;
  let aborted = false;
  for (;;) {
    const res = await http.call<{ chunk: Chunk | null }>('poll', { stream_id, after_seq: after, wait_ms: 2000 });
    if (res.error) {
      counts.errors++;
      problem(counts, `http poll: ${res.error.code} ${res.error.message}`);
      return;
    }
    const chunk = res.result!.chunk;
    if (!chunk) continue;
    chunks.push(chunk);
    after = chunk.seq;
    if (chunk.end) break;
    if (mode === 1 && !aborted && chunks.length >= 2) {
      aborted = true;
      await http.call('rkllm_abort', { stream_id });
    }
  }
  // The loss-free client releases the buffer with a last poll acknowledging the final seq.
  await http.call('poll', { stream_id, after_seq: after });
  check(counts, `http ${stream_id}`, chunks, reference, aborted);
}

async function liveStream(rpc: LiveRpc, counts: Counts, prompt: number, reference: string, mode: number, what: string): Promise<void> {
  const id = rpc.send('rkllm_run_async', params(prompt));
  counts.streams++;
  const chunks: Chunk[] = [];
  let aborted = false;
  for (;;) {
    const res = await rpc.next(id);
    if (res.error) {
      counts.errors++;
      problem(counts, `${what}: ${res.error.code} ${res.error.message}`);
      return;
    }
    const chunk = (res.result as { chunk: Chunk }).chunk;
    chunks.push(chunk);
    if (chunk.end) break;
    if (mode === 0 && chunks.length >= 3) {
      counts.abandoned++;
      return; // the caller drops the connection
    }
    if (mode === 1 && !aborted && chunks.length >= 2) {
      aborted = true;
      rpc.send('rkllm_abort', { stream_id: chunk.stream_id }, `abort-${String(id)}`);
    }
  }
  const lost = gaps(chunks);
  if (lost > 0) problem(counts, `${what}: ${lost} seqs missing`);
  counts.lost += lost;
  check(counts, what, chunks, reference, aborted);
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { minutes: { type: 'string', default: '2' } } });
  const minutes = Number(values.minutes);
  // No stream observer and no log kept in memory (the test server keeps both, and would grow with every stream).
  const server = await startServer(testSettings({ streams: { buffer_timeout_s: 5 } }), pino({ level: 'silent' }));
  const http = new HttpRpc(`http://${server.addresses.http}/`);
  const references: string[] = [];
  for (let p = 0; p < PROMPTS.length; p++) references.push((await http.result<{ text: string }>('rkllm_run', params(p))).text);

  const counts: Counts = {
    streams: 0,
    complete: 0,
    aborted: 0,
    abandoned: 0,
    tokens: 0,
    lost: 0,
    duplicated: 0,
    textMismatch: 0,
    errors: 0,
    firstProblems: [],
  };
  const started = performance.now();
  const endAt = started + minutes * 60_000;
  const rss: Array<[number, number]> = [];
  const heap: Array<[number, number]> = [];
  // With --expose-gc (as `npm run bench:soak` runs it), a full collection before each sample keeps garbage out of the figures.
  const gc = (globalThis as { gc?: () => void }).gc;
  const sampler = setInterval(() => {
    gc?.();
    const at = (performance.now() - started) / 60_000;
    const memory = process.memoryUsage();
    rss.push([at, memory.rss / 2 ** 20]);
    heap.push([at, memory.heapUsed / 2 ** 20]);
  }, 2000);
  let n = 0;
  const worker = async (w: number): Promise<void> => {
    while (performance.now() < endAt) {
      const i = n++;
      const prompt = i % PROMPTS.length;
      // Modes: 0 abandoned, 1 aborted, otherwise read to the end.
      const mode = i % 10 === 0 ? 0 : i % 10 === 5 ? 1 : 2;
      const transport = (['http', 'tcp', 'ws'] as const)[(i + w) % 3]!;
      try {
        if (transport === 'http') await httpStream(http, counts, prompt, references[prompt]!, mode);
        else {
          const rpc = await connectLive(transport, server.addresses);
          try {
            await liveStream(rpc, counts, prompt, references[prompt]!, mode, `${transport} #${i}`);
          } finally {
            await rpc.close();
          }
        }
      } catch (err) {
        counts.errors++;
        problem(counts, `${transport} #${i}: ${(err as Error).message}`);
      }
    }
  };
  await Promise.all(Array.from({ length: WORKERS }, (_, w) => worker(w)));
  clearInterval(sampler);
  const alive = await http.call('rkllm_is_running', {});
  const half = rss.filter(([t]) => t >= minutes / 2);
  const heapHalf = heap.filter(([t]) => t >= minutes / 2);
  process.stdout.write(
    `\nsoak, ${new Date().toISOString()}, ${minutes} min, ${WORKERS} concurrent clients, ${MAX_TOKENS} tokens a stream\n`,
  );
  process.stdout.write(
    `streams ${counts.streams}: complete ${counts.complete}, aborted ${counts.aborted}, abandoned ${counts.abandoned}; tokens ${counts.tokens}\n`,
  );
  process.stdout.write(
    `lost ${counts.lost}, duplicated ${counts.duplicated}, text mismatches ${counts.textMismatch}, errors ${counts.errors}; server answers: ${alive.result ? 'yes' : 'NO'}\n`,
  );
  const first = rss[0]?.[1] ?? NaN;
  const last = rss.at(-1)?.[1] ?? NaN;
  const peak = Math.max(...rss.map(([, y]) => y));
  process.stdout.write(
    `RSS MiB: first ${first.toFixed(0)}, last ${last.toFixed(0)}, peak ${peak.toFixed(0)}; slope over the second half ${slope(half).toFixed(2)} MiB/min (${half.length} samples${gc ? ', each after a full GC' : ''}); JS heap ${heap.at(-1)?.[1].toFixed(0)} MiB, slope ${slope(heapHalf).toFixed(2)} MiB/min\n`,
  );
  for (const p of counts.firstProblems) process.stdout.write(`  ${p}\n`);
  await server.shutdown();
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`${(err as Error).stack}\n`);
    process.exit(1);
  },
);
