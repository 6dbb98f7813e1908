// A fleet: several real server processes (the CLI, `--parallel 1 --threads 1`) on one real Redis
// act as one server with one run queue. A run sent to a busy instance runs at once on an idle one
// and gives the solo text; a burst sent to one instance fills every slot; instances with another
// model take only the runs they can serve; an executor killed with SIGKILL has its run retried
// once (no text yet) or ended with an error chunk (text produced); per-client limits hold across
// the fleet; with Redis gone each instance serves its own queue and /health says so.
import { expect } from 'chai';
import { statSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { runFromJob, type RunNeeds } from '../../src/streams/fleet/needs.js';
import { FleetQueue } from '../../src/streams/fleet/queue.js';
import { BlockingReads } from '../../src/streams/redis/blocking-reads.js';
import { RedisLink } from '../../src/streams/redis/link.js';
import { ensureBuiltinModel, TINY_MODEL_PROMPTS } from '../../src/gguf/builtin.js';
import { writeLogitBoostLora } from '../helpers/lora-adapter.js';
import { patchedCopy } from '../helpers/gguf-patch.js';
import { greedy } from '../helpers/prompts.js';
import { startRedis, type RedisProcess } from '../helpers/redis-server.js';
import { TcpRpc } from '../helpers/live-rpc.js';
import { HttpRpc } from '../helpers/rpc.js';
import { scratchDir, startServer, type ServerProcess } from '../helpers/server-process.js';
import { tinyModel } from '../helpers/tiny-model.js';

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

const running = async (i: { http: HttpRpc }): Promise<boolean> =>
  (await i.http.result<{ running: boolean }>('rkllm_is_running', {})).running;

describe('A fleet: one run queue across instances on Redis', function () {
  this.timeout(180_000);
  let redis: RedisProcess;
  const started: Instance[] = [];

  async function instance(
    db: number,
    options: { model?: string; parallel?: number; settings?: Record<string, unknown> } = {},
  ): Promise<Instance> {
    const args = [
      '--redis',
      `${redis.url}/${db}`,
      '--parallel',
      String(options.parallel ?? 1),
      '--threads',
      '1',
      '--context',
      String(CONTEXT),
      '--no-udp',
      '--no-ws',
    ];
    if (options.model) args.push('--model', options.model);
    const settings = { redis: { lease_ms: LEASE_MS }, fleet: { check_interval_ms: 200 }, ...options.settings };
    const proc = await startServer({ args, settings });
    const made = { proc, http: new HttpRpc(proc.url), url: proc.url };
    started.push(made);
    return made;
  }

  before(async () => {
    redis = await startRedis();
  });

  after(async () => {
    await Promise.all(started.map((i) => i.proc.stop()));
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
      // An instance registers, then publishes its free slots: on a loaded machine the view may show
      // a new instance with none for a moment.
      await until('three instances registered, each with its slot free', async () => {
        const { fleet } = await a.http.result('engine_status', {});
        return fleet.instances.length === 3 && fleet.instances.every((i: { free_slots: number }) => i.free_slots === 1);
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
      await a.http.firstChunk(blocker.stream_id);
      expect(await running(a)).to.equal(true);
      const result = await a.http.result('rkllm_run', SHORT);
      expect(result.text).to.equal(solo);
      expect(result.finish_reason).to.equal('length');
      // A's slot was busy all along: its long run has not ended.
      const { chunk } = await a.http.result('poll', { stream_id: blocker.stream_id, after_seq: -1, wait_ms: 0 });
      expect(chunk?.end ?? false).to.equal(false);
      expect((await a.http.result('rkllm_abort', { stream_id: blocker.stream_id })).aborted).to.equal(1);
      expect((await a.http.drain(blocker.stream_id, { afterSeq: true, waitMs: 5000 })).last.finish_reason).to.equal('abort');
    });

    it('three long runs sent to one instance keep all three slots busy', async () => {
      const streams = [await a.http.start(LONG), await a.http.start(LONG), await a.http.start(LONG)];
      await until('every instance runs one', async () => (await Promise.all([a, b, c].map(running))).every(Boolean));
      const { fleet } = await a.http.result('engine_status', {});
      expect(fleet).to.include({ queued: 0, running: 3 });
      for (const s of streams) expect((await a.http.result('rkllm_abort', { stream_id: s.stream_id })).aborted).to.equal(1);
      for (const s of streams)
        expect((await b.http.drain(s.stream_id, { afterSeq: true, waitMs: 5000 })).last.finish_reason).to.equal('abort');
    });

    it('a run waiting in the shared queue leaves it when aborted, without ever running', async () => {
      const long = [await a.http.start(LONG), await a.http.start(LONG), await a.http.start(LONG)];
      await until('every instance runs one', async () => (await Promise.all([a, b, c].map(running))).every(Boolean));
      const waiting = await c.http.start(SHORT);
      expect((await a.http.result('engine_status', {})).fleet.queued).to.equal(1);
      expect((await c.http.result('rkllm_abort', { stream_id: waiting.stream_id })).aborted).to.equal(1);
      const { text, last } = await c.http.drain(waiting.stream_id, { afterSeq: true, waitMs: 5000 });
      expect(text).to.equal('');
      expect(last.finish_reason).to.equal('abort');
      expect((await a.http.result('engine_status', {})).fleet.queued).to.equal(0);
      for (const s of long) await a.http.result('rkllm_abort', { stream_id: s.stream_id });
    });
  });

  describe('a buffered run executed on another instance', () => {
    let r: Instance;
    let e: Instance;
    let db: Redis;
    let monitor: Socket;
    let tcp: TcpRpc;
    /** The XADD commands run in database 11, scripts' included, as MONITOR shows them: their key and entry id. */
    const writes: Array<{ key: string; id: string }> = [];

    before(async () => {
      [r, e] = await Promise.all([instance(11, { settings: { streams: { max_buffer_bytes: 64_000 } } }), instance(11)]);
      await until('both registered', async () => (await e.http.result('engine_status', {})).fleet.instances.length === 2);
      db = new Redis(`${redis.url}/11`, { maxRetriesPerRequest: 1 });
      // MONITOR on a plain socket: ioredis's monitor mode races its own ready check ("Command queue state error").
      monitor = await monitorXadds(redis.port, '11', (key, id) => writes.push({ key, id }));
    });

    after(() => {
      monitor?.destroy();
      db?.disconnect();
    });

    afterEach(async () => {
      await tcp?.close();
      await r.http.result('rkllm_abort', {});
      for (const i of [r, e]) await until('idle', async () => !(await running(i)));
    });

    /** The queue's run of `streamId`. */
    async function runOf(streamId: string): Promise<{ id: string; exec: string }> {
      for (const key of await db.keys('rkllm:fq:j:*')) {
        const [stream, exec] = await db.hmget(key, 'stream', 'exec');
        if (stream === streamId) return { id: key.slice('rkllm:fq:j:'.length), exec: exec! };
      }
      throw new Error(`no run of ${streamId}`);
    }

    /** Fills R's only slot with a run pinned to it and pushed live (no buffer, so no byte cap), so that the runs R receives next execute on E. */
    async function busyR(): Promise<string> {
      tcp = await TcpRpc.connect(r.proc.addresses.tcp!);
      const first = await tcp.next(tcp.send('rkllm_run_async', { ...LONG, keep_history: 1 }));
      return (first.result.chunk as { stream_id: string }).stream_id;
    }

    /** The ids of the entries written into the buffer of `streamId`. */
    const buffered = (streamId: string): string[] => writes.filter((w) => w.key === `rkllm:l:${streamId}`).map((w) => w.id);
    /** The entry ids of the chunks 0 to `last`, in order. */
    const seqs = (last: number): string[] => Array.from({ length: last + 1 }, (_, seq) => `${seq}-1`);

    /** One series of R's metrics. */
    async function metric(series: string): Promise<number> {
      const text = await (await fetch(`${r.url}metrics`)).text();
      const line = text.split('\n').find((l) => l.startsWith(`${series} `));
      return line === undefined ? 0 : Number(line.slice(series.length + 1));
    }

    it('writes each chunk to Redis once, into its buffer, with the text, numbering, final chunk and metrics the receiver gave', async () => {
      const solo = (await r.http.result('rkllm_run', SHORT)).text;
      const ttft = 'rkllm_time_to_first_token_seconds_count';
      const firsts = await metric(ttft);
      const pinned = await runOf(await busyR());
      await until("R's metrics saw the pinned run's first token", async () => (await metric(ttft)) === firsts + 1);
      const ended = 'rkllm_streams_ended_total{finish_reason="length"}';
      const before = { ended: await metric(ended), tokens: await metric('rkllm_tokens_generated_total') };
      writes.length = 0;
      const { stream_id } = await r.http.start(SHORT);
      // Nothing polls until the receiver's stream has ended (its metrics say so): no poll trims what it reads.
      await until('the run has ended on R', async () => (await metric(ended)) === before.ended + 1);
      const { text, last } = await r.http.drain(stream_id, { afterSeq: true, waitMs: 5000 });
      expect(text).to.equal(solo);
      expect(last).to.deep.include({ end: true, finish_reason: 'length' });
      const run = await runOf(stream_id);
      expect(run.exec).to.equal((await e.http.result('engine_status', {})).fleet.instance);
      // Each chunk, its text and its final one, is one XADD into the stream's buffer; the run's own entries are its start and end.
      expect(last.seq).to.be.above(2);
      expect(buffered(stream_id)).to.deep.equal(seqs(last.seq));
      expect(writes.filter((w) => w.key === `rkllm:fq:ch:${run.id}`)).to.have.lengthOf(2);
      expect(writes.filter((w) => w.key !== `rkllm:fq:ch:${pinned.id}`)).to.have.lengthOf(last.seq + 1 + 2);
      // The receiver's metrics saw its chunks (the pinned run adds tokens of its own).
      expect(await metric(ttft)).to.equal(firsts + 2);
      expect((await metric('rkllm_tokens_generated_total')) - before.tokens).to.be.at.least(last.seq);
    });

    it("keeps the receiver's buffer limit, status, abort from another instance, and a live attach", async () => {
      await busyR();
      // The byte cap of R's buffers, reached by a run E executes and nobody polls, ends it with R's error chunk.
      const capped = await r.http.start({ ...LONG, max_new_tokens: 15_000 });
      await until('E executes it', async () => running(e));
      await until('E stopped it', async () => !(await running(e)), 60_000);
      const full = await r.http.drain(capped.stream_id, { afterSeq: true, waitMs: 5000 });
      expect(full.last).to.deep.include({ end: true, finish_reason: 'error' });
      expect(full.last.error).to.deep.include({ code: -32007 });
      expect(full.last.error!.message).to.match(/cap of 64000 bytes/);
      expect(full.last.perf!.generate_tokens).to.be.below(15_000);
      expect(buffered(capped.stream_id)).to.deep.equal(seqs(full.last.seq));
      const { stream_id } = await r.http.start(LONG);
      const head = await r.http.firstChunk(stream_id);
      expect(await running(e)).to.equal(true);
      expect((await r.http.result('engine_status', {})).fleet.running).to.equal(2);
      // A live outlet attaching later gets the rest: from the buffer, then live.
      const live = await TcpRpc.connect(r.proc.addresses.tcp!);
      try {
        const id = live.send('rkllm_stream_attach', { stream_id, after_seq: head.seq });
        const next = await live.next(id);
        expect(next.result?.chunk?.seq).to.equal(head.seq + 1);
        expect((await e.http.result('rkllm_abort', { stream_id })).aborted).to.equal(1);
        let chunk = next.result.chunk;
        while (!chunk.end) chunk = (await live.next(id)).result.chunk;
        expect(chunk.finish_reason).to.equal('abort');
      } finally {
        await live.close();
      }
    });
  });

  it('a run with images travels in its job intact, and waits for an instance with a vision encoder', async () => {
    const i = await instance(12);
    const db = new Redis(`${redis.url}/12`, { maxRetriesPerRequest: 1 });
    const link = await RedisLink.open({ url: `${redis.url}/12`, keyPrefix: 'rkllm:' });
    const reads = new BlockingReads(link, 2);
    try {
      await until('registered', async () => (await i.http.result('engine_status', {})).fleet.instances[0]?.models.length === 1);
      const { fleet } = await i.http.result('engine_status', {});
      // A receiver of the same model: the queue an instance without images would admit the run into.
      const capability = { model: async () => fleet.instances[0].models[0].hash, canServe: async () => false, models: () => [] };
      const limits = { queueLimit: 64, clientQueueLimit: 0, maxStreams: 0 };
      const log = pino({ level: 'silent' });
      const queue = new FleetQueue({
        link,
        reads,
        capability,
        instanceId: 'receiver',
        limits,
        leaseMs: LEASE_MS,
        retryMs: 1000,
        log,
        onReachable: () => {},
      });
      const images = [new Uint8Array([0, 1, 2, 253, 254, 255]), Buffer.alloc(3000, 0x89).subarray(1000, 2500)];
      const input = { role: 'user', enable_thinking: false, input_type: 0 as const, prompt_input: '<image><image> Compare them.', images };
      const queued = await queue.enqueue({ streamId: 'st_images', params: { input, infer: { mode: 0, keep_history: 0 } }, client: 'c' });
      expect(queued).to.not.equal(undefined);
      // A run queued after it, by another client at the same turn, is served first: the instance (llama.cpp, no encoder) skips it.
      expect((await i.http.result('rkllm_run', SHORT)).finish_reason).to.equal('length');
      const [key] = await db.keys('rkllm:fq:j:*-*').then(async (keys) => {
        const streams = await Promise.all(keys.map(async (k) => db.hget(k, 'stream')));
        return keys.filter((_, n) => streams[n] === 'st_images');
      });
      expect(await db.hget(key!, 'state')).to.equal('queued');
      const needs = JSON.parse((await db.get(`rkllm:fq:need:${await db.hget(key!, 'cls')}`))!) as RunNeeds;
      expect(needs.features).to.include('images');
      // What an executor decodes from the job: the same bytes, sent as base64.
      const job = (await db.hget(key!, 'params'))!;
      expect(job).to.include(Buffer.from(images[1]!).toString('base64'));
      expect(runFromJob(job).input.images).to.deep.equal(images.map((image) => new Uint8Array(image)));
      queued!.cancel();
      await until('it left the queue', async () => (await i.http.result('engine_status', {})).fleet.queued === 0);
    } finally {
      await reads.close();
      link.close();
      db.disconnect();
    }
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
    expect((await different.http.drain(own.stream_id, { afterSeq: true, waitMs: 5000 })).last.finish_reason).to.equal('length');
    expect(await running(same)).to.equal(true);
    for (const s of [first, second]) await same.http.result('rkllm_abort', { stream_id: s.stream_id });
    for (const s of [first, second])
      expect((await same.http.drain(s.stream_id, { afterSeq: true, waitMs: 5000 })).last.finish_reason).to.equal('abort');
  });

  it('a run naming a LoRA adapter that only another instance has loaded runs there; one nobody has is refused as without a fleet', async () => {
    const tiny = await tinyModel();
    const dir = scratchDir();
    await writeLogitBoostLora(join(dir, 'bang.gguf'), tiny.path, { tokens: tiny.tokenIds('!'), boost: 10 });
    const settings = { folders: { lora_adapters: dir } };
    const [withoutIt, withIt, alone] = await Promise.all([
      instance(8, { settings }),
      instance(8, { settings }),
      startServer({ args: ['--parallel', '1', '--threads', '1', '--context', String(CONTEXT), '--no-udp', '--no-ws'], settings }),
    ]);
    const solo = new HttpRpc(alone.url);
    try {
      await withIt.http.result('rkllm_load_lora', { lora_adapter_path: 'bang.gguf', lora_adapter_name: 'bang' });
      const adapted = { ...SHORT, max_new_tokens: 20, lora_params: { lora_adapter_name: 'bang' } };
      const direct = await withIt.http.result('rkllm_run', adapted);
      expect(direct.text, 'the adapter changes the output').to.equal('!'.repeat(20));
      // Sent to the instance without the adapter: only the one with it can have produced this text.
      const sent = await withoutIt.http.start(adapted);
      const { text, last } = await withoutIt.http.drain(sent.stream_id, { afterSeq: true, waitMs: 5000 });
      expect(last.finish_reason).to.equal('length');
      expect(text).to.equal(direct.text);
      const { fleet } = await withoutIt.http.result('engine_status', {});
      const loras = fleet.instances.map((i: { models: Array<{ lora: string[] }> }) => i.models[0]!.lora.join(','));
      expect(loras.sort()).to.deep.equal(['', 'bang']);
      // An adapter nobody has: the same refusal as a server without a fleet gives.
      const unknown = { ...SHORT, lora_params: { lora_adapter_name: 'nope' } };
      const refused = await withoutIt.http.call('rkllm_run', unknown);
      const expected = await solo.call('rkllm_run', unknown);
      expect(expected.error?.code).to.equal(-32602);
      expect(refused.error).to.deep.equal(expected.error);
      expect((await withoutIt.http.result('engine_status', {})).fleet.queued).to.equal(0);
      expect((await withIt.http.call('rkllm_run', unknown)).error?.message).to.match(/names no loaded adapter \(loaded: "bang"\)/);
    } finally {
      await alone.stop();
    }
  });

  describe('an executor killed with SIGKILL while it holds a claimed run', () => {
    let x: Instance;
    let y: Instance;
    let db2: Redis;

    /** The claimed run of `streamId`, as the queue holds it. */
    async function claimOf(streamId: string): Promise<{ id: string; tokens: string } | undefined> {
      for (const id of await db2.zrange('rkllm:fq:claims', 0, -1)) {
        const [stream, tokens] = await db2.hmget(`rkllm:fq:j:${id}`, 'stream', 'tokens');
        if (stream === streamId) return { id, tokens: tokens! };
      }
      return undefined;
    }

    beforeEach(async () => {
      db2 = new Redis(`${redis.url}/2`, { maxRetriesPerRequest: 1 });
      [x, y] = await Promise.all([instance(2), instance(2)]);
      await until('both registered', async () => (await y.http.result('engine_status', {})).fleet.instances.length === 2);
    });

    afterEach(async () => {
      db2.disconnect();
      await x.proc.stop();
      await y.proc.stop();
      await db2.flushdb().catch(() => {});
    });

    /** Fills Y's only slot with a run pinned to it, so that a run sent to Y is claimed by X. */
    async function busyY(): Promise<{ stream_id: string }> {
      const pinned = await y.http.start({ ...LONG, keep_history: 1 });
      await y.http.firstChunk(pinned.stream_id);
      return pinned;
    }

    it('a run that had produced no text is retried once elsewhere and gives the solo text', async () => {
      // A long prompt: its prefill (about 1 s here) is long enough that the kill lands before the
      // first token, as long as X has never seen it. So the solo run is pinned to Y (keep_history
      // keeps a run on the instance that holds the conversation): had X run it, X would reuse the
      // prompt's KV cache and answer within 10 ms of its claim (measured), before the kill.
      const params = { prompt_input: Array(1200).fill(TINY_MODEL_PROMPTS.long).join(' '), max_new_tokens: 40, ...greedy };
      const solo = (await y.http.result('rkllm_run', { ...params, keep_history: 1 })).text;
      const pinned = await busyY();
      const { stream_id } = await y.http.start(params);
      let claim: { id: string; tokens: string } | undefined;
      await until('X claims it', async () => (claim = await claimOf(stream_id)) !== undefined);
      x.proc.proc.kill('SIGKILL');
      await x.proc.exited;
      const [tokens] = await db2.hmget(`rkllm:fq:j:${claim!.id}`, 'tokens');
      expect(tokens, 'the kill landed before the first token').to.equal('0');
      await y.http.result('rkllm_abort', { stream_id: pinned.stream_id });
      const killedAt = Date.now();
      const { text, last } = await y.http.drain(stream_id, { afterSeq: true, waitMs: 5000 });
      expect(last).to.deep.include({ end: true, finish_reason: 'length' });
      expect(text, 'one execution only').to.equal(solo);
      expect(Date.now() - killedAt).to.be.below(LEASE_MS * 15);
      expect(await db2.hget(`rkllm:fq:j:${claim!.id}`, 'attempt')).to.equal('2');
    });

    it('a run that had produced text ends with an explicit error chunk, within a bounded time', async () => {
      await busyY();
      const { stream_id } = await y.http.start(LONG);
      const head = await y.http.firstChunk(stream_id);
      expect(await claimOf(stream_id)).to.not.equal(undefined);
      x.proc.proc.kill('SIGKILL');
      const killedAt = Date.now();
      const rest = await y.http.drain(stream_id, { afterSeq: true, waitMs: 5000 });
      expect(Date.now() - killedAt).to.be.below(LEASE_MS * 10);
      expect(rest.last).to.deep.include({ end: true, finish_reason: 'error' });
      expect(rest.last.error).to.deep.include({ code: -32019 });
      expect(rest.last.error!.message).to.match(/stopped renewing its lease/);
      expect(rest.last.seq).to.be.above(head.seq);
    });
  });

  it('a run whose receiver was killed with SIGKILL is stopped where it executes, freeing its slot', async () => {
    const [r, e] = await Promise.all([instance(9), instance(9)]);
    await until('both registered', async () => (await e.http.result('engine_status', {})).fleet.instances.length === 2);
    // R's only slot runs a run pinned to it, so the run R receives next executes on E.
    const pinned = await r.http.start({ ...LONG, keep_history: 1 });
    await r.http.firstChunk(pinned.stream_id);
    const { stream_id } = await r.http.start(LONG);
    await e.http.firstChunk(stream_id);
    expect(await running(e)).to.equal(true);
    r.proc.proc.kill('SIGKILL');
    // R's streams end when their lease runs out; E then stops the run nobody reads (it had 15,000 tokens to go).
    await until('E stopped the run', async () => !(await running(e)), LEASE_MS * 4);
    const last = await e.http.drain(stream_id, { afterSeq: true, waitMs: 5000 });
    expect(last.last.error).to.deep.include({ code: -32014 });
  });

  it('a run pushed live to a receiver killed with SIGKILL is stopped where it executes once the receiver leaves the fleet', async () => {
    const [r, e] = await Promise.all([instance(10), instance(10)]);
    await until('both registered', async () => (await e.http.result('engine_status', {})).fleet.instances.length === 2);
    const pinned = await r.http.start({ ...LONG, keep_history: 1 });
    await r.http.firstChunk(pinned.stream_id);
    // Over TCP the chunks are pushed, and nothing is buffered: no lease ends this stream when R dies.
    const tcp = await TcpRpc.connect(r.proc.addresses.tcp!);
    const id = tcp.send('rkllm_run_async', LONG);
    const first = await tcp.next(id);
    expect(first.result?.chunk?.end).to.equal(false);
    expect(await running(e)).to.equal(true);
    r.proc.proc.kill('SIGKILL');
    void tcp.close();
    await until('E stopped the run', async () => !(await running(e)), LEASE_MS * 12);
  });

  it('holds per-client limits across the fleet: queue share and stream count', async () => {
    const keys = ['fleet-test-key-one-0123456789', 'fleet-test-key-two-0123456789'];
    const settings = { auth: { api_keys: keys }, limits: { max_streams: 3 }, engine: { queue_limit_per_client: 1 } };
    const [f, g] = await Promise.all([instance(3, { settings }), instance(3, { settings })]);
    const as = (i: Instance, key: string): HttpRpc => new HttpRpc(i.url, { authorization: `Bearer ${key}` });
    const [f1, g1, f2, g2] = [as(f, keys[0]!), as(g, keys[0]!), as(f, keys[1]!), as(g, keys[1]!)];
    const long = [await f1.start(LONG), await g1.start(LONG)];
    await until('both run', async () => (await running({ http: f1 })) && (await running({ http: g1 })));
    const queued = [await f2.start(SHORT)];
    // The second key's share of the queue is one run, wherever it sends the next.
    const share = await g2.call('rkllm_run_async', SHORT);
    expect(share.error).to.deep.include({ code: -32000 });
    expect(share.error!.message).to.match(/its share of the queue/);
    queued.push(await f1.start(SHORT));
    // The first key has three streams in the fleet (one on G): G refuses a fourth.
    const count = await g1.call('rkllm_run_async', SHORT);
    expect(count.error).to.deep.include({ code: -32016 });
    expect(count.error!.message).to.match(/at most 3 queued or running per client/);
    for (const [rpc, s] of [
      [f1, long[0]!],
      [g1, long[1]!],
    ] as const)
      await rpc.result('rkllm_abort', { stream_id: s.stream_id });
    expect((await f2.drain(queued[0]!.stream_id, { afterSeq: true, waitMs: 5000 })).last.finish_reason).to.equal('length');
    expect((await f1.drain(queued[1]!.stream_id, { afterSeq: true, waitMs: 5000 })).last.finish_reason).to.equal('length');
  });

  it('with Redis gone each instance serves its own queue and /health says so; with Redis back, the shared queue again', async () => {
    const [p, q] = await Promise.all([instance(5), instance(5)]);
    const solo = (await p.http.result('rkllm_run', SHORT)).text;
    await redis.stop();
    try {
      for (const i of [p, q]) {
        await until('health says degraded', async () => {
          const health = (await (await fetch(`${i.url}health`)).json()) as { degraded?: boolean };
          return health.degraded === true;
        });
        const res = await fetch(`${i.url}health`);
        expect(res.status).to.equal(200);
        const health = (await res.json()) as { status: string; reason: string };
        expect(health.status).to.equal('ready');
        expect(health.reason).to.match(/shared run queue \(Redis\) is unreachable.*serves its own queue/);
        expect((await i.http.result('rkllm_run', SHORT)).text).to.equal(solo);
        // A LoRA adapter this instance lacks: refused as without a fleet (no other instance can be asked).
        const unknown = await i.http.call('rkllm_run', { ...SHORT, lora_params: { lora_adapter_name: 'nope' } });
        expect(unknown.error?.code).to.equal(-32602);
        expect(unknown.error?.message).to.match(/names no loaded adapter \(loaded: none\)/);
        expect((await i.http.result('engine_status', {})).fleet).to.include({ mode: 'local' });
      }
    } finally {
      await redis.start();
    }
    for (const i of [p, q]) {
      await until('health is plain ready again', async () => {
        const health = (await (await fetch(`${i.url}health`)).json()) as { degraded?: boolean };
        return health.degraded === undefined;
      });
    }
    // engine_status asks Redis itself: its first query after the restart may still fail (and say "local").
    await until('engine_status says shared', async () => (await p.http.result('engine_status', {})).fleet.mode === 'shared');
    expect((await q.http.result('rkllm_run', SHORT)).text).to.equal(solo);
  });

  it('an instance shutting down gracefully stops claiming at once, while it finishes its own run', async () => {
    const db = new Redis(`${redis.url}/6`, { maxRetriesPerRequest: 1 });
    try {
      const draining = await instance(6, { parallel: 2, settings: { shutdown: { drain_timeout_s: 60 } } });
      const other = await instance(6);
      const drainingId: string = (await draining.http.result('engine_status', {})).fleet.instance;
      const otherId: string = (await other.http.result('engine_status', {})).fleet.instance;
      const own = await draining.http.start({ ...LONG, keep_history: 1 });
      await draining.http.firstChunk(own.stream_id);
      const busy = await other.http.start({ ...LONG, keep_history: 1 });
      await other.http.firstChunk(busy.stream_id);
      await until('the draining instance has a free slot', async () => (await db.hget('rkllm:fq:free', drainingId)) === '1');
      draining.proc.proc.kill('SIGTERM');
      await until('it no longer offers its free slot', async () => (await db.hget('rkllm:fq:free', drainingId)) !== '1');
      const { stream_id } = await other.http.start(SHORT);
      await other.http.result('rkllm_abort', { stream_id: busy.stream_id });
      expect((await other.http.drain(stream_id, { afterSeq: true, waitMs: 5000 })).last.finish_reason).to.equal('length');
      const ran = await db.keys('rkllm:fq:j:*');
      const execs = await Promise.all(ran.map(async (key) => db.hmget(key, 'stream', 'exec')));
      expect(execs.find(([stream]) => stream === stream_id)?.[1]).to.equal(otherId);
      draining.proc.proc.kill('SIGKILL');
    } finally {
      db.disconnect();
    }
  });

  it('takes turns across clients in the shared queue: a newcomer is served before the runs queued earlier by another client', async () => {
    const keys = ['fleet-fair-key-one-0123456789', 'fleet-fair-key-two-0123456789', 'fleet-fair-key-three-012345678'];
    const settings = { auth: { api_keys: keys } };
    const [u, v] = await Promise.all([instance(7, { settings }), instance(7, { settings })]);
    const as = (i: Instance, key: string): HttpRpc => new HttpRpc(i.url, { authorization: `Bearer ${key}` });
    const [u1, v2, u3, v3] = [as(u, keys[0]!), as(v, keys[1]!), as(u, keys[2]!), as(v, keys[2]!)];
    // A third key fills both slots with runs pinned to them.
    const pinnedU = await u3.start({ ...LONG, keep_history: 1 });
    const pinnedV = await v3.start({ ...LONG, keep_history: 1 });
    await u3.firstChunk(pinnedU.stream_id);
    await v3.firstChunk(pinnedV.stream_id);
    const first = [await u1.start(SHORT), await u1.start(SHORT), await u1.start(SHORT)];
    const newcomer = await v2.start(SHORT);
    // One slot frees up: the four runs go through it one at a time, in turn order.
    await v3.result('rkllm_abort', { stream_id: pinnedV.stream_id });
    const order: string[] = [];
    const follow = async (rpc: HttpRpc, streamId: string, name: string): Promise<void> => {
      expect((await rpc.drain(streamId, { afterSeq: true, waitMs: 5000 })).last.finish_reason).to.equal('length');
      order.push(name);
    };
    await Promise.all([...first.map((s, i) => follow(u1, s.stream_id, `first ${i}`)), follow(v2, newcomer.stream_id, 'newcomer')]);
    expect(order).to.deep.equal(['first 0', 'newcomer', 'first 1', 'first 2']);
    await u3.result('rkllm_abort', { stream_id: pinnedU.stream_id });
  });
});

/**
 * Sends MONITOR on a connection of its own and calls `xadd` with the key and id of every XADD run
 * in `database` (scripts' included), parsed from MONITOR's lines: `+TIME [DB SOURCE] "xadd" "key" "id" ...`.
 */
async function monitorXadds(port: number, database: string, xadd: (key: string, id: string) => void): Promise<Socket> {
  const socket = connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  socket.setEncoding('utf8');
  let pending = '';
  const ok = new Promise<void>((resolve) => {
    socket.on('data', (data: string) => {
      const lines = (pending + data).split('\r\n');
      pending = lines.pop()!;
      for (const line of lines) {
        if (line === '+OK') resolve();
        const match = /^\+[\d.]+ \[(\d+) [^\]]*\] (.*)$/.exec(line);
        if (match?.[1] !== database) continue;
        const args = [...match[2]!.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]!);
        if (args[0]?.toLowerCase() === 'xadd') xadd(args[1]!, args[2]!);
      }
    });
  });
  socket.write('MONITOR\r\n');
  await ok;
  return socket;
}
