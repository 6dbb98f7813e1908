// Bad input on the live transports: each gets the right error and the server keeps serving everyone.
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { TINY_MODEL_PROMPTS } from '../../src/gguf/builtin.js';
import { liveFixture } from '../helpers/fixture.js';
import { TcpRpc, WsRpc } from '../helpers/live-rpc.js';
import { greedy } from '../helpers/prompts.js';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const LIMIT = 4096;
const IDLE = { running: false, active: 0, queued: 0 };

describe('Bad input on the live transports', function () {
  this.timeout(120_000);
  const fixture = liveFixture({ settings: { tcp: { max_line_bytes: LIMIT }, ws: { max_message_bytes: LIMIT } } });
  const tcp = async (): Promise<TcpRpc> => fixture.track(await fixture.server.tcp());
  const ws = async (): Promise<WsRpc> => fixture.track(await fixture.server.ws());

  afterEach(async () => {
    // Whatever a test did, the server still serves everyone else.
    expect(await fixture.http.result('rkllm_is_running', {})).to.deep.equal(IDLE);
  });

  it('tcp: a line that arrives in pieces is read whole', async () => {
    const client = await tcp();
    for (const piece of ['{"jsonrpc":"2.0",', '"id":"pieces","method":"rkllm_is', '_running"}\n']) {
      await new Promise<void>((resolve, reject) => client.socket.write(piece, (err) => (err ? reject(err) : resolve())));
      // A round trip on another connection: the server's loop has read this piece before the next one is written.
      await fixture.http.result('rkllm_is_running', {});
    }
    expect((await client.next('pieces')).result).to.deep.equal(IDLE);
  });

  it('tcp: a partial last line before the client half-closes is answered -32700, then the connection is closed', async () => {
    const client = await tcp();
    client.socket.end('{"jsonrpc":"2.0","id":1,"method":"rkll');
    expect((await client.next(null)).error!.code).to.equal(-32700);
    await client.closed;
  });

  it('tcp: binary garbage gets -32700 per line and the connection stays usable', async () => {
    const client = await tcp();
    const garbage = Buffer.concat([randomBytes(500), Buffer.from('\n\xff\xfe\n'), Buffer.from([0xc3, 0x28, 0x0a])]);
    const lines = garbage
      .toString('latin1')
      .split('\n')
      .filter((l) => l.trim() !== '').length;
    client.socket.write(garbage);
    client.socket.write('\n');
    for (let i = 0; i < lines; i++) expect((await client.next(null)).error!.code).to.equal(-32700);
    expect(await client.result('rkllm_is_running', {})).to.deep.equal(IDLE);
  });

  it('tcp: a line over the limit is answered -32600 naming the limit, then the connection is closed', async () => {
    const client = await tcp();
    client.socket.write(`{"jsonrpc":"2.0","id":1,"method":"rkllm_is_running","params":{"pad":"${'x'.repeat(LIMIT)}"}}\n`);
    const res = await client.next(null);
    expect(res.error!.code).to.equal(-32600);
    expect(res.error!.message).to.include(`exceeds the limit of ${LIMIT} bytes (setting tcp.max_line_bytes)`);
    await client.closed;
  });

  it('tcp: an endless line without a newline is cut off at the limit', async () => {
    const client = await tcp();
    client.socket.write(randomBytes(LIMIT * 4).map((b) => (b === 0x0a ? 0x20 : b)));
    expect((await client.next(null)).error!.code).to.equal(-32600);
    await client.closed;
  });

  it('tcp: thousands of pipelined requests are all answered, malformed lines with -32700', async () => {
    const client = await tcp();
    const lines: string[] = [];
    for (let id = 1; id <= 3000; id++) {
      lines.push(JSON.stringify({ jsonrpc: '2.0', id, method: 'rkllm_is_running' }));
      if (id % 100 === 0) lines.push('{ not json');
    }
    client.socket.write(`${lines.join('\n')}\n`);
    for (let id = 1; id <= 3000; id++) expect((await client.next(id)).result).to.deep.equal(IDLE);
    for (let i = 0; i < 30; i++) expect((await client.next(null)).error!.code).to.equal(-32700);
    expect(client.received).to.have.lengthOf(3030);
  });

  it('ws: a binary frame is answered -32600 and the connection stays usable', async () => {
    const client = await ws();
    client.sendRaw(Buffer.from(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'rkllm_is_running' })));
    const res = await client.next(null);
    expect(res.error!.code).to.equal(-32600);
    expect(res.error!.message).to.match(/binary frames are not accepted/);
    expect(await client.result('rkllm_is_running', {})).to.deep.equal(IDLE);
  });

  it('ws: a text frame of invalid UTF-8 or not JSON gets -32700 and the connection stays usable', async () => {
    const client = await ws();
    client.ws.send(Buffer.from([0x7b, 0xc3, 0x28, 0x7d]), { binary: false });
    expect((await client.next(null)).error!.message).to.match(/not valid UTF-8/);
    client.sendRaw('{"jsonrpc":');
    expect((await client.next(null)).error!.code).to.equal(-32700);
    expect(await client.result('rkllm_is_running', {})).to.deep.equal(IDLE);
  });

  it('ws: a message over the limit closes the connection with 1009 (Message Too Big)', async () => {
    const client = await ws();
    client.sendRaw(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'rkllm_is_running', params: { pad: 'x'.repeat(LIMIT) } }));
    expect((await client.closed).code).to.equal(1009);
  });
});

