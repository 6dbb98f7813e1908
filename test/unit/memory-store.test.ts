// Unit tests of the in-memory buffer store. Time is a controlled clock: nothing sleeps to wait
// for an expiry.
import { expect } from 'chai';
import { RpcError } from '../../src/jsonrpc/errors.js';
import { requestKey } from '../../src/streams/buffer-store.js';
import { MemoryBufferStore } from '../../src/streams/memory-store.js';
import type { Chunk } from '../../src/streams/stream.js';

const text = (seq: number, delta: string): Chunk => ({ seq, delta, end: false });
const final = (seq: number): Chunk => ({ seq, delta: '', end: true, finish_reason: 'stop' });

async function rejection(promise: Promise<unknown>): Promise<RpcError> {
  try {
    await promise;
  } catch (err) {
    expect(err).to.be.instanceOf(RpcError);
    return err as RpcError;
  }
  throw new Error('expected a rejection');
}

describe('MemoryBufferStore', () => {
  let now: number;
  let store: MemoryBufferStore;

  beforeEach(() => {
    now = 1_000_000;
    store = new MemoryBufferStore({
      limits: { maxBuffers: 3, maxBufferBytes: 200, bufferTimeoutMs: 60_000 },
      now: () => now,
    });
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

  it('refuses after_seq beyond what was sent, and before what was released', async () => {
    await store.create('s');
    await store.append('s', text(0, 'a'));
    await store.append('s', text(1, 'b'));
    const beyond = await rejection(store.poll('s', 5));
    expect(beyond.code).to.equal(-32602);
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
    expect(err.code).to.equal(-32001);
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

  it('expires a buffer not polled for buffer_timeout, and tells unknown from expired', async () => {
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

  it('refuses a new buffer beyond max_buffers and never evicts a live one', async () => {
    for (const id of ['a', 'b', 'c']) await store.create(id);
    const err = await rejection(store.create('d'));
    expect(err.code).to.equal(-32002);
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

  it('finds live buffers by request id, keeping id types apart', async () => {
    await store.create('a', { requestKey: requestKey(7) });
    await store.create('b', { requestKey: requestKey('7') });
    expect(await store.findByRequest(requestKey(7))).to.deep.equal(['a']);
    expect(await store.findByRequest(requestKey('7'))).to.deep.equal(['b']);
    expect(await store.findByRequest(requestKey(null))).to.deep.equal([]);
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

  it('ends a wait when its signal aborts (the client went away)', async () => {
    await store.create('s');
    const controller = new AbortController();
    const waiting = store.wait('s', undefined, 60_000, controller.signal);
    controller.abort();
    await waiting;
  });
});
