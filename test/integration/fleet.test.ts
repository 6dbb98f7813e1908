// A fleet: several real server processes (the CLI, `--parallel 1 --threads 1`) on one real Redis
// act as one server with one run queue. A run sent to a busy instance runs at once on an idle one
// and gives the solo text; a burst sent to one instance fills every slot; instances with another
// model take only the runs they can serve; an executor killed with SIGKILL has its run retried
// once (no text yet) or ended with an error chunk (text produced); per-client limits hold across
// the fleet; with Redis gone each instance serves its own queue and /health says so.
import { expect } from 'chai';
import { statSync } from 'node:fs';
import { Redis } from 'ioredis';
import { ensureBuiltinModel, TINY_MODEL_PROMPTS } from '../../src/model/builtin.js';
import { patchedCopy } from '../helpers/gguf-patch.js';
import { greedy } from '../helpers/prompts.js';
import { startRedis, type RedisProcess } from '../helpers/redis-server.js';
import { HttpRpc, type Chunk } from '../helpers/rpc.js';
import { scratchDir, startServer, type ServerProcess } from '../helpers/server-process.js';

const LEASE_MS = 1000;
const CONTEXT = 16_384;
/** Long enough to still be generating while a test acts. */
const LONG = { prompt_input: TINY_MODEL_PROMPTS.long, max_new_tokens: 15_000, ...greedy };
const SHORT = { prompt_input: 'The Queen said', max_new_tokens: 200, ...greedy };

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

interface Instance {
  proc: ServerProcess;
  http: HttpRpc;
  url: string;
}

/** Waits until `check` holds, polling every 20 ms, at most `withinMs`. */
async function until(what: string, check: () => Promise<boolean>, withinMs = 10_000): Promise<void> {
  const deadline = Date.now() + withinMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await sleep(20);
  }
  throw new Error(`not within ${withinMs} ms: ${what}`);
}

async function drain(rpc: HttpRpc, streamId: string): Promise<{ text: string; last: Chunk }> {
  const parts: string[] = [];
  let afterSeq = -1;
  for (let polls = 0; polls < 20_000; polls++) {
    const res = await rpc.call<{ chunk: Chunk | null }>('poll', { stream_id: streamId, after_seq: afterSeq, wait_ms: 5000 });
    if (res.error) throw new Error(`poll: ${res.error.code} ${res.error.message}`);
    const chunk = res.result!.chunk;
    if (!chunk) continue;
    parts.push(chunk.delta);
    afterSeq = chunk.seq;
    if (chunk.end) return { text: parts.join(''), last: chunk };
  }
  throw new Error('the stream did not end');
}

async function firstChunk(rpc: HttpRpc, streamId: string): Promise<Chunk> {
  for (let polls = 0; polls < 50; polls++) {
    const { chunk } = await rpc.result<{ chunk: Chunk | null }>('poll', { stream_id: streamId, after_seq: -1, wait_ms: 5000 });
    if (chunk) return chunk;
  }
  throw new Error('no chunk came');
}

const running = async (i: Instance): Promise<boolean> => (await i.http.result<{ running: boolean }>('rkllm_is_running', {})).running;

