/**
 * The fleet's row of `npm run bench`: a burst of short greedy runs (`rkllm_run` over HTTP, all
 * sent to one instance at once) on 3 instances sharing one Redis queue, against 1 instance alone
 * (no Redis), each a CLI process with `--parallel 1 --threads 1`. It reports aggregate tokens/s
 * and the p99 queue wait (a run's time from sent to answered, less its prefill and generation).
 *
 * It also measures what the shared queue costs one run: the same runs one after another on a
 * single instance with and without Redis (the median time a run spends outside the engine), and the Redis round trips per run (from
 * `INFO commandstats`, less what the idle instance sends in the same time: renewals and checks).
 */
import { basename } from 'node:path';
import { Redis } from 'ioredis';
import { startRedis, type RedisProcess } from '../test/helpers/redis-server.js';
import { HttpRpc } from '../test/helpers/rpc.js';
import { startServer, type ServerProcess } from '../test/helpers/server-process.js';
import { GREEDY, PROMPT } from './measure.js';

export interface FleetBenchOptions {
  /** The GGUF every instance loads. */
  modelPath: string;
  /** Runs in the burst. */
  runs: number;
  /** Tokens per run. */
  tokens: number;
}

interface Burst {
  tokensPerSecond: number;
  /** Queue waits, ms, sorted. */
  waits: number[];
}

interface RunAnswer {
  perf: { prefill_time_ms: number; generate_time_ms: number; generate_tokens: number };
}

