// API keys on every transport, and streams kept apart between keys.
import { expect } from 'chai';
import { WebSocket } from 'ws';
import { TINY_MODEL_PROMPTS } from '../../src/gguf/builtin.js';
import { TcpRpc, UdpRpc, WsRpc, type LiveRpc } from '../helpers/live-rpc.js';
import { HttpRpc } from '../helpers/rpc.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { greedy } from '../helpers/prompts.js';

const KEY_A = 'alpha-key-0123456789abcdef';
const KEY_B = 'bravo-key-0123456789abcdef';
const ADMIN = 'admin-key-0123456789abcdef';
const bearer = (key: string): Record<string, string> => ({ authorization: `Bearer ${key}` });
const UNAUTHORIZED = { code: -32015, message: 'Unauthorized: a valid API key is required' };
const LONG = { prompt_input: TINY_MODEL_PROMPTS.long, max_new_tokens: 2000, ...greedy };

/** The HTTP status of a WebSocket handshake that the server refuses, or "open" when it accepts it. */
function handshake(address: string, headers: Record<string, string>): Promise<number | 'open'> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://${address}/`, { headers });
    ws.once('open', () => {
      ws.terminate();
      resolve('open');
    });
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => {
        expect(JSON.parse(body).error).to.deep.equal(UNAUTHORIZED);
        resolve(res.statusCode ?? 0);
      });
    });
    ws.once('error', (err) => (err.message.includes('Unexpected server response') ? undefined : reject(err)));
  });
}

