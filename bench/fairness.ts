/**
 * `node dist/bench/fairness.js [--tokens N] [--queued N]`: the fairness delay of issue 14. Key A
 * fills every slot and queues `queued` (default 64) streams of `tokens` (default 200) tokens; key
 * B then runs 5 tokens (`rkllm_run`). Prints B's time alone and behind A's queue. A real server in
 * this process (built-in tiny model, default slots), clients over HTTP on loopback.
 */
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { TINY_MODEL_PROMPTS } from '../src/gguf/builtin.js';
import { startServer } from '../src/server.js';
import { resolveSettings } from '../src/settings-sources.js';
import { HttpRpc } from '../test/helpers/rpc.js';

const KEY_A = 'alpha-key-0123456789abcdef';
const KEY_B = 'bravo-key-0123456789abcdef';
const bearer = (key: string): Record<string, string> => ({ authorization: `Bearer ${key}` });

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await fn();
  return (performance.now() - start) / 1000;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { tokens: { type: 'string' }, queued: { type: 'string' } } });
  const tokens = Number(values.tokens ?? 200);
  const queued = Number(values.queued ?? 64);
  const settings = resolveSettings([
    {
      source: 'bench',
      values: {
        http: { port: 0 },
        tcp: { enabled: false },
        udp: { enabled: false },
        ws: { enabled: false },
        engine: { queue_limit: queued + 16, queue_limit_per_client: queued },
        limits: { max_streams: queued + 64 },
        auth: { api_keys: [KEY_A, KEY_B] },
        shutdown: { drain_timeout_s: 0, final_poll_timeout_s: 0 },
      },
    },
  ]);
  const server = await startServer(settings, pino({ level: 'warn' }));
  try {
    const url = `http://${server.addresses.http}/`;
    const a = new HttpRpc(url, bearer(KEY_A));
    const b = new HttpRpc(url, bearer(KEY_B));
    const short = { prompt_input: 'The fox', max_new_tokens: 5 };
    const alone = await timed(() => b.result('rkllm_run', short));
    const slots = settings.engine.parallel;
    for (let i = 0; i < slots + queued; i++) await a.start({ prompt_input: TINY_MODEL_PROMPTS.long, max_new_tokens: tokens });
    const behind = await timed(() => b.result('rkllm_run', short));
    process.stdout.write(
      `5-token run of key B: alone ${alone.toFixed(3)} s; behind key A's ${slots} running + ${queued} queued streams of ${tokens} tokens: ${behind.toFixed(3)} s\n`,
    );
  } finally {
    await server.close();
  }
}

await main();