describe('A fleet: one run queue across instances on Redis', function () {
  this.timeout(180_000);
  let redis: RedisProcess;
  let monitor: Redis;
  const started: Instance[] = [];

  async function instance(db: number, options: { model?: string; settings?: Record<string, unknown> } = {}): Promise<Instance> {
    const args = ['--redis', `${redis.url}/${db}`, '--parallel', '1', '--threads', '1', '--context', String(CONTEXT), '--no-udp', '--no-ws'];
    if (options.model) args.push('--model', options.model);
    const settings = { redis: { lease_ms: LEASE_MS }, fleet: { check_interval_ms: 200 }, ...options.settings };
    const proc = await startServer({ args, settings });
    const made = { proc, http: new HttpRpc(proc.url), url: proc.url };
    started.push(made);
    return made;
  }

  before(async () => {
    redis = await startRedis();
    monitor = new Redis(redis.url, { maxRetriesPerRequest: 1 });
  });

  after(async () => {
    await Promise.all(started.map((i) => i.proc.stop()));
    monitor?.disconnect();
    await redis?.dispose();
  });

  describe('three instances of --parallel 1', () => {
    let a: Instance;
    let b: Instance;
    let c: Instance;

    before(async () => {
      [a, b, c] = await Promise.all([instance(0), instance(0), instance(0)]);
    });

    afterEach(async () => {
      for (const i of [a, b, c]) await i.http.result('rkllm_abort', {});
      for (const i of [a, b, c]) await until('idle', async () => !(await running(i)));
    });

    it('shows the fleet in engine_status: every instance, its model hash and free slots, and the queue', async () => {
      await until('three instances registered', async () => {
        const { fleet } = await a.http.result('engine_status', {});
        return fleet.instances.length === 3;
      });
      const { fleet } = await b.http.result('engine_status', {});
      expect(fleet).to.include({ mode: 'shared', queued: 0 });
      const hashes = new Set(fleet.instances.map((i: { models: Array<{ hash: string }> }) => i.models[0]!.hash));
      expect(hashes.size).to.equal(1);
      for (const i of fleet.instances) expect(i).to.include({ slots: 1, free_slots: 1, engine: 'llama.cpp' });
    });

    it('a greedy rkllm_run sent to the busy instance starts at once elsewhere and returns the solo text', async () => {
      const solo = (await a.http.result('rkllm_run', SHORT)).text;
      // keep_history pins a run to the instance holding the conversation: this one fills A's only slot.
      const blocker = await a.http.start({ ...LONG, keep_history: 1 });
      await firstChunk(a.http, blocker.stream_id);
      expect(await running(a)).to.equal(true);
      const result = await a.http.result('rkllm_run', SHORT);
      expect(result.text).to.equal(solo);
      expect(result.finish_reason).to.equal('length');
      // A's slot was busy all along: its long run has not ended.
      const { chunk } = await a.http.result('poll', { stream_id: blocker.stream_id, after_seq: -1, wait_ms: 0 });
      expect(chunk?.end ?? false).to.equal(false);
      expect((await a.http.result('rkllm_abort', { stream_id: blocker.stream_id })).aborted).to.equal(1);
      expect((await drain(a.http, blocker.stream_id)).last.finish_reason).to.equal('abort');
    });

    it('three long runs sent to one instance keep all three slots busy', async () => {
      const streams = [await a.http.start(LONG), await a.http.start(LONG), await a.http.start(LONG)];
      await until('every instance runs one', async () => (await Promise.all([a, b, c].map(running))).every(Boolean));
      const { fleet } = await a.http.result('engine_status', {});
      expect(fleet).to.include({ queued: 0, running: 3 });
      for (const s of streams) expect((await a.http.result('rkllm_abort', { stream_id: s.stream_id })).aborted).to.equal(1);
      for (const s of streams) expect((await drain(b.http, s.stream_id)).last.finish_reason).to.equal('abort');
    });

    it('a run waiting in the shared queue leaves it when aborted, without ever running', async () => {
      const long = [await a.http.start(LONG), await a.http.start(LONG), await a.http.start(LONG)];
      await until('every instance runs one', async () => (await Promise.all([a, b, c].map(running))).every(Boolean));
      const waiting = await c.http.start(SHORT);
      expect((await a.http.result('engine_status', {})).fleet.queued).to.equal(1);
      expect((await c.http.result('rkllm_abort', { stream_id: waiting.stream_id })).aborted).to.equal(1);
      const { text, last } = await drain(c.http, waiting.stream_id);
      expect(text).to.equal('');
      expect(last.finish_reason).to.equal('abort');
      expect((await a.http.result('engine_status', {})).fleet.queued).to.equal(0);
      for (const s of long) await a.http.result('rkllm_abort', { stream_id: s.stream_id });
    });
  });

  it('instances with different models only get the runs they can serve', async () => {
    const tiny = await ensureBuiltinModel('tiny');
    // Another model: the same file with its last weight changed, so its content hash differs.
    const other = patchedCopy(tiny, scratchDir(), 'other.gguf', statSync(tiny).size - 8, 0x3c003c003c003c00n);
    const [same, different] = await Promise.all([instance(1), instance(1, { model: other })]);
    const first = await same.http.start(LONG);
    await until('the first runs', async () => running(same));
    const second = await same.http.start(LONG);
    const { fleet } = await different.http.result('engine_status', {});
    expect(fleet.queued, 'the second waits for the only instance with its model').to.equal(1);
    expect(new Set(fleet.instances.map((i: { models: Array<{ hash: string }> }) => i.models[0]!.hash)).size).to.equal(2);
    expect(await running(different)).to.equal(false);
    // A run sent to the other model's instance runs there.
    const own = await different.http.start(SHORT);
    expect((await drain(different.http, own.stream_id)).last.finish_reason).to.equal('length');
    expect(await running(same)).to.equal(true);
    for (const s of [first, second]) await same.http.result('rkllm_abort', { stream_id: s.stream_id });
    for (const s of [first, second]) expect((await drain(same.http, s.stream_id)).last.finish_reason).to.equal('abort');
  });
});
