// Per-client limits, on a clock the tests move by hand.
import { expect } from 'chai';
import { ServerError } from '../../src/errors.js';
import { ClientLimits, type ClientLimitSettings } from '../../src/limits.js';
import { thrown } from '../helpers/thrown.js';

const OFF: ClientLimitSettings = { requestsPerSecond: 0, requestBurst: 1, maxStreams: 0, maxConnections: 0 };

const refusal = (fn: () => unknown): ServerError => thrown(fn, ServerError);

/** Whether `fn` is let through: true, or false when it is refused with RATE_LIMITED. */
function allowed(fn: () => unknown): boolean {
  try {
    fn();
    return true;
  } catch (err) {
    if (err instanceof ServerError && err.name === 'RATE_LIMITED') return false;
    throw err;
  }
}

describe('ClientLimits', () => {
  let now = 0;
  const clock = (): number => now;
  beforeEach(() => (now = 1_000_000));

  it('lets a burst through, then refuses with retry_after until the bucket refills', () => {
    const limits = new ClientLimits({ ...OFF, requestsPerSecond: 2, requestBurst: 3 }, clock);
    for (let i = 0; i < 3; i++) limits.request('a');
    const error = refusal(() => limits.request('a'));
    expect(error.name).to.equal('RATE_LIMITED');
    expect(error.data).to.deep.equal({ limit: 'limits.requests_per_second', retry_after: 0.5 });
    expect(error.message).to.include('at most 2 per second').and.include('retry after 0.5 s');
    now += 499;
    expect(refusal(() => limits.request('a')).data).to.include({ retry_after: 0.001 });
    now += 1;
    limits.request('a');
  });

  it('keeps one bucket per client', () => {
    const limits = new ClientLimits({ ...OFF, requestsPerSecond: 1, requestBurst: 1 }, clock);
    expect(allowed(() => limits.request('a'))).to.equal(true);
    expect(allowed(() => limits.request('a'))).to.equal(false);
    expect(allowed(() => limits.request('b'))).to.equal(true);
    expect(allowed(() => limits.request('b'))).to.equal(false);
    now += 1000;
    expect(allowed(() => limits.request('a'))).to.equal(true);
    expect(allowed(() => limits.request('b'))).to.equal(true);
  });

  it('counts streams per client and frees a place on release, once', () => {
    const limits = new ClientLimits({ ...OFF, maxStreams: 2 }, clock);
    const first = limits.stream('a');
    limits.stream('a');
    expect(refusal(() => limits.stream('a')).data).to.deep.equal({ limit: 'limits.max_streams', retry_after: 1 });
    limits.stream('b');
    first();
    first();
    limits.stream('a');
    refusal(() => limits.stream('a'));
  });

  it('counts connections per client and per transport', () => {
    const limits = new ClientLimits({ ...OFF, maxConnections: 1 }, clock);
    const tcp = limits.connection('a', 'tcp');
    limits.connection('a', 'ws');
    const error = refusal(() => limits.connection('a', 'tcp'));
    expect(error.message).to.include('Too many TCP connections: at most 1 per client');
    limits.connection('a', 'http');
    expect(refusal(() => limits.connection('a', 'http')).message).to.include('HTTP requests in progress');
    tcp();
    limits.connection('a', 'tcp');
  });

  it('0 turns each limit off', () => {
    const granted = (settings: ClientLimitSettings): number[] => {
      const limits = new ClientLimits(settings, clock);
      const counts = [0, 0, 0];
      for (let i = 0; i < 1000; i++) {
        if (allowed(() => limits.request('a'))) counts[0]!++;
        if (allowed(() => limits.stream('a'))) counts[1]!++;
        if (allowed(() => limits.connection('a', 'tcp'))) counts[2]!++;
      }
      return counts;
    };
    expect(granted(OFF)).to.deep.equal([1000, 1000, 1000]);
    expect(granted({ requestsPerSecond: 1, requestBurst: 1, maxStreams: 1, maxConnections: 1 })).to.deep.equal([1, 1, 1]);
  });

  it('forgets clients whose bucket has refilled and who hold nothing', () => {
    const limits = new ClientLimits({ ...OFF, requestsPerSecond: 10, requestBurst: 5, maxStreams: 5 }, clock);
    for (let i = 0; i < 100; i++) limits.request(`client-${i}`);
    const release = limits.stream('holder');
    expect(limits.tracked).to.equal(101);
    now += 120_000;
    limits.request('late');
    expect(limits.tracked).to.equal(2);
    release();
    expect(limits.tracked).to.equal(1);
  });
});
