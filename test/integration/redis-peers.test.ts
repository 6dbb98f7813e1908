// Several real servers sharing one real Redis (a redis-server of the test's own): any instance
// answers poll, long poll, attach and abort for a stream generated on another; the buffer limit
// holds across them; an owner killed mid-stream and a Redis restart mid-stream are both reported,
// never hung on. The instances run in this process, except the one killed with SIGKILL, which runs
// the CLI in a process of its own.
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { TINY_MODEL_PROMPTS } from '../../src/gguf/builtin.js';
import { connectLive, type LiveRpc } from '../helpers/live-rpc.js';
import { greedy } from '../helpers/prompts.js';
import { freePort, startRedis, type RedisProcess } from '../helpers/redis-server.js';
import { HttpRpc, type Chunk } from '../helpers/rpc.js';
import { runCli, startServer } from '../helpers/server-process.js';
import { merge } from '../../src/settings-sources.js';
import { startTestServer, type CapturedLog } from '../helpers/server.js';

const LEASE_MS = 1000;
/** Long enough to still be generating while a test acts (the tiny model makes ~2000 tokens/s here). */
const LONG = { prompt_input: TINY_MODEL_PROMPTS.long, max_new_tokens: 15_000, ...greedy };
const CONTEXT = 16_384;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

interface Instance {
  addresses: Record<string, string>;
  http: HttpRpc;
  /** In-process instances: their log, and `GET /health`. */
  log?: CapturedLog;
  health?: () => Promise<{ status: string; degraded?: boolean; reason?: string }>;
  /** Shuts down gracefully (streams cut short get their shutdown chunk). */
  stop(): Promise<void>;
}

/** Polls (after_seq mode, long polls) until the final chunk; retries polls Redis could not answer, a bounded number of times. */
async function drain(rpc: HttpRpc, streamId: string, afterSeq = -1): Promise<{ text: string; last: Chunk; unavailable: number }> {
  const parts: string[] = [];
  let unavailable = 0;
  for (let polls = 0; polls < 20_000; polls++) {
    const res = await rpc.call<{ chunk: Chunk | null }>('poll', { stream_id: streamId, after_seq: afterSeq, wait_ms: 5000 });
    // -32031: Redis lost its data, and the stream's final chunk is not written yet.
    if ((res.error?.code === -32013 || res.error?.code === -32031) && unavailable < 200) {
      unavailable++;
      await sleep(50);
      continue;
    }
    if (res.error) throw new Error(`poll: ${res.error.code} ${res.error.message}`);
    const chunk = res.result!.chunk;
    if (!chunk) continue;
    parts.push(chunk.delta);
    afterSeq = chunk.seq;
    if (chunk.end) return { text: parts.join(''), last: chunk, unavailable };
  }
  throw new Error('the stream did not end');
}

/** Resolves once some connection to `url` is blocked in XREAD: a long poll is waiting in Redis. */
async function untilBlockedRead(url: string): Promise<void> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    for (let checks = 0; checks < 1000; checks++) {
      const clients = (await redis.client('LIST')) as string;
      if (clients.split('\n').some((line) => / flags=b /.test(line) && / cmd=xread /.test(line))) return;
      await sleep(10);
    }
    throw new Error('no long poll ever blocked in Redis');
  } finally {
    redis.disconnect();
  }
}

async function waitUntilIdle(rpc: HttpRpc, withinMs: number): Promise<void> {
  const deadline = Date.now() + withinMs;
  while (Date.now() < deadline) {
    const { running, queued } = await rpc.result('rkllm_is_running', {});
    if (!running && queued === 0) return;
    await sleep(20);
  }
  throw new Error(`still running after ${withinMs} ms`);
}