describe('Connection limits and idle timeouts', function () {
  this.timeout(120_000);
  const fixture = liveFixture({
    settings: { engine: { parallel: 1, max_context_len: 8192 }, diagnostics: true, connections: { max_connections: 3, idle_timeout_s: 1 } },
  });

  it('tcp: silent connections are bounded by the limit and closed when idle, with the reason', async () => {
    const silent = await Promise.all([1, 2, 3].map(() => fixture.server.tcp()));
    const refused = await fixture.server.tcp();
    [...silent, refused].forEach(fixture.track);
    const res = await refused.next(null);
    expect(res.error!.code).to.equal(-32011);
    expect(res.error!.message).to.include('limit of 3 TCP connections (setting connections.max_connections)');
    await refused.closed;
    expect(await fixture.http.result('rkllm_is_running', {})).to.deep.equal(IDLE);
    for (const client of silent) {
      const closing = await client.next(null);
      expect(closing.error!.code).to.equal(-32012);
      expect(closing.error!.message).to.include('for 1 s (setting connections.idle_timeout_s)');
      await client.closed;
    }
    // The server notices the closes a moment after the clients do; then there is room again.
    for (let attempt = 0; ; attempt++) {
      const fresh = await fixture.server.tcp();
      fixture.track(fresh);
      const answer = await fresh.next(fresh.send('rkllm_is_running', {}), 1000).catch(() => undefined);
      if (answer) {
        expect(answer.result).to.deep.equal(IDLE);
        break;
      }
      expect(fresh.pending(null)[0]?.error?.code).to.equal(-32011);
      expect(attempt, 'a slot frees up').to.be.below(20);
      await sleep(50);
    }
  });

  it('ws: the connection beyond the limit is closed with 1013 and the reason; idle ones are closed', async () => {
    const silent = await Promise.all([1, 2, 3].map(() => fixture.server.ws()));
    const refused = await fixture.server.ws();
    [...silent, refused].forEach(fixture.track);
    expect((await refused.next(null)).error!.code).to.equal(-32011);
    expect(await refused.closed).to.deep.equal({ code: 1013, reason: 'TOO_MANY_CONNECTIONS' });
    for (const client of silent) expect((await client.closed).reason).to.equal('CONNECTION_IDLE');
  });

  it('a connection with work in progress is not closed as idle, however long the work takes', async () => {
    const client = fixture.track(await fixture.server.tcp());
    // A request in progress: a long poll, longer than the idle timeout, on a stream that stays silent.
    const mock_chunks = [{ seq: 0, delta: 'a', end: false }];
    const silent = await fixture.http.result('test_http_buffer_manager', { request_id: 'silent', mock_chunks });
    expect(await client.result('poll', { stream_id: silent.stream_id, after_seq: 0, wait_ms: 1500 })).to.deep.equal({ chunk: null });
    // A live stream waiting in the queue: nothing crosses the connection until it starts.
    const blocker = await fixture.http.start({ prompt_input: TINY_MODEL_PROMPTS.long, max_new_tokens: 8000, ...greedy });
    const id = client.send('rkllm_run_async', { prompt_input: 'The fox', max_new_tokens: 5, ...greedy });
    // A connection opened after that request, with nothing to do: once the server closes it as idle,
    // the busy connection has been quiet for longer than the idle timeout too.
    const idle = fixture.track(await fixture.server.tcp());
    expect((await idle.next(null, 10_000)).error!.code).to.equal(-32012);
    await idle.closed;
    expect(client.socket.destroyed, 'the busy connection is still open').to.equal(false);
    await fixture.http.result('rkllm_abort', { stream_id: blocker.stream_id });
    expect((await client.collect(id)).last.finish_reason).to.equal('length');
  });
});
