// The one suite every buffer store passes (in memory, and on Redis). Time is a controlled clock:
// nothing sleeps to wait for an expiry.
import { expect } from 'chai';
import { ServerError } from '../../src/errors.js';
import { requestKey, type BufferLimits, type BufferStore } from '../../src/streams/buffer-store.js';
import type { Chunk } from '../../src/streams/stream.js';

export const text = (seq: number, delta: string): Chunk => ({ seq, delta, end: false });
export const final = (seq: number): Chunk => ({ seq, delta: '', end: true, finish_reason: 'stop' });

export async function rejection(promise: Promise<unknown>): Promise<ServerError> {
  try {
    await promise;
  } catch (err) {
    expect(err).to.be.instanceOf(ServerError);
    return err as ServerError;
  }
  throw new Error('expected a rejection');
}

/** A store built for one test, and how to dispose of it. */
export interface StoreUnderTest {
  store: BufferStore;
  close(): Promise<void>;
}

/** Builds a fresh, empty store with these limits and this clock (ms). */
export type MakeStore = (limits: BufferLimits, now: () => number) => Promise<StoreUnderTest>;

export const SUITE_LIMITS: BufferLimits = { maxBuffers: 3, maxBufferBytes: 200, bufferTimeoutMs: 60_000 };

/** Registers the shared store tests in the calling `describe`. */
export function storeSuite(make: MakeStore): void {
  let now: number;
  let current: StoreUnderTest;
  let store: BufferStore;

  beforeEach(async () => {
    now = 1_000_000_000;
    current = await make(SUITE_LIMITS, () => now);
    store = current.store;
  });

  afterEach(async () => {
    await current.close();
  });

  it('acknowledges what a poll without after_seq returns (clear after read)', async () => {
    await store.create('s');
    await store.append('s', text(0, 'Hel'));
    await store.append('s', text(1, 'lo'));
    expect((await store.poll('s')).chunks.map((c) => c.delta)).to.deep.equal(['Hel', 'lo']);
    expect((await store.poll('s')).chunks).to.deep.equal([]);
    await store.append('s', text(2, '!'));
    expect((await store.poll('s')).chunks.map((c) => c.seq)).to.deep.equal([2]);
  });

  it('with after_seq acknowledges only up to it, so a lost reply can be asked for again', async () => {
    await store.create('s');
    for (const [i, d] of ['a', 'b', 'c'].entries()) await store.append('s', text(i, d));
    const first = await store.poll('s', -1);
    expect(first.chunks.map((c) => c.delta)).to.deep.equal(['a', 'b', 'c']);
    // The reply is "lost": the client asks again from the last seq it saw.
    const again = await store.poll('s', -1);
    expect(again.chunks.map((c) => c.delta)).to.deep.equal(['a', 'b', 'c']);
    const next = await store.poll('s', 1);
    expect(next.chunks.map((c) => c.delta)).to.deep.equal(['c']);
    expect((await store.status()).buffered_bytes).to.equal(Buffer.byteLength('c') + 48);
  });

  it('keeps every field of a chunk, the final chunk included', async () => {
    await store.create('s');
    const last: Chunk = { seq: 1, delta: 'é', end: true, finish_reason: 'error', error: { code: -32007, message: 'full' } };
    await store.append('s', text(0, 'naïve ✓'));
    await store.append('s', last);
    expect(await store.peek('s')).to.deep.equal([text(0, 'naïve ✓'), last]);
  });

  it('refuses after_seq beyond what was sent, and before what was released', async () => {
    await store.create('s');
    await store.append('s', text(0, 'a'));
    await store.append('s', text(1, 'b'));
    const beyond = await rejection(store.poll('s', 5));
    expect(beyond.name).to.equal('INVALID_PARAMS');
    expect(beyond.message).to.match(/after_seq 5 is beyond the last chunk sent \(seq 1\)/);
    await store.poll('s', 1);
    const before = await rejection(store.poll('s', 0));
    expect(before.message).to.match(/already acknowledged/);
  });

  it('releases a buffer once its final chunk is acknowledged, and says so afterwards', async () => {
    await store.create('s');
    await store.append('s', text(0, 'a'));
    await store.append('s', final(1));
    expect((await store.poll('s')).chunks).to.have.lengthOf(2);
    expect((await store.status()).active_buffers).to.equal(0);
    const err = await rejection(store.poll('s'));
    expect(err.name).to.equal('STREAM_NOT_FOUND');
    expect(err.message).to.match(/ended and its buffer was released/);
  });

  it('keeps the final chunk until it is acknowledged in after_seq mode', async () => {
    await store.create('s');
    await store.append('s', text(0, 'a'));
    await store.append('s', final(1));
    expect((await store.poll('s', -1)).chunks).to.have.lengthOf(2);
    expect((await store.status()).active_buffers).to.equal(1);
    expect((await store.poll('s', 1)).chunks).to.deep.equal([]);
    expect((await store.status()).active_buffers).to.equal(0);
  });

  it('expires a buffer not polled for buffer_timeout_s, and tells unknown from expired', async () => {
    await store.create('old');
    await store.create('fresh');
    now += 59_000;
    await store.poll('fresh');
    now += 1_000;
    expect(await store.sweep()).to.deep.equal(['old']);
    const expired = await rejection(store.poll('old'));
    expect(expired.message).to.match(/has expired/);
    expect(expired.data).to.deep.include({ reason: 'expired' });
    const unknown = await rejection(store.poll('never'));
    expect(unknown.message).to.match(/Unknown stream never/);
    now += 60_000;
    expect(await store.sweep()).to.deep.equal(['fresh']);
  });

  it('counts a buffer created as already idle (diagnostics) as expired', async () => {
    await store.create('idle', { idleMs: 61_000 });
    await store.create('busy');
    expect(await store.sweep()).to.deep.equal(['idle']);
  });

  it('refreshes expiry on touch, without reading', async () => {
    await store.create('s');
    await store.append('s', text(0, 'a'));
    now += 59_000;
    await store.touch('s');
    await store.touch('unknown');
    now += 59_000;
    expect(await store.sweep()).to.deep.equal([]);
    expect((await store.peek('s')).map((c) => c.delta)).to.deep.equal(['a']);
  });

  it('refuses a new buffer beyond max_buffers and never evicts a live one', async () => {
    for (const id of ['a', 'b', 'c']) await store.create(id);
    const err = await rejection(store.create('d'));
    expect(err.name).to.equal('TOO_MANY_STREAMS');
    expect(err.message).to.match(/limit of 3 buffers/);
    expect((await store.status()).active_buffers).to.equal(3);
    await store.delete('a');
    await store.create('d');
  });

  it('reports full at the byte cap, keeping the chunk that crossed it', async () => {
    await store.create('s');
    const big = 'x'.repeat(100);
    expect((await store.append('s', text(0, big))).full).to.equal(false);
    expect((await store.append('s', text(1, big))).full).to.equal(true);
    await store.append('s', { ...final(2), finish_reason: 'error' });
    const { chunks } = await store.poll('s');
    expect(chunks.map((c) => c.seq)).to.deep.equal([0, 1, 2]);
  });

  it('reports full for a buffer that is gone, so its producer stops', async () => {
    await store.create('s');
    await store.delete('s');
    expect((await store.append('s', text(0, 'a'))).full).to.equal(true);
  });

  it('counts the bytes buffered and frees them when acknowledged', async () => {
    await store.create('a');
    await store.create('b');
    await store.append('a', text(0, 'xy'));
    await store.append('b', text(0, 'z'));
    expect(await store.status()).to.deep.equal({ active_buffers: 2, buffered_bytes: 2 + 48 + 1 + 48 });
    await store.poll('a');
    expect((await store.status()).buffered_bytes).to.equal(1 + 48);
  });

  it('finds live buffers by request id, keeping id types apart', async () => {
    await store.create('a', { requestKey: requestKey(7) });
    await store.create('b', { requestKey: requestKey('7') });
    expect(await store.findByRequest(requestKey(7))).to.deep.equal(['a']);
    expect(await store.findByRequest(requestKey('7'))).to.deep.equal(['b']);
    expect(await store.findByRequest(requestKey(null))).to.deep.equal([]);
    await store.delete('a');
    expect(await store.findByRequest(requestKey(7))).to.deep.equal([]);
  });

  it('wakes a waiting poll as soon as a chunk arrives, and when the stream ends', async () => {
    await store.create('s');
    let woke = false;
    const waiting = store.wait('s', undefined, 60_000).then(() => (woke = true));
    await Promise.resolve();
    expect(woke).to.equal(false);
    await store.append('s', text(0, 'a'));
    await waiting;
    expect(woke).to.equal(true);

    const untilEnd = store.wait('s', 0, 60_000);
    await store.append('s', final(1));
    await untilEnd;
  });

  it('returns from a wait at once when something is already there, and at its deadline otherwise', async () => {
    await store.create('s');
    await store.append('s', text(0, 'a'));
    await store.wait('s', -1, 60_000);
    await store.wait('s', 0, 20);
    expect((await store.poll('s', 0)).chunks).to.deep.equal([]);
  });

  it('ends a wait when its signal aborts (the client went away)', async () => {
    await store.create('s');
    const controller = new AbortController();
    const started = performance.now();
    const waiting = store.wait('s', undefined, 60_000, controller.signal);
    controller.abort();
    await waiting;
    expect(performance.now() - started, 'long before the wait would time out').to.be.below(10_000);
    expect((await store.poll('s')).chunks).to.deep.equal([]);
  });

  it('refuses to wait on an unknown stream', async () => {
    const err = await rejection(store.wait('never', undefined, 1000));
    expect(err.name).to.equal('STREAM_NOT_FOUND');
  });

  it('closes twice without harm, by close and by Symbol.asyncDispose', async () => {
    await store.create('s');
    await store.close();
    const closed = await store.status();
    await store.close();
    await store[Symbol.asyncDispose]();
    expect(await store.status()).to.deep.equal(closed);
  });
}