function at(sorted: number[], p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function fixed(n: number, digits: number): string {
  return Number.isFinite(n) ? n.toFixed(digits) : '-';
}

async function instances(count: number, redis: RedisProcess | undefined, modelPath: string): Promise<ServerProcess[]> {
  const args = [
    '--model',
    modelPath,
    '--parallel',
    '1',
    '--threads',
    '1',
    '--no-udp',
    '--no-ws',
    '--no-tcp',
    ...(redis ? ['--redis', redis.url] : []),
  ];
  const settings = { engine: { queue_limit_per_client: 0 }, limits: { requests_per_second: 0 } };
  return Promise.all(Array.from({ length: count }, () => startServer({ args, settings })));
}

async function stopAll(servers: ServerProcess[]): Promise<void> {
  await Promise.all(servers.map((s) => s.stop()));
}

/** `runs` rkllm_run sent at once to `rpc`. */
async function burst(rpc: HttpRpc, options: FleetBenchOptions): Promise<Burst> {
  const params = { prompt_input: PROMPT, max_new_tokens: options.tokens, ...GREEDY };
  const started = performance.now();
  const answers = await Promise.all(
    Array.from({ length: options.runs }, async () => {
      const sent = performance.now();
      const answer = await rpc.result<RunAnswer>('rkllm_run', params);
      return { answer, wait: performance.now() - sent - answer.perf.prefill_time_ms - answer.perf.generate_time_ms };
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const tokens = answers.reduce((sum, a) => sum + a.answer.perf.generate_tokens, 0);
  return { tokensPerSecond: tokens / seconds, waits: answers.map((a) => Math.max(0, a.wait)).sort((x, y) => x - y) };
}

/**
 * The median time, ms, that `runs` runs one after another each spend outside the engine (answered
 * less prefill and generation): what admission, queueing and delivery add to a run. It leaves out
 * how fast the engine went, which on a shared machine varies more than the cost measured.
 */
async function overhead(rpc: HttpRpc, options: FleetBenchOptions): Promise<{ outside: number; wall: number }> {
  const params = { prompt_input: PROMPT, max_new_tokens: options.tokens, ...GREEDY };
  await rpc.result('rkllm_run', params);
  const outside: number[] = [];
  const wall: number[] = [];
  for (let i = 0; i < options.runs; i++) {
    const sent = performance.now();
    const { perf } = await rpc.result<RunAnswer>('rkllm_run', params);
    wall.push(performance.now() - sent);
    outside.push(wall.at(-1)! - perf.prefill_time_ms - perf.generate_time_ms);
  }
  const median = (values: number[]): number =>
    at(
      values.sort((x, y) => x - y),
      50,
    );
  return { outside: median(outside), wall: median(wall) };
}

/**
 * Round trips clients made to Redis so far: script calls, reads and set reads, from `INFO
 * commandstats` (the commands a script runs inside count there too, so they are left out).
 */
async function roundTrips(redis: Redis): Promise<number> {
  const stats = await redis.info('commandstats');
  let total = 0;
  for (const name of ['evalsha', 'eval', 'xread', 'smembers'])
    total += Number(new RegExp(`cmdstat_${name}:calls=(\\d+)`).exec(stats)?.[1] ?? 0);
  return total;
}

/** Measures the fleet; returns the table to print. */
export async function fleetTable(options: FleetBenchOptions): Promise<string> {
  const redis = await startRedis();
  const monitor = new Redis(redis.url);
  try {
    const step = (what: string): boolean => process.stderr.write(`fleet: ${what}\n`);
    step('1 instance');
    let servers = await instances(1, undefined, options.modelPath);
    const solo = await burst(new HttpRpc(servers[0]!.url), options);
    const plainMs = await overhead(new HttpRpc(servers[0]!.url), options);
    await stopAll(servers);

    step('1 instance on the shared queue');
    servers = await instances(1, redis, options.modelPath);
    const rpc = new HttpRpc(servers[0]!.url);
    const before = await roundTrips(monitor);
    const t0 = performance.now();
    const sharedMs = await overhead(rpc, options);
    const busyCommands = (await roundTrips(monitor)) - before;
    const elapsed = performance.now() - t0;
    const idleStart = await roundTrips(monitor);
    await new Promise((resolve) => setTimeout(resolve, elapsed));
    const idleCommands = (await roundTrips(monitor)) - idleStart;
    const perRun = (busyCommands - idleCommands) / (options.runs + 1);
    await stopAll(servers);

    step('3 instances on the shared queue');
    servers = await instances(3, redis, options.modelPath);
    const fleet = await burst(new HttpRpc(servers[0]!.url), options);
    await stopAll(servers);

    const rows = [
      ['1 instance, no Redis', fixed(solo.tokensPerSecond, 0), '1.00', fixed(at(solo.waits, 50), 0), fixed(at(solo.waits, 99), 0)],
      [
        '3 instances, one Redis queue',
        fixed(fleet.tokensPerSecond, 0),
        fixed(fleet.tokensPerSecond / solo.tokensPerSecond, 2),
        fixed(at(fleet.waits, 50), 0),
        fixed(at(fleet.waits, 99), 0),
      ],
    ];
    const head = ['fleet (--parallel 1 --threads 1 each)', 'aggregate t/s', 'ratio', 'queue wait p50 ms', 'queue wait p99 ms'];
    const table = [head, head.map(() => '---'), ...rows].map((cells) => `| ${cells.join(' | ')} |`).join('\n');
    const cost =
      `shared queue cost per run (${options.tokens} tokens, one instance, runs one after another, median time outside the engine): ` +
      `${fixed(sharedMs.outside - plainMs.outside, 2)} ms (${fixed(sharedMs.outside, 2)} vs ${fixed(plainMs.outside, 2)} ms); ` +
      `median whole run ${fixed(sharedMs.wall, 1)} vs ${fixed(plainMs.wall, 1)} ms; ` +
      `${fixed(perRun, 1)} Redis round trips per run (scripts and reads)`;
    return `\nFleet: a burst of ${options.runs} rkllm_run of ${options.tokens} tokens (${basename(options.modelPath)}), all sent to one instance\n${table}\n${cost}\n`;
  } finally {
    monitor.disconnect();
    await redis.dispose();
  }
}
