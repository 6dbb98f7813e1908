// The Redis buffer store: the shared store suite, then what only a shared store does: several
// instances on one Redis, abort and leases across them, and Redis going away. A real
// redis-server of the test's own runs on a free port. Time is a controlled clock, except for the
// leases, which real timers renew and check: those tests wait for what Redis or the streams show.
import { expect } from 'chai';
import { pino } from 'pino';
import type { BufferLimits } from '../../src/streams/buffer-store.js';
import { RedisPeers } from '../../src/streams/fleet/peers.js';
import { RedisLink } from '../../src/streams/redis/link.js';
import { RedisBufferStore } from '../../src/streams/redis/store.js';
import { Stream } from '../../src/streams/stream.js';
import { freePort, startRedis, type RedisProcess } from '../helpers/redis-server.js';
import { CLAIM, ENQUEUE } from '../../src/streams/fleet/scripts.js';
import { FAIR_QUEUE_VECTORS } from './fair-queue-vectors.js';
import { aborted, until } from '../helpers/until.js';
import { SUITE_LIMITS, final, rejection, storeSuite, text } from './store-suite.js';

const LEASE_MS = 300;
const silent = pino({ level: 'silent' });

interface Instance {
  link: RedisLink;
  store: RedisBufferStore;
  close(): Promise<void>;
}

