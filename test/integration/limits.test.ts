// Per-client limits through real sockets: request rate, concurrent streams, connections per transport, idle timeouts.
import { expect } from 'chai';
import { connect } from 'node:net';
import { TINY_MODEL_PROMPTS } from '../../src/gguf/builtin.js';
import { TcpRpc, WsRpc, hostPort } from '../helpers/live-rpc.js';
import { liveFixture } from '../helpers/fixture.js';
import { HttpRpc } from '../helpers/rpc.js';
import { greedy } from '../helpers/prompts.js';

const KEY_A = 'alpha-key-0123456789abcdef';
const KEY_B = 'bravo-key-0123456789abcdef';
const bearer = (key: string): Record<string, string> => ({ authorization: `Bearer ${key}` });
const LONG = { prompt_input: TINY_MODEL_PROMPTS.long, max_new_tokens: 2000, ...greedy };

describe('Limits per client', function () {
  this.timeout(120_000);

  describe('request rate, per key', () => {
    const fixture = liveFixture({ settings: { auth: { api_keys: [KEY_A, KEY_B] }, limits: { requests_per_second: 1, request_burst: 3 } } });

    it('past the burst a key is refused with 429, Retry-After and retry_after; another key is not affected', async () => {
      const a = new HttpRpc(fixture.server.url, bearer(KEY_A));
      for (let i = 0; i < 3; i++) await a.result('rkllm_is_running', {});
      const refused = await a.raw(JSON.stringify({ jsonrpc: '2.0', id: 4, method: 'rkllm_is_running' }));
      expect(refused.status).to.equal(429);
      expect(refused.headers.get('retry-after')).to.equal('1');
      const { error } = refused.body;
      expect(error.code).to.equal(-32016);
      expect(error.data.limit).to.equal('limits.requests_per_second');
      expect(error.data.retry_after).to.be.greaterThan(0).and.at.most(1);
      expect(await new HttpRpc(fixture.server.url, bearer(KEY_B)).result('rkllm_is_running', {})).to.include({ running: false });
    });

    it('the key is limited the same on TCP', async () => {
      const b = fixture.track(await fixture.server.tcp());
      for (let id = 1; id <= 4; id++) b.sendRaw(JSON.stringify({ jsonrpc: '2.0', id, method: 'rkllm_is_running', api_key: KEY_B }));
      const answers = await Promise.all([1, 2, 3, 4].map((id) => b.next(id)));
      const refused = answers.filter((r) => r.error?.code === -32016);
      expect(refused).to.have.lengthOf.at.least(1);
      expect(refused[0]!.error!.data.retry_after).to.be.greaterThan(0);
    });
  });

  describe('concurrent streams, per address without keys', () => {
    const fixture = liveFixture({ settings: { limits: { max_streams: 1 }, engine: { parallel: 2 } } });

    it('a second stream is refused while the first runs, with retry_after; once it has ended, a new one starts', async () => {
      const http = new HttpRpc(fixture.server.url);
      const { stream_id } = await http.start(LONG);
      for (const method of ['rkllm_run_async', 'rkllm_run']) {
        const { error } = await http.call(method, { prompt_input: 'The King', max_new_tokens: 3 });
        expect(error, method).to.deep.include({ code: -32016 });
        expect(error!.data).to.deep.equal({ limit: 'limits.max_streams', retry_after: 1 });
      }
      await http.result('rkllm_abort', { stream_id });
      await http.drain(stream_id);
      const again = await http.start({ prompt_input: 'The King', max_new_tokens: 3, ...greedy });
      expect((await http.drain(again.stream_id)).last.finish_reason).to.equal('length');
    });

    it('streams on live transports count too', async () => {
      const http = new HttpRpc(fixture.server.url);
      const { stream_id } = await http.start(LONG);
      const tcp = fixture.track(await fixture.server.tcp());
      const refused = await tcp.call('rkllm_run_async', { prompt_input: 'The King', max_new_tokens: 3 });
      expect(refused.error!.data.limit).to.equal('limits.max_streams');
      await http.result('rkllm_abort', { stream_id });
      await http.drain(stream_id);
    });
  });

  describe('connections per transport, and idle timeouts', () => {
    const fixture = liveFixture({
      settings: { limits: { max_connections: 2 }, connections: { idle_timeout_s: 1 }, engine: { parallel: 1, max_context_len: 8192 } },
    });

    it('tcp: the connection beyond the limit is told why, with retry_after, and closed', async () => {
      const address = fixture.server.addresses.tcp!;
      for (let i = 0; i < 2; i++) await fixture.track(await TcpRpc.connect(address)).result('rkllm_is_running', {});
      const third = fixture.track(await TcpRpc.connect(address));
      const { error } = await third.next(null);
      expect(error!.code).to.equal(-32016);
      expect(error!.message).to.include('Too many TCP connections: at most 2 per client');
      expect(error!.data).to.deep.equal({ limit: 'limits.max_connections', retry_after: 1 });
      await third.closed;
    });

    it('ws: the connection beyond the limit is told why and closed with 1013', async () => {
      const address = fixture.server.addresses.ws!;
      for (let i = 0; i < 2; i++) await fixture.track(await WsRpc.connect(address)).result('rkllm_is_running', {});
      const third = fixture.track(await WsRpc.connect(address));
      expect((await third.next(null)).error!.data.limit).to.equal('limits.max_connections');
      expect((await third.closed).code).to.equal(1013);
    });

    it('a closed connection frees its place', async () => {
      const address = fixture.server.addresses.tcp!;
      const first = await TcpRpc.connect(address);
      fixture.track(await TcpRpc.connect(address));
      await first.close();
      for (let attempt = 0; attempt < 50; attempt++) {
        const next = fixture.track(await TcpRpc.connect(address));
        const answer = await next.next(next.send('rkllm_is_running', {}), 500).catch(() => undefined);
        if (answer?.result) return;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      throw new Error('the freed place was never given to a new connection');
    });

    it('http: requests in progress beyond the limit get 429 with Retry-After', async () => {
      const http = new HttpRpc(fixture.server.url);
      const running = await http.start({ ...LONG, max_new_tokens: 8000 });
      const queued = await http.start(LONG);
      const waiting = [1, 2].map(() => http.call('poll', { stream_id: queued.stream_id, wait_ms: 2000 }));
      let refused: Awaited<ReturnType<HttpRpc['raw']>> | undefined;
      for (let attempt = 0; attempt < 100 && refused?.status !== 429; attempt++) {
        refused = await http.raw(JSON.stringify({ jsonrpc: '2.0', id: 'x', method: 'rkllm_is_running' }));
      }
      expect(refused!.status).to.equal(429);
      expect(refused!.headers.get('retry-after')).to.equal('1');
      expect(refused!.body.error.message).to.include('Too many HTTP requests in progress: at most 2 per client');
      await Promise.all(waiting);
      await http.result('rkllm_abort', { stream_id: queued.stream_id });
      await http.result('rkllm_abort', { stream_id: running.stream_id });
    });

    it('http: an idle keep-alive connection is closed after connections.idle_timeout_s', async () => {
      const { host, port } = hostPort(fixture.server.addresses.http!);
      const socket = connect({ host, port });
      let reply = '';
      socket.on('data', (d: Buffer) => (reply += d.toString()));
      const closed = new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('the idle connection was not closed')), 10_000);
        socket.once('close', () => {
          clearTimeout(timer);
          resolve();
        });
      });
      socket.write('GET /health HTTP/1.1\r\nHost: test\r\nConnection: keep-alive\r\n\r\n');
      await closed;
      expect(reply)
        .to.match(/^HTTP\/1\.1 200 /)
        .and.include('keep-alive');
    });
  });
});