describe('Authentication with API keys', function () {
  this.timeout(120_000);
  let server: TestServer;
  let a: HttpRpc;
  let b: HttpRpc;
  const clients: LiveRpc[] = [];
  const track = <T extends LiveRpc>(client: T): T => {
    clients.push(client);
    return client;
  };

  before(async () => {
    server = await startTestServer({ settings: { engine: { parallel: 2 }, auth: { api_keys: [KEY_A, KEY_B], admin_keys: [ADMIN] } } });
    a = new HttpRpc(server.url, bearer(KEY_A));
    b = new HttpRpc(server.url, bearer(KEY_B));
  });
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await a.call('rkllm_abort', {});
  });
  after(async () => {
    await server?.close();
  });

  describe('HTTP', () => {
    it('a missing or wrong key gets 401 with one error that says nothing more, before the body is read', async () => {
      const anonymous = new HttpRpc(server.url);
      const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'rkllm_is_running' });
      const answers = [
        await anonymous.raw(body),
        await anonymous.raw(body, bearer('wrong-key-0123456789abcdef')),
        await anonymous.raw(body, { authorization: KEY_A }),
      ];
      for (const answer of answers) {
        expect(answer.status).to.equal(401);
        expect(answer.headers.get('www-authenticate')).to.equal('Bearer');
        expect(answer.body).to.deep.equal({ jsonrpc: '2.0', id: null, error: UNAUTHORIZED });
      }
      expect(answers[1]!.text).to.equal(answers[0]!.text);
    });

    it('a valid key is served; a wrong api_key member is refused too', async () => {
      expect(await a.result('rkllm_is_running', {})).to.include({ running: false });
      const res = await a.raw(JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'rkllm_is_running', api_key: 'wrong-key-0123456789abcdef' }));
      expect(res.status).to.equal(401);
      expect(res.body).to.deep.equal({ jsonrpc: '2.0', id: 7, error: UNAUTHORIZED });
    });

    it('GET /health needs no key; GET /metrics needs an admin key', async () => {
      expect((await fetch(`${server.url}health`)).status).to.equal(200);
      const refused = await fetch(`${server.url}metrics`);
      expect(refused.status).to.equal(401);
      expect(((await refused.json()) as any).error).to.deep.equal(UNAUTHORIZED);
      const user = await fetch(`${server.url}metrics`, { headers: bearer(KEY_A) });
      expect(user.status).to.equal(403);
      expect(((await user.json()) as any).error.code).to.equal(-32018);
      const metrics = await fetch(`${server.url}metrics`, { headers: bearer(ADMIN) });
      expect(metrics.status).to.equal(200);
      expect(await metrics.text()).to.include('rkllm_tokens_generated_total');
    });
  });

  describe('WebSocket', () => {
    it('a wrong key in the handshake gets 401; a valid one opens a served connection', async () => {
      expect(await handshake(server.addresses.ws!, bearer('wrong-key-0123456789abcdef'))).to.equal(401);
      const client = track(await WsRpc.connect(server.addresses.ws!, bearer(KEY_A)));
      expect(await client.result('rkllm_is_running', {})).to.include({ running: false });
    });

    it('without the header every request is refused until authenticate', async () => {
      const client = track(await WsRpc.connect(server.addresses.ws!));
      expect((await client.call('rkllm_is_running', {})).error).to.deep.equal(UNAUTHORIZED);
      expect((await client.call('authenticate', { api_key: 'wrong-key-0123456789abcdef' })).error).to.deep.equal(UNAUTHORIZED);
      expect(await client.result('authenticate', { api_key: KEY_B })).to.deep.equal({ authenticated: true });
      expect(await client.result('rkllm_is_running', {})).to.include({ running: false });
    });
  });

  describe('TCP', () => {
    it('requests are refused until authenticate; then the connection is served', async () => {
      const client = track(await TcpRpc.connect(server.addresses.tcp!));
      expect((await client.call('rkllm_is_running', {})).error).to.deep.equal(UNAUTHORIZED);
      expect((await client.call('authenticate', { api_key: 'wrong-key-0123456789abcdef' })).error).to.deep.equal(UNAUTHORIZED);
      await client.result('authenticate', { api_key: KEY_A });
      const live = await client.stream({ prompt_input: 'The Queen said', max_new_tokens: 5, ...greedy });
      expect(live.last).to.include({ end: true, finish_reason: 'length' });
      const other = (await client.call('authenticate', { api_key: KEY_B })).error!;
      expect(other.message).to.include('already authenticated with another key');
    });

    it('an api_key member authenticates a single request', async () => {
      const client = track(await TcpRpc.connect(server.addresses.tcp!));
      client.sendRaw(JSON.stringify({ jsonrpc: '2.0', id: 'k', method: 'rkllm_is_running', api_key: KEY_A }));
      expect((await client.next('k')).result).to.include({ running: false });
      expect((await client.call('rkllm_is_running', {})).error).to.deep.equal(UNAUTHORIZED);
    });
  });

  describe('UDP', () => {
    it('every datagram carries its key in api_key; authenticate is refused, pointing there', async () => {
      const client = track(await UdpRpc.connect(server.addresses.udp!));
      expect((await client.call('rkllm_is_running', {})).error).to.deep.equal(UNAUTHORIZED);
      client.sendRaw(JSON.stringify({ jsonrpc: '2.0', id: 'u', method: 'rkllm_is_running', api_key: KEY_A }));
      expect((await client.next('u')).result).to.include({ running: false });
      const refused = (await client.call('authenticate', { api_key: KEY_A })).error!;
      expect(refused.code).to.equal(-32600);
      expect(refused.message).to.include('over UDP put "api_key" in every request');
    });
  });

  describe('Streams belong to the key that started them', () => {
    it('another key can neither poll nor abort them, by stream id or request id, and hears what it would of an unknown stream', async () => {
      const { stream_id } = await a.start(LONG, 'shared-id');
      const own = await b.start({ prompt_input: 'The King', max_new_tokens: 3 }, 'shared-id');
      const mine = await b.result('poll', { request_id: 'shared-id', after_seq: -1, wait_ms: 2000 });
      expect(mine.chunk.stream_id, 'a request id shared by two keys is not ambiguous').to.equal(own.stream_id);
      await b.drain(own.stream_id);
      const unknown = stream_id.replace(/^st_./, (p) => `st_${p.at(-1) === 'x' ? 'y' : 'x'}`);
      const unknownError = (await b.call('poll', { stream_id: unknown })).error!;
      const theirs = (await b.call('poll', { stream_id })).error!;
      expect(theirs).to.deep.equal({
        ...unknownError,
        message: unknownError.message.replace(unknown, stream_id),
        data: { ...unknownError.data, stream_id },
      });
      expect((await b.call('rkllm_abort', { stream_id })).error!.code).to.equal(-32001);
      expect(await b.result('rkllm_abort', {}), 'abort without parameters stops only its own').to.include({ aborted: 0 });
      expect((await b.call('poll', { request_id: 'shared-id' })).error!.code).to.equal(-32001);
      expect(await a.result('rkllm_is_running', {})).to.include({ running: true });
      expect(await a.result('rkllm_abort', { request_id: 'shared-id' })).to.deep.equal({ aborted: 1, stream_id });
      expect((await a.drain(stream_id)).last.finish_reason).to.equal('abort');
    });

    it('another key cannot attach to them on a live connection', async () => {
      const { stream_id } = await a.start({ ...LONG, max_new_tokens: 50 });
      const thief = track(await TcpRpc.connect(server.addresses.tcp!));
      await thief.result('authenticate', { api_key: KEY_B });
      expect((await thief.call('rkllm_stream_attach', { stream_id, after_seq: -1 })).error!.code).to.equal(-32001);
      const owner = track(await WsRpc.connect(server.addresses.ws!, bearer(KEY_A)));
      const attached = await owner.collect(owner.send('rkllm_stream_attach', { stream_id, after_seq: -1 }));
      expect(attached.last).to.include({ end: true, finish_reason: 'length' });
    });
  });
});

describe('Exposure warning', function () {
  this.timeout(60_000);

  for (const [keys, warned] of [
    [[], true],
    [[KEY_A], false],
  ] as const) {
    it(`binding beyond loopback ${warned ? 'without keys warns' : 'with keys does not warn'}`, async () => {
      const server = await startTestServer({
        settings: {
          host: '0.0.0.0',
          udp: { enabled: false },
          ws: { enabled: false },
          tcp: { enabled: false },
          auth: { api_keys: [...keys] },
        },
      });
      try {
        expect(server.log.text().includes('listening beyond this machine without API keys')).to.equal(warned);
        expect(server.log.lines.some((l) => l.level === 40 && l.host === '0.0.0.0')).to.equal(warned);
      } finally {
        await server.close();
      }
    });
  }
});
