// The scheduler's fair queue: turns across clients, each client's share bounded, and the old contract
// (abort while queued leaves the queue, refusal once closed).
import { expect } from 'chai';
import { fault, ServerError } from '../../src/errors.js';
import { Scheduler } from '../../src/streams/scheduler.js';
import { thrown } from '../helpers/thrown.js';
import { FAIR_QUEUE_VECTORS } from './fair-queue-vectors.js';

/** Queues a run for `client` and records, in `served`, the moment it gets a slot. */
function queue(scheduler: Scheduler, client: string, label: string, served: string[], signal = new AbortController().signal) {
  return scheduler.acquire(signal, client).then((release) => {
    served.push(label);
    return release;
  });
}

/** Releases `release`, then each run as it gets its slot, until every run of `pending` has run. */
async function serveAll(release: () => void, pending: Map<string, Promise<() => void>>, served: string[]): Promise<void> {
  while (pending.size > 0) {
    release();
    release = await Promise.race(pending.values());
    pending.delete(served.at(-1)!);
  }
  release();
}

describe('Scheduler (fair queue)', () => {
  for (const vector of FAIR_QUEUE_VECTORS) {
    it(`${vector.name} (the vectors the fleet's Lua queue passes too)`, async () => {
      const scheduler = new Scheduler(1, 1000, 0);
      const served: string[] = [];
      const holding: Array<() => void> = [];
      for (const event of vector.events) {
        if (event === '-') holding.shift()!();
        else {
          void queue(scheduler, event[0]!, event, served).then((release) => holding.push(release));
        }
        await new Promise((resolve) => setImmediate(resolve));
      }
      expect(served).to.deep.equal(vector.served);
    });
  }

  it('serves a new client at the next free slot, behind 64 runs another client queued first', async () => {
    const scheduler = new Scheduler(1, 1000, 0);
    const served: string[] = [];
    const release = await queue(scheduler, 'A', 'A0', served);
    const pending = new Map<string, Promise<() => void>>();
    for (let i = 1; i <= 64; i++) pending.set(`A${i}`, queue(scheduler, 'A', `A${i}`, served));
    pending.set('B1', queue(scheduler, 'B', 'B1', served));
    expect(scheduler.queued).to.equal(65);
    await serveAll(release, pending, served);
    expect(served.slice(0, 2)).to.deep.equal(['A0', 'B1']);
    expect(served.slice(2)).to.deep.equal(Array.from({ length: 64 }, (_, i) => `A${i + 1}`));
    expect(scheduler.active).to.equal(0);
  });

  it('takes turns between clients that both queued many runs, each in its own order', async () => {
    const scheduler = new Scheduler(1, 1000, 0);
    const served: string[] = [];
    const first = await queue(scheduler, 'A', 'A0', served);
    const pending = new Map<string, Promise<() => void>>();
    for (const client of ['A', 'B'])
      for (let i = 1; i <= 3; i++) pending.set(`${client}${i}`, queue(scheduler, client, `${client}${i}`, served));
    await serveAll(first, pending, served);
    expect(served).to.deep.equal(['A0', 'B1', 'A1', 'B2', 'A2', 'B3', 'A3']);
  });

  it("bounds each client's share of the queue with a busy error, while others may still queue", async () => {
    const scheduler = new Scheduler(1, 10, 2);
    const served: string[] = [];
    await queue(scheduler, 'A', 'A0', served);
    void queue(scheduler, 'A', 'A1', served);
    void queue(scheduler, 'A', 'A2', served);
    const err = thrown(() => scheduler.checkCapacity('A'), ServerError);
    expect(err).to.include({ name: 'BUSY' });
    expect(err.message).to.include('engine.queue_limit_per_client');
    expect((err.data as { retry_after: number }).retry_after).to.equal(1);
    const refused = await scheduler.acquire(new AbortController().signal, 'A').then(
      () => undefined,
      (e: Error) => e,
    );
    expect(refused).to.include({ name: 'BUSY' });
    expect(() => scheduler.checkCapacity('B')).not.to.throw();
    expect(scheduler.queuedBy('A')).to.equal(2);
  });

  it('keeps the total queue limit', async () => {
    const scheduler = new Scheduler(1, 2, 0);
    const served: string[] = [];
    await queue(scheduler, 'A', 'A0', served);
    void queue(scheduler, 'A', 'A1', served);
    void queue(scheduler, 'B', 'B1', served);
    expect(thrown(() => scheduler.checkCapacity('C'), ServerError)).to.include({ name: 'BUSY' });
  });

  it('a queued run whose signal aborts leaves the queue and never runs', async () => {
    const scheduler = new Scheduler(1, 10, 0);
    const served: string[] = [];
    const release = await queue(scheduler, 'A', 'A0', served);
    const abort = new AbortController();
    const b = queue(scheduler, 'B', 'B1', served, abort.signal).catch((e: Error) => e.message);
    const a1 = queue(scheduler, 'A', 'A1', served);
    abort.abort();
    expect(await b).to.equal('aborted while queued');
    expect(scheduler.queued).to.equal(1);
    release();
    (await a1)();
    expect(served).to.deep.equal(['A0', 'A1']);
    expect(scheduler.active).to.equal(0);
  });

  it('refuses every new run with the refusal once closed', async () => {
    const scheduler = new Scheduler(1, 10, 0);
    scheduler.close(fault('SHUTTING_DOWN', 'no_new_runs'));
    expect(thrown(() => scheduler.checkCapacity('A'), ServerError)).to.include({ name: 'SHUTTING_DOWN' });
  });
});