describe('RedisBufferStore', function () {
  this.timeout(20_000);
  let redis: RedisProcess;
  let prefixes = 0;
  let opened: Instance[] = [];

  before(async () => {
    redis = await startRedis();
  });

  after(async () => {
    await redis?.dispose();
  });

  /** One server's view of the shared store; every instance of one test shares `prefix`. */
  async function instance(prefix: string, limits: BufferLimits, now: () => number, retryMs = 0): Promise<Instance> {
    const link = await RedisLink.open({ url: redis.url, keyPrefix: prefix, now });
    const store = new RedisBufferStore({ link, limits, instanceId: `i${opened.length}`, leaseMs: LEASE_MS, retryMs, maxBlockingReads: 4 });
    const made: Instance = {
      link,
      store,
      close: async () => {
        await store.close();
        link.close();
      },
    };
    opened.push(made);
    return made;
  }

  const freshPrefix = (): string => `test${process.pid}-${++prefixes}:`;

  /** Resolves once `count` connections of `on` are blocked in a read (XREAD BLOCK), as Redis counts them. */
  const blockedReads = (on: Instance, count: number): Promise<void> =>
    until(async () => /blocked_clients:(\d+)/.exec(await on.link.redis.info('clients'))?.[1] === String(count), `${count} blocked reads`);

  afterEach(async () => {
    await Promise.all(opened.map((i) => i.close()));
    opened = [];
  });

  describe('the shared store suite', () => {
    storeSuite(async (limits, now) => {
      const { store } = await instance(freshPrefix(), limits, now);
      return { store, close: async () => {} };
    });
  });

  describe('several instances on one Redis', () => {
    let now: number;
    let a: Instance;
    let b: Instance;

    beforeEach(async () => {
      now = 1_000_000_000;
      const prefix = freshPrefix();
      a = await instance(prefix, SUITE_LIMITS, () => now);
      b = await instance(prefix, SUITE_LIMITS, () => now);
    });

    it('serves on one instance the chunks appended on another, acknowledged for both', async () => {
      await a.store.create('s', { generated: true });
      await a.store.append('s', text(0, 'Hel'));
      await a.store.append('s', text(1, 'lo'));
      expect((await b.store.poll('s')).chunks.map((c) => c.delta)).to.deep.equal(['Hel', 'lo']);
      await a.store.append('s', final(2));
      expect((await a.store.poll('s')).chunks.map((c) => c.seq)).to.deep.equal([2]);
      expect((await rejection(b.store.poll('s'))).message).to.match(/released/);
    });

    it('wakes a long poll on one instance when another appends', async () => {
      await a.store.create('s');
      const started = Date.now();
      const waiting = b.store.wait('s', undefined, 10_000);
      await blockedReads(b, 1);
      await a.store.append('s', text(0, 'x'));
      await waiting;
      expect(Date.now() - started).to.be.below(5_000);
      expect((await b.store.poll('s')).chunks.map((c) => c.delta)).to.deep.equal(['x']);
    });

    it('holds the buffer limit across instances', async () => {
      await a.store.create('a1');
      await a.store.create('a2');
      await b.store.create('b1');
      expect((await rejection(b.store.create('b2'))).name).to.equal('TOO_MANY_STREAMS');
      expect((await rejection(a.store.create('a3'))).name).to.equal('TOO_MANY_STREAMS');
      expect((await b.store.status()).active_buffers).to.equal(3);
    });

    it('expires on any instance the buffers another created', async () => {
      await a.store.create('s');
      now += 60_000;
      expect(await b.store.sweep()).to.deep.equal(['s']);
      expect((await rejection(a.store.poll('s'))).data).to.deep.include({ reason: 'expired' });
    });

    it('frees a blocking connection as soon as its wait is abandoned', async () => {
      await a.store.create('s');
      const controllers = Array.from({ length: 4 }, () => new AbortController());
      const waits = controllers.map((c) => b.store.wait('s', undefined, 60_000, c.signal));
      for (const c of controllers) c.abort();
      await Promise.all(waits);
      // All four connections are free again: a fifth wait is woken by the next chunk.
      const next = b.store.wait('s', undefined, 10_000);
      await blockedReads(b, 1);
      const started = Date.now();
      await a.store.append('s', text(0, 'x'));
      await next;
      expect(Date.now() - started).to.be.below(5_000);
    });
  });

  describe("the fleet queue's fair-queue rule, in Lua", () => {
    for (const vector of FAIR_QUEUE_VECTORS) {
      it(`${vector.name} (the vectors the in-process scheduler passes too)`, async () => {
        const { link } = await instance(freshPrefix(), SUITE_LIMITS, Date.now);
        const now = Date.now();
        const served: string[] = [];
        let busy = false;
        // The stream id of each run is its label.
        const claim = async (): Promise<void> => {
          const claimed = (await link.run(CLAIM, [now, 60_000, 'x', 1, 'c'])) as string[];
          busy = claimed.length > 0;
          if (busy) served.push(claimed[3]!);
        };
        for (const event of vector.events) {
          if (event === '-') await claim();
          else {
            await link.run(ENQUEUE, [now, 'c', '{}', event[0]!, '{}', 'x', event, 1000, 0, 0, 0, 'r', 0, 0]);
            if (!busy) await claim();
          }
        }
        expect(served).to.deep.equal(vector.served);
      });
    }
  });

  describe('the peers: abort and leases', () => {
    let a: Instance;
    let b: Instance;
    let started: RedisPeers[];

    beforeEach(async () => {
      const prefix = freshPrefix();
      // Real time here: leases are renewed and checked by timers.
      a = await instance(prefix, SUITE_LIMITS, Date.now);
      b = await instance(prefix, SUITE_LIMITS, Date.now);
      started = [];
    });

    afterEach(async () => {
      await Promise.all(started.map((p) => p.close()));
    });

    async function peers(on: Instance, instanceId: string): Promise<RedisPeers> {
      const made = await RedisPeers.start({
        link: on.link,
        instanceId,
        leaseMs: LEASE_MS,
        retryMs: 0,
        bufferTimeoutMs: 60_000,
        log: silent,
      });
      started.push(made);
      return made;
    }

    it('closes twice without harm, by close and by Symbol.asyncDispose, and stops listening for aborts', async () => {
      const made = await peers(a, 'i0');
      const channel = `${a.link.prefix}ctl:i0`;
      const listeners = async (): Promise<number> => ((await a.link.redis.pubsub('NUMSUB', channel)) as [string, number])[1];
      expect(await listeners()).to.equal(1);
      await made.close();
      await made[Symbol.asyncDispose]();
      await until(async () => (await listeners()) === 0, 'the abort channel to lose its listener');
    });

    it('aborts a stream on the instance that generates it', async () => {
      const owner = await peers(a, 'i0');
      const other = await peers(b, 'i1');
      const stream = new Stream(1);
      await a.store.create(stream.id, { generated: true });
      owner.own(stream);
      expect(await other.abort(stream.id)).to.equal(true);
      await aborted(stream.signal);
      expect((await rejection(other.abort('unknown'))).name).to.equal('STREAM_NOT_FOUND');
    });

    it('ends, once, with an error chunk the stream of an owner that stopped renewing its lease', async () => {
      await a.store.create('s', { generated: true });
      await a.store.append('s', text(0, 'a'));
      // Nobody renews the lease of 's'; two instances check leases.
      await peers(a, 'i9');
      await peers(b, 'i8');
      await b.store.wait('s', 0, 5_000);
      const chunks = (await b.store.poll('s', -1)).chunks;
      expect(chunks.map((c) => c.seq)).to.deep.equal([0, 1]);
      expect(chunks[1]).to.deep.include({ end: true, finish_reason: 'error' });
      expect(chunks[1]!.error).to.deep.include({ code: -32014 });
      expect(chunks[1]!.error!.data).to.deep.include({ stream_id: 's', owner: 'i0', last_seq: 0 });
    });

    it('keeps alive the lease of a stream its owner renews', async () => {
      const owner = await peers(a, 'i0');
      await peers(b, 'i1');
      const stream = new Stream(1);
      await a.store.create(stream.id, { generated: true });
      owner.own(stream);
      // Streams nobody renews, created one after another, each end once a lease check runs after
      // its lease: then the renewed stream, created before them, was checked past its first lease.
      for (let i = 0; i < 3; i++) {
        await a.store.create(`unrenewed${i}`, { generated: true });
        await b.store.wait(`unrenewed${i}`, undefined, 5_000);
        expect((await b.store.poll(`unrenewed${i}`)).chunks[0]).to.deep.include({ end: true, finish_reason: 'error' });
      }
      expect(await b.store.peek(stream.id)).to.deep.equal([]);
    });

    it('aborts the generation of a stream whose buffer expired elsewhere', async () => {
      const owner = await peers(a, 'i0');
      const stream = new Stream(1);
      await a.store.create(stream.id, { generated: true, idleMs: 120_000 });
      owner.own(stream);
      expect(await b.store.sweep()).to.deep.equal([stream.id]);
      await aborted(stream.signal);
    });
  });

  describe('when Redis goes away', () => {
    it('refuses to open when Redis cannot be reached, saying where', async () => {
      const url = `redis://127.0.0.1:${await freePort()}`;
      try {
        await RedisLink.open({ url, keyPrefix: 'x:' });
        expect.fail('opened');
      } catch (err) {
        expect((err as Error).message).to.match(/Cannot connect to Redis at redis:\/\/127\.0\.0\.1:\d+: .*ECONNREFUSED/);
      }
    });

    it('answers a clear error while Redis is away, keeps appending once it is back, and loses nothing', async () => {
      const { store } = await instance(freshPrefix(), SUITE_LIMITS, Date.now, 10_000);
      await store.create('s');
      await store.append('s', text(0, 'a'));
      await redis.stop();
      const err = await rejection(store.poll('s', -1));
      expect(err.name).to.equal('STORE_UNAVAILABLE');
      expect(err.message).to.match(/unreachable/);
      const appending = store.append('s', text(1, 'b'));
      await new Promise((r) => setTimeout(r, 300));
      await redis.start();
      await appending;
      await store.append('s', final(2));
      expect((await store.poll('s', -1)).chunks.map((c) => c.delta)).to.deep.equal(['a', 'b', '']);
    });

    it('reports in the final chunk the chunks it could not store', async () => {
      const { store } = await instance(freshPrefix(), SUITE_LIMITS, Date.now, 1000);
      await store.create('s');
      await store.append('s', text(0, 'a'));
      await redis.stop();
      expect((await rejection(store.append('s', text(1, 'b')))).name).to.equal('STORE_UNAVAILABLE');
      expect((await rejection(store.append('s', text(2, 'c')))).name).to.equal('STORE_UNAVAILABLE');
      const ending = store.append('s', final(3));
      await redis.start();
      await ending;
      const chunks = (await store.poll('s', -1)).chunks;
      expect(chunks.map((c) => c.seq)).to.deep.equal([0, 3]);
      expect(chunks[1]).to.deep.include({ end: true, finish_reason: 'error' });
      expect(chunks[1]!.error).to.deep.include({ code: -32013, data: { first_lost_seq: 1, last_lost_seq: 2 } });
    });
  });
});
