/**
 * The Redis store's cost: tokens/s delivered to long-polling HTTP clients through the Redis
 * Streams buffer store, divided by tokens/s through the in-memory store, at 1 and 8 streams, with
 * the delay from a token being generated to the client holding it. Runs a redis-server of its own
 * on a free loopback port.
 */
import { startRedis } from '../test/helpers/redis-server.js';

/** What one delivery run measured: tokens/s received, and the delays (ms), sorted. */
export interface Delivered {
  tokensPerSecond: number;
  delays: number[];
}

/** Runs one delivery measurement with `streams` concurrent streams on a server built with these settings overrides. */
export type Deliver = (streams: number, overrides: object) => Promise<Delivered>;

export interface RedisScenario {
  label: string;
  deliver: Deliver;
}

const HEADER = ['model ', 'streams', ' mem t/s', 'redis t/s', ' ratio', 'mem p50', 'mem p99', 'rds p50', 'rds p99'].join(' ');

function at(sorted: number[], p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function cell(n: number, width: number, digits = 1): string {
  return (Number.isFinite(n) ? n.toFixed(digits) : '-').padStart(width);
}

/** Measures every scenario through both stores; returns the table to print. */
export async function redisTable(scenarios: RedisScenario[]): Promise<string> {
  const redis = await startRedis();
  const rows: string[] = [];
  try {
    for (const { label, deliver } of scenarios) {
      for (const streams of [1, 8]) {
        const memory = await deliver(streams, {});
        const shared = await deliver(streams, { streams: { store: 'redis' }, redis: { url: redis.url } });
        rows.push(
          [
            label.padEnd(6),
            String(streams).padStart(7),
            cell(memory.tokensPerSecond, 8),
            cell(shared.tokensPerSecond, 9),
            cell(shared.tokensPerSecond / memory.tokensPerSecond, 6, 2),
            cell(at(memory.delays, 50), 7, 2),
            cell(at(memory.delays, 99), 7, 2),
            cell(at(shared.delays, 50), 7, 2),
            cell(at(shared.delays, 99), 7, 2),
          ].join(' '),
        );
        process.stderr.write(`done: redis vs memory, ${label}, ${streams} stream(s)\n`);
      }
    }
  } finally {
    await redis.dispose();
  }
  return `\nRedis store vs memory store, long-poll HTTP delivery (ratio: redis t/s / memory t/s; delays in ms: token produced -> client holds it)\n${HEADER}\n${rows.join('\n')}\n`;
}