describe('Several instances sharing streams through Redis', function () {
  this.timeout(120_000);
  let redis: RedisProcess;
  let instances: Instance[] = [];

  /** Starts an instance in this process on Redis database `db`. */
  async function start(options: { db?: number; parallel?: number; settings?: Record<string, unknown> } = {}): Promise<Instance> {
    const shared = {
      streams: { store: 'redis' },
      redis: { url: `${redis.url}/${options.db ?? 0}`, lease_ms: LEASE_MS },
      engine: { max_context_len: CONTEXT, ...(options.parallel ? { parallel: options.parallel } : {}) },
      udp: { enabled: false },
      ws: { enabled: false },
    };
    const server = await startTestServer({ settings: merge(shared, options.settings ?? {}) });
    const health = async (): Promise<{ status: string; degraded?: boolean; reason?: string }> =>
      (await fetch(`${server.url}health`)).json() as Promise<{ status: string; degraded?: boolean; reason?: string }>;
    const made = { addresses: server.addresses, http: server.http, stop: () => server.close(), log: server.log, health };
    instances.push(made);
    return made;
  }

  before(async () => {
    redis = await startRedis();
  });

  after(async () => {
    await Promise.all(instances.map((i) => i.stop()));
    instances = [];
    await redis?.dispose();
  });

  describe('three instances', () => {
    let a: Instance;
    let b: Instance;
    let c: Instance;
    const live: LiveRpc[] = [];

    before(async () => {
      [a, b, c] = [await start({ parallel: 1 }), await start({ parallel: 1 }), await start({ parallel: 1 })];
    });

    afterEach(async () => {
      await Promise.all(live.splice(0).map((client) => client.close()));
      await Promise.all([a, b, c].map((i) => i.http.result('rkllm_abort', {})));
    });

    it('a stream started on one instance and polled on another yields exactly rkllm_run text', async () => {
      const params = { prompt_input: 'The Queen said', max_new_tokens: 300, ...greedy };
      const expected = (await a.http.result('rkllm_run', params)).text;
      const { stream_id } = await a.http.start(params, 'cross-poll');
      const polled = await drain(b.http, stream_id);
      expect(polled.text).to.equal(expected);
      expect(polled.last).to.deep.include({ end: true, finish_reason: 'length' });
      // Acknowledging the final chunk, here on C, releases the buffer for everyone.
      expect(await c.http.result('poll', { stream_id, after_seq: polled.last.seq })).to.deep.equal({ chunk: null });
      const gone = await b.http.call('poll', { stream_id });
      expect(gone.error).to.deep.include({ code: -32001 });
      expect(gone.error!.message).to.match(/released/);
    });

    it('finds a stream by its request id on any instance', async () => {
      const { stream_id } = await a.http.start({ prompt_input: 'The fox', max_new_tokens: 20, ...greedy }, 'by-request-id');
      const res = await c.http.call<{ chunk: Chunk | null }>('poll', { request_id: 'by-request-id', after_seq: -1, wait_ms: 5000 });
      expect(res.error).to.equal(undefined);
      expect(res.result!.chunk).to.include({ stream_id });
      await drain(c.http, stream_id, res.result!.chunk!.seq);
    });

    it('a long poll on one instance returns as soon as another instance generates', async () => {
      // A runs one generation at a time: the second stream waits in its queue until the first is aborted.
      const blocker = await a.http.start(LONG, 'blocker');
      const queued = await a.http.start({ prompt_input: 'The King', max_new_tokens: 50, ...greedy }, 'queued');
      const started = Date.now();
      let answered = false;
      const waiting = b.http
        .result<{ chunk: Chunk | null }>('poll', { stream_id: queued.stream_id, after_seq: -1, wait_ms: 20_000 })
        .finally(() => (answered = true));
      await untilBlockedRead(redis.url);
      expect(answered, 'the long poll waits while nothing is generated').to.equal(false);
      expect((await c.http.result('rkllm_abort', { stream_id: blocker.stream_id })).aborted).to.equal(1);
      const { chunk } = await waiting;
      expect(chunk).to.include({ stream_id: queued.stream_id });
      expect(chunk!.seq).to.be.a('number').at.least(0);
      expect(Date.now() - started).to.be.below(20_000);
      await drain(b.http, queued.stream_id, chunk!.seq);
      expect((await drain(c.http, blocker.stream_id)).last.finish_reason).to.equal('abort');
    });

    it('rkllm_abort sent to another instance, by request id, stops the generation where it runs', async () => {
      const { stream_id } = await a.http.start(LONG, 'abort-me');
      await b.http.firstChunk(stream_id);
      expect(await b.http.result('rkllm_abort', { request_id: 'abort-me' })).to.deep.equal({ aborted: 1, stream_id });
      const { last } = await drain(c.http, stream_id);
      expect(last.finish_reason).to.equal('abort');
      expect(last.perf!.generate_tokens).to.be.below(LONG.max_new_tokens);
      await waitUntilIdle(a.http, 5_000);
    });

    it('a detached stream re-attaches on another instance with no token lost or repeated', async () => {
      const params = { prompt_input: 'Once upon a time', max_new_tokens: 2000, ...greedy };
      const expected = (await a.http.result('rkllm_run', params)).text;
      const first = await connectLive('tcp', a.addresses);
      live.push(first);
      const id = first.send('rkllm_run_async', { ...params, detach: true });
      const head = await first.next(id);
      const headChunk = head.result.chunk as Chunk & { stream_id: string };
      await first.close();
      const second = await connectLive('tcp', b.addresses);
      live.push(second);
      const rest = await second.collect(second.send('rkllm_stream_attach', { stream_id: headChunk.stream_id, after_seq: headChunk.seq }));
      expect(rest.chunks[0]!.seq).to.equal(headChunk.seq + 1);
      expect(headChunk.delta + rest.text).to.equal(expected);
      expect(rest.last).to.deep.include({ end: true, finish_reason: 'length' });
    });
  });

  it('holds the buffer limit across instances', async () => {
    const settings = { streams: { max_buffers: 2 } };
    const [a, b] = [await start({ db: 1, parallel: 2, settings }), await start({ db: 1, settings })];
    const one = await a.http.start(LONG);
    const two = await b.http.start(LONG);
    const refused = await b.http.call('rkllm_run_async', LONG);
    expect(refused.error).to.deep.include({ code: -32002 });
    expect(refused.error!.message).to.match(/limit of 2 buffers/);
    expect((await a.http.result('http_buffer_manager_status', {})).active_buffers).to.equal(2);
    for (const s of [one, two]) await a.http.result('rkllm_abort', { stream_id: s.stream_id });
    for (const s of [one, two]) expect((await drain(b.http, s.stream_id)).last.finish_reason).to.equal('abort');
  });

  it('ends with an error chunk, within a bounded time, a stream whose instance is killed mid-stream', async () => {
    // The owner is killed: it needs a process of its own.
    const child = await startServer({
      args: ['--redis', `${redis.url}/2`, '--context', String(CONTEXT), '--no-udp', '--no-ws'],
      settings: { redis: { lease_ms: LEASE_MS } },
    });
    instances.push({ addresses: child.addresses, http: new HttpRpc(child.url), stop: async () => void (await child.stop()) });
    const owner = { http: new HttpRpc(child.url) };
    const other = await start({ db: 2 });
    const { stream_id } = await owner.http.start(LONG);
    const head = await other.http.firstChunk(stream_id);
    child.proc.kill('SIGKILL');
    const killedAt = Date.now();
    const { last } = await drain(other.http, stream_id, head.seq);
    expect(Date.now() - killedAt).to.be.below(LEASE_MS * 10);
    expect(last).to.deep.include({ end: true, finish_reason: 'error' });
    expect(last.error).to.deep.include({ code: -32014 });
    expect(last.error!.message).to.match(/stopped renewing its lease/);
  });

  it('a stream whose instance shuts down cleanly mid-stream ends with its shutdown chunk, stored before the instance exits', async () => {
    const [owner, other] = [await start({ db: 4 }), await start({ db: 4 })];
    const { stream_id } = await owner.http.start(LONG);
    const head = await other.http.firstChunk(stream_id);
    await owner.stop();
    const { last } = await drain(other.http, stream_id, head.seq);
    expect(last, JSON.stringify(last)).to.deep.include({ end: true, finish_reason: 'shutdown' });
    expect(last.error?.code).to.not.equal(-32014);
  });

  it('continues a stream across a Redis restart with nothing lost, polls meanwhile told Redis is away', async () => {
    const [owner, other] = [await start({ db: 3 }), await start({ db: 3 })];
    const params = { ...LONG, max_new_tokens: 5000 };
    const expected = (await owner.http.result('rkllm_run', params)).text;
    const { stream_id } = await owner.http.start(params);
    const head = await other.http.firstChunk(stream_id);
    // With the fleet's shared queue, either instance may be the one generating it.
    const generating = await Promise.all([owner, other].map(async (i) => (await i.http.result('rkllm_is_running', {})).running));
    expect(generating).to.include(true);
    await redis.stop();
    const during = await other.http.call('poll', { stream_id, after_seq: head.seq });
    expect(during.error).to.deep.include({ code: -32013 });
    expect(during.error!.message).to.match(/Redis .* is unreachable/);
    await redis.start();
    const rest = await drain(other.http, stream_id, head.seq);
    expect(head.delta + rest.text).to.equal(expected);
    expect(rest.last).to.deep.include({ end: true, finish_reason: 'length' });
    // Nothing crashed: both instances still answer.
    for (const i of [owner, other]) expect((await i.http.result('rkllm_is_running', {})).running).to.equal(false);
  });

  it('refuses to start, with a clear error and a non-zero exit, when Redis cannot be reached', async () => {
    const url = `redis://127.0.0.1:${await freePort()}`;
    const res = await runCli(['--redis', url, '--http', '0', '--tcp', '0', '--udp', '0', '--ws', '0']);
    expect(res.code).to.not.equal(0);
    expect(res.stderr).to.match(/Cannot connect to Redis at redis:\/\/127\.0\.0\.1:\d+: .*ECONNREFUSED/);
  });

  describe('Redis faults', () => {
    const SHORT = { prompt_input: 'The Queen said', max_new_tokens: 40, ...greedy };
    let admin: Redis;
    afterEach(() => admin?.disconnect());
    /** A client of database `db`, for the test to break it. */
    const adminOf = (db: number): Redis => (admin = new Redis(`${redis.url}/${db}`, { maxRetriesPerRequest: 1 }));
    /** Waits until `check` holds, at most `withinMs`. */
    async function until(what: string, check: () => Promise<boolean>, withinMs = 10_000): Promise<void> {
      for (const deadline = Date.now() + withinMs; Date.now() < deadline; await sleep(50)) if (await check()) return;
      throw new Error(`not within ${withinMs} ms: ${what}`);
    }

    it('after Redis loses its data (FLUSHDB), a live stream ends with a clear error, never with the text of a run started after', async () => {
      const [a, b] = [await start({ db: 7, parallel: 1 }), await start({ db: 7, parallel: 1 })];
      const solo = (await b.http.result('rkllm_run', SHORT)).text as string;
      const tcp = await connectLive('tcp', a.addresses);
      try {
        const id = tcp.send('rkllm_run_async', LONG);
        await tcp.untilPending(id, 1);
        await adminOf(7).flushdb();
        // Runs started after the loss: before ids had a random part, one took the live stream's id.
        const after = await Promise.all([b.http.result('rkllm_run', SHORT), a.http.result('rkllm_run', SHORT)]);
        for (const run of after) expect(run.text).to.equal(solo);
        const { last, text } = await tcp.collect(id, 20_000);
        expect(text).to.not.include(solo);
        expect(last).to.deep.include({ end: true, finish_reason: 'error' });
        expect(last.error, JSON.stringify(last)).to.deep.include({ code: -32031 });
        expect(last.error!.message).to.match(/lost its data/);
        await a.log!.line('Redis lost its data', 5_000);
      } finally {
        await tcp.close();
      }
    });

    it('a polled stream whose buffer Redis lost ends with a final chunk naming the lost seqs', async () => {
      const [a, b] = [await start({ db: 8, parallel: 1, settings: { fleet: { shared_queue: false } } }), await start({ db: 8 })];
      const { stream_id } = await a.http.start(LONG);
      const head = await b.http.firstChunk(stream_id);
      await adminOf(8).flushdb();
      const { last } = await drain(b.http, stream_id, head.seq);
      expect(last).to.deep.include({ end: true, finish_reason: 'error' });
      expect(last.error, JSON.stringify(last)).to.deep.include({ code: -32031 });
      const data = (last.error as { data?: { last_lost_seq?: number } }).data;
      expect(data).to.include({ stream_id, first_lost_seq: 0 });
      expect(data!.last_lost_seq).to.be.a('number').at.least(head.seq);
    });

    it('while Redis accepts connections but answers nothing, commands time out, runs are served and /health says degraded', async () => {
      const a = await start({ db: 9 });
      const solo = (await a.http.result('rkllm_run', SHORT)).text as string;
      redis.signal('SIGSTOP');
      try {
        await until('health says degraded', async () => (await a.health!()).degraded === true);
        expect((await a.health!()).reason).to.match(/not answering|unreachable/);
        const started = Date.now();
        expect((await a.http.result('rkllm_run', SHORT)).text).to.equal(solo);
        expect((await a.http.result('engine_status', {})).fleet).to.include({ mode: 'local' });
        expect((await a.http.call('poll', { stream_id: 'nope' })).error).to.deep.include({ code: -32013 });
        expect(Date.now() - started).to.be.below(5_000);
      } finally {
        redis.signal('SIGCONT');
      }
      await until('health is plain ready again', async () => (await a.health!()).degraded === undefined);
    });

    it('a long poll blocked in Redis when Redis stalls answers -32013 within its wait plus the command timeout', async () => {
      const a = await start({ db: 13, parallel: 1, settings: { redis: { command_timeout_ms: 500 } } });
      const blocker = await a.http.start(LONG);
      const queued = await a.http.start(SHORT);
      const started = Date.now();
      const waiting = a.http.call('poll', { stream_id: queued.stream_id, after_seq: -1, wait_ms: 2_000 });
      await untilBlockedRead(redis.url);
      redis.signal('SIGSTOP');
      try {
        const res = await waiting;
        expect(res.error, JSON.stringify(res)).to.deep.include({ code: -32013 });
        expect(Date.now() - started).to.be.below(2_000 + 500 + 4_000);
      } finally {
        redis.signal('SIGCONT');
      }
      await a.http.result('rkllm_abort', { stream_id: blocker.stream_id });
    });

    it('a server whose Redis accepts the connection but never answers fails to start, saying so', async () => {
      redis.signal('SIGSTOP');
      try {
        const started = Date.now();
        const failed = await start({ db: 9 }).then(
          () => new Error('started'),
          (err: Error) => err,
        );
        expect(failed.message).to.match(/did not answer|timed out/i);
        expect(Date.now() - started).to.be.below(15_000);
      } finally {
        redis.signal('SIGCONT');
      }
    });

    it('a full Redis (maxmemory) refuses new runs with their own code, says so in /health, and ends no live stream', async () => {
      const [a, b] = [await start({ db: 10, parallel: 1 }), await start({ db: 10, parallel: 1 })];
      const { stream_id } = await a.http.start({ ...LONG, max_new_tokens: 16_000 });
      const head = await b.http.firstChunk(stream_id);
      await adminOf(10).config('SET', 'maxmemory', '1');
      try {
        const refused = await b.http.call('rkllm_run_async', SHORT);
        expect(refused.error, JSON.stringify(refused)).to.deep.include({ code: -32030 });
        expect(refused.error!.message).to.match(/full \(out of memory/);
        // A poll is answered (it frees memory), or refused the same way.
        const polled = await b.http.call('poll', { stream_id, after_seq: head.seq });
        if (polled.error) expect(polled.error.code).to.equal(-32030);
        await until('health says full', async () => /full/.test((await b.health!()).reason ?? ''));
        expect(await b.health!()).to.include({ status: 'ready', degraded: true });
        await sleep(LEASE_MS * 3);
      } finally {
        await admin.config('SET', 'maxmemory', '0');
      }
      await a.http.result('rkllm_abort', { stream_id });
      const { last } = await drain(b.http, stream_id, head.seq);
      expect(last, JSON.stringify(last)).to.deep.include({ end: true, finish_reason: 'abort' });
    });

    it('logs a change of Redis state once, not every round, during an outage', async () => {
      const a = await start({ db: 11 });
      const count = (text: string): number => a.log!.lines.filter((l) => String(l.msg).includes(text)).length;
      await redis.stop();
      try {
        await until('logged unreachable', async () => count('unreachable') > 0);
        await sleep(2_000);
        expect(count('answers again'), a.log!.text()).to.equal(0);
      } finally {
        await redis.start();
      }
      await until('logged back', async () => count('answers again') > 0);
      await sleep(1_000);
      expect(count('answers again')).to.be.at.most(2);
    });

    it('a stall shorter than retry_ms loses nothing and ends no stream', async () => {
      const settings = { redis: { retry_ms: 8_000 } };
      const [a, b] = [await start({ db: 12, parallel: 1, settings }), await start({ db: 12, parallel: 1, settings })];
      const params = { ...LONG, max_new_tokens: 3000 };
      const expected = (await a.http.result('rkllm_run', params)).text as string;
      const streams = await Promise.all([a.http.start(params), b.http.start(params)]);
      const heads = await Promise.all(streams.map((s) => b.http.firstChunk(s.stream_id)));
      redis.signal('SIGSTOP');
      await sleep(LEASE_MS * 3);
      redis.signal('SIGCONT');
      for (const [i, s] of streams.entries()) {
        const rest = await drain(a.http, s.stream_id, heads[i]!.seq);
        expect(rest.last, JSON.stringify(rest.last)).to.deep.include({ end: true, finish_reason: 'length' });
        expect(heads[i]!.delta + rest.text).to.equal(expected);
      }
    });
  });
});
