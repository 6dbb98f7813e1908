// Issue 14, hardening: client paths confined to the operator's folders, no cross-origin browsers,
// per-key conversations and views, admin keys, unauthenticated connections and slow bodies held
// short, and no UDP amplification beyond loopback.
import { expect } from 'chai';
import { createSocket } from 'node:dgram';
import { mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { TINY_MODEL_PROMPTS } from '../../src/gguf/builtin.js';
import { hostPort } from '../helpers/live-rpc.js';
import { HttpRpc, type RpcResponse } from '../helpers/rpc.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const KEY_A = 'alpha-key-0123456789abcdef';
const KEY_B = 'bravo-key-0123456789abcdef';
const ADMIN = 'admin-key-0123456789abcdef';
const bearer = (key: string): Record<string, string> => ({ authorization: `Bearer ${key}` });
const GREEDY = { top_k: 1, temperature: 0 };

/** One HTTP request with exactly these headers (fetch would not send `Origin` as given). */
function httpRequest(
  url: string,
  options: { method?: string; headers?: Record<string, string>; body?: string },
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: options.method ?? 'POST', headers: options.headers ?? {} }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

/** The status of a WebSocket handshake: "open" when accepted. */
function wsHandshake(address: string, origin: string | undefined): Promise<number | 'open'> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://${address}/`, origin === undefined ? {} : { origin });
    ws.once('open', () => {
      ws.terminate();
      resolve('open');
    });
    ws.once('unexpected-response', (_req, res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    ws.once('error', (err) => (err.message.includes('Unexpected server response') ? undefined : reject(err)));
  });
}

/** Everything a raw TCP connection receives until the server closes it. */
function tcpUntilClosed(address: string, timeoutMs: number): Promise<{ text: string; ms: number }> {
  const { host, port } = hostPort(address);
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const socket = connect(port, host);
    let text = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`the server kept the connection open for ${timeoutMs} ms`));
    }, timeoutMs);
    socket.on('data', (d: Buffer) => (text += d.toString()));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ text, ms: Date.now() - started });
    });
  });
}

const rpc = (method: string, params: unknown, id: number | string = 1, extra: Record<string, unknown> = {}): string =>
  JSON.stringify({ jsonrpc: '2.0', id, method, params, ...extra });

/**
 * A UDP client that records every datagram with its size. `exchange` sends a datagram, then a
 * marker request answered for sure; everything received before the marker's reply is what the
 * first datagram got (the server answers datagrams in order).
 */
class UdpProbe {
  readonly #socket = createSocket('udp4');
  readonly #to: { host: string; port: number };
  #received: Buffer[] = [];
  #onMessage: (() => void) | undefined;

  constructor(address: string) {
    const { port } = hostPort(address);
    this.#to = { host: '127.0.0.1', port };
    this.#socket.on('message', (data) => {
      this.#received.push(data);
      this.#onMessage?.();
    });
  }

  async open(): Promise<void> {
    await new Promise<void>((resolve) => this.#socket.bind(0, '127.0.0.1', resolve));
  }

  /** Sends `datagram`, then `marker` (whose reply carries id "marker"); returns what came back before the marker's reply. */
  async exchange(datagram: string, marker: string): Promise<Buffer[]> {
    this.#received = [];
    const markerSeen = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no reply to the marker within 10 s')), 10_000);
      this.#onMessage = () => {
        const last = this.#received.at(-1)!;
        if ((JSON.parse(last.toString()) as RpcResponse).id !== 'marker') return;
        clearTimeout(timer);
        resolve();
      };
    });
    this.#socket.send(Buffer.from(datagram), this.#to.port, this.#to.host);
    this.#socket.send(Buffer.from(marker), this.#to.port, this.#to.host);
    await markerSeen;
    return this.#received.slice(0, -1);
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.#socket.close(() => resolve()));
  }
}

describe('Security (issue 14)', function () {
  this.timeout(120_000);

  describe('client paths, without any setting (the reproduction)', () => {
    let server: TestServer;
    let dir: string;
    before(async () => {
      dir = mkdtempSync(join(tmpdir(), 'rkllm-sec-'));
      server = await startTestServer({ settings: { engine: { parallel: 1 } } });
    });
    after(async () => server?.close());

    it('a run over UDP cannot save a prompt cache over a file outside the caches folder', async () => {
      const victim = join(dir, 'victim.txt');
      writeFileSync(victim, 'precious\n');
      const udp = await server.udp();
      try {
        const params = {
          prompt_input: 'What is AI?',
          max_new_tokens: 2,
          prompt_cache_params: { save_prompt_cache: 1, prompt_cache_path: victim },
        };
        const id = udp.send('rkllm_run_async', params);
        const reply = await udp.next(id);
        expect(reply.error?.code, JSON.stringify(reply)).to.equal(-32602);
        expect(reply.error?.data?.reason).to.equal('path_refused');
        // A stream that was (wrongly) started would save on its first chunk; read it to its end before looking.
        if (!reply.error) await udp.collect(id);
      } finally {
        await udp.close();
      }
      expect(readFileSync(victim, 'utf8')).to.equal('precious\n');
    });

    it('/etc/passwd, a missing file and ".." get the same refusal, for every method that takes a path', async () => {
      const cases: Array<[string, string]> = [
        ['rkllm_load_prompt_cache', 'prompt_cache_path'],
        ['rkllm_load_lora', 'lora_adapter_path'],
        ['rkllm_init', 'model_path'],
      ];
      for (const [method, field] of cases) {
        const extra = method === 'rkllm_load_lora' ? { lora_adapter_name: 'x' } : {};
        const errors = [];
        for (const path of ['/etc/passwd', join(dir, 'missing.bin'), '../../../../../../etc/passwd', '../missing.bin', 'a/../../b']) {
          const res = await server.http.call(method, { [field]: path, ...extra });
          errors.push(res.error);
        }
        expect(errors[0]?.code, `${method}: ${JSON.stringify(errors[0])}`).to.equal(-32602);
        expect(errors[0]?.data).to.deep.equal({ reason: 'path_refused' });
        for (const error of errors) expect(error, method).to.deep.equal(errors[0]);
      }
    });
  });

  describe('client paths inside the configured folders', () => {
    let server: TestServer;
    let caches: string;
    let outside: string;
    before(async () => {
      const root = mkdtempSync(join(tmpdir(), 'rkllm-sec-folders-'));
      caches = join(root, 'caches');
      outside = join(root, 'outside');
      mkdirSync(caches);
      mkdirSync(outside);
      writeFileSync(join(outside, 'victim.txt'), 'precious\n');
      symlinkSync(outside, join(caches, 'out'));
      const settings = {
        engine: { parallel: 1 },
        folders: { prompt_caches: caches, models: join(root, 'models'), lora_adapters: join(root, 'lora') },
      };
      server = await startTestServer({ settings });
    });
    after(async () => server?.close());

    it('a name saves and loads inside the folder; a symlink out of it is refused like any other path', async () => {
      const cache = { save_prompt_cache: 1, prompt_cache_path: 'greeting.cache' };
      await server.http.result('rkllm_run', { prompt_input: 'What is AI?', max_new_tokens: 2, prompt_cache_params: cache });
      expect(readFileSync(join(caches, 'greeting.cache')).subarray(0, 4).toString('latin1')).to.equal('qsgg');
      expect(await server.http.result('rkllm_load_prompt_cache', { prompt_cache_path: 'greeting.cache' })).to.deep.include({
        loaded: true,
      });
      await server.http.result('rkllm_release_prompt_cache', {});

      const refusals = [];
      for (const path of ['out/victim.txt', 'out/missing.txt', '/etc/passwd']) {
        refusals.push((await server.http.call('rkllm_load_prompt_cache', { prompt_cache_path: path })).error);
      }
      const saved = await server.http.call('rkllm_run', {
        prompt_input: 'What is AI?',
        max_new_tokens: 2,
        prompt_cache_params: { save_prompt_cache: 1, prompt_cache_path: 'out/victim.txt' },
      });
      refusals.push(saved.error);
      expect(refusals[0]?.data).to.deep.equal({ reason: 'path_refused' });
      for (const error of refusals) expect(error).to.deep.equal(refusals[0]);
      expect(readFileSync(join(outside, 'victim.txt'), 'utf8')).to.equal('precious\n');
      // Inside the folder, a missing file is just missing, by the name the client gave (never the server's folder).
      const missing = await server.http.call('rkllm_load_prompt_cache', { prompt_cache_path: 'none.cache' });
      expect(missing.error?.message).to.match(/"prompt_cache_path" names no file: none\.cache$/);
      expect(missing.error?.message).not.to.include(caches);
    });
  });

  describe('origins', () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer({ settings: { engine: { parallel: 1 }, http: { allowed_origins: ['https://app.example'] } } });
    });
    after(async () => server?.close());

    it("HTTP: a foreign Origin gets 403 on every path; no Origin, the server's own and a listed one are served", async () => {
      const body = rpc('rkllm_is_running', {});
      const foreign = await httpRequest(server.url, {
        headers: { origin: 'http://evil.example', 'content-type': 'application/json' },
        body,
      });
      expect(foreign.status).to.equal(403);
      expect(JSON.parse(foreign.body).error.code).to.equal(-32018);
      expect((await httpRequest(`${server.url}health`, { method: 'GET', headers: { origin: 'http://evil.example' } })).status).to.equal(
        403,
      );
      expect((await httpRequest(`${server.url}v1/models`, { method: 'GET', headers: { origin: 'null' } })).status).to.equal(403);
      // DNS rebinding: the page's name points at us, and the Host header says that name.
      const rebound = await httpRequest(server.url, { headers: { origin: 'http://evil.example:80', host: 'evil.example:80' }, body });
      expect(rebound.status).to.equal(403);

      expect((await httpRequest(server.url, { body })).status).to.equal(200);
      expect((await httpRequest(server.url, { headers: { origin: `http://${server.addresses.http}` }, body })).status).to.equal(200);
      expect((await httpRequest(server.url, { headers: { origin: 'https://app.example' }, body })).status).to.equal(200);
    });

    it('WebSocket: a handshake with a foreign Origin gets 403', async () => {
      const address = server.addresses.ws!;
      expect(await wsHandshake(address, 'http://evil.example')).to.equal(403);
      expect(await wsHandshake(address, undefined)).to.equal('open');
      expect(await wsHandshake(address, `http://${address}`)).to.equal('open');
      expect(await wsHandshake(address, 'https://app.example')).to.equal('open');
    });
  });

  describe('API keys keep their state apart (user keys only)', () => {
    let server: TestServer;
    let a: HttpRpc;
    let b: HttpRpc;
    before(async () => {
      server = await startTestServer({ settings: { engine: { parallel: 1 }, auth: { api_keys: [KEY_A, KEY_B] } } });
      a = new HttpRpc(server.url, bearer(KEY_A));
      b = new HttpRpc(server.url, bearer(KEY_B));
    });
    after(async () => server?.close());

    it("key B neither continues nor sees key A's keep_history conversation", async () => {
      const fresh = await b.result('rkllm_run', { prompt_input: 'x', keep_history: 0, max_new_tokens: 6, ...GREEDY });
      await a.result('rkllm_run', { prompt_input: 'What is AI?', keep_history: 1, max_new_tokens: 6, ...GREEDY });
      const aSize = (await a.result('rkllm_get_kv_cache_size', {})).cache_sizes as number[];
      expect(aSize.some((n) => n > 0)).to.equal(true);
      const bSize = (await b.result('rkllm_get_kv_cache_size', {})).cache_sizes as number[];
      expect(
        bSize.every((n) => n === 0),
        `B sees ${JSON.stringify(bSize)}`,
      ).to.equal(true);

      const continued = await b.result('rkllm_run', { prompt_input: 'x', keep_history: 1, max_new_tokens: 6, ...GREEDY });
      expect(continued.text).to.equal(fresh.text);
      expect(continued.perf.prefill_tokens + continued.perf.generate_tokens).to.be.at.most(
        fresh.perf.prefill_tokens + fresh.perf.generate_tokens,
      );
      // A's conversation is still A's: its next turn continues from where A left it.
      const aAgain = await a.result('rkllm_run', { prompt_input: 'And then?', keep_history: 1, max_new_tokens: 2, ...GREEDY });
      const aAlone = await a.result('rkllm_run', { prompt_input: 'And then?', keep_history: 0, max_new_tokens: 2, ...GREEDY });
      expect(aAgain.perf.prefill_tokens).to.be.at.least(aAlone.perf.prefill_tokens);
    });

    it("a user key brings its own chat template and tools on the run, without changing anyone else's", async () => {
      const plain = await a.result('rkllm_run', { prompt_input: 'x', max_new_tokens: 4, ...GREEDY });
      const size = async (): Promise<number> => Math.max(...((await b.result('rkllm_get_kv_cache_size', {})).cache_sizes as number[]));
      await b.result('rkllm_run', { prompt_input: 'x', max_new_tokens: 4, ...GREEDY });
      const withoutTemplate = await size();
      const template = { system_prompt: 'You are a rabbit in a waistcoat.', prompt_prefix: '<<', prompt_postfix: '>>' };
      await b.result('rkllm_run', { prompt_input: 'x', max_new_tokens: 4, chat_template: template, ...GREEDY });
      expect(await size()).to.be.above(withoutTemplate);
      const tools = { system_prompt: 'Tools:', tools: '[{"name":"clock","description":"the time"}]', tool_response_str: 'tool_response' };
      await b.result('rkllm_run', { prompt_input: 'x', max_new_tokens: 4, function_tools: tools, ...GREEDY });
      const badTools = await b.call('rkllm_run', { prompt_input: 'x', function_tools: { ...tools, tools: 'tools!' } });
      expect(badTools.error?.code).to.equal(-32602);
      expect((await a.result('rkllm_run', { prompt_input: 'x', max_new_tokens: 4, ...GREEDY })).text).to.equal(plain.text);
    });

    it('a user key is forbidden (-32018, HTTP 403) the methods that change the engine for everyone', async () => {
      for (const [method, params] of [
        ['rkllm_destroy', {}],
        ['rkllm_clear_kv_cache', {}],
        ['rkllm_set_chat_template', { system_prompt: 'x', prompt_prefix: '', prompt_postfix: '' }],
        ['rkllm_set_function_tools', { system_prompt: '', tools: '[]', tool_response_str: 'r' }],
        ['rkllm_release_prompt_cache', {}],
        ['rkllm_load_lora', { lora_adapter_path: 'a.gguf', lora_adapter_name: 'a' }],
        ['rkllm_init', { model_path: 'm.gguf' }],
      ] as const) {
        const res = await b.raw(rpc(method, params));
        expect(res.status, method).to.equal(403);
        expect(res.body.error.code, method).to.equal(-32018);
        expect(res.body.error.message, method).to.match(/admin key/);
      }
      expect(await a.result('engine_status', {})).to.include({ state: 'ready' });
    });

    it("a user key sees neither other keys' buffers nor the model's path", async () => {
      const started = await a.start({ prompt_input: TINY_MODEL_PROMPTS.long, max_new_tokens: 2000 });
      try {
        const seenByB = await b.result('http_buffer_manager_status', {});
        expect(seenByB).to.include({ live_streams: 0 });
        expect(seenByB).not.to.have.property('active_buffers');
        const seenByA = await a.result('http_buffer_manager_status', {});
        expect(seenByA).to.include({ live_streams: 1 });
        const status = await b.result('engine_status', {});
        expect(status.model_path).to.be.a('string').and.not.include('/');
      } finally {
        await a.result('rkllm_abort', { stream_id: started.stream_id });
      }
    });
  });

  describe('admin keys, unauthenticated connections and slow bodies', () => {
    let server: TestServer;
    let admin: HttpRpc;
    before(async () => {
      server = await startTestServer({
        settings: {
          engine: { parallel: 1 },
          auth: { api_keys: [KEY_A], admin_keys: [ADMIN], timeout_s: 1 },
          limits: { max_connections: 2 },
          http: { request_timeout_s: 1 },
        },
      });
      admin = new HttpRpc(server.url, bearer(ADMIN));
    });
    after(async () => server?.close());

    it('an admin key may change the engine, and also runs', async () => {
      await admin.result('rkllm_set_chat_template', { system_prompt: '', prompt_prefix: '', prompt_postfix: '' });
      await admin.result('rkllm_clear_kv_cache', {});
      expect((await admin.result('rkllm_run', { prompt_input: 'x', max_new_tokens: 2 })).text).to.be.a('string');
    });

    it('connections without a key count against the address and are closed after auth.timeout_s', async () => {
      const tcp = server.addresses.tcp!;
      const first = tcpUntilClosed(tcp, 20_000);
      const second = tcpUntilClosed(tcp, 20_000);
      // Both are counted before the third arrives: each is accepted once its connect completes, in order.
      const third = await tcpUntilClosed(tcp, 20_000);
      expect(third.text).to.match(/"code":-32016/);
      const [one, two] = await Promise.all([first, second]);
      for (const closed of [one, two]) {
        expect(closed.text).to.match(/"code":-32015/);
        expect(closed.text).to.include('auth.timeout_s');
        expect(closed.ms).to.be.below(15_000);
      }
    });

    it('a request body that trickles is cut after http.request_timeout_s, not 300 s', async () => {
      const { host, port } = hostPort(server.addresses.http!);
      const started = Date.now();
      const closed = await new Promise<string>((resolve, reject) => {
        const socket = connect(port, host, () => {
          socket.write(
            `POST / HTTP/1.1\r\nHost: ${host}\r\nContent-Type: application/json\r\nAuthorization: Bearer ${ADMIN}\r\nContent-Length: 100\r\n\r\n{"json`,
          );
        });
        let text = '';
        const timer = setTimeout(() => reject(new Error('the slow body was not cut within 20 s')), 20_000);
        socket.on('data', (d: Buffer) => (text += d.toString()));
        socket.on('error', () => undefined);
        socket.on('close', () => {
          clearTimeout(timer);
          resolve(text);
        });
      });
      expect(Date.now() - started).to.be.below(15_000);
      expect(closed).to.match(/^HTTP\/1\.1 408/);
    });
  });

  describe('UDP bound beyond loopback, without keys', () => {
    let server: TestServer;
    let probe: UdpProbe;
    before(async () => {
      server = await startTestServer({
        settings: { host: '0.0.0.0', engine: { parallel: 1 }, tcp: { enabled: false }, ws: { enabled: false } },
      });
      probe = new UdpProbe(server.addresses.udp!);
      await probe.open();
    });
    after(async () => {
      await probe?.close();
      await server?.close();
    });

    const marker = rpc('rkllm_get_constants', {}, 'marker').slice(0, -1) + ',"pad":"' + 'x'.repeat(2000) + '"}';

    it('a small datagram never gets more than its own size back', async () => {
      const datagram = rpc('rkllm_list_functions', {}, 7);
      expect(datagram.length).to.be.below(80);
      const replies = await probe.exchange(datagram, marker);
      const bytes = replies.reduce((n, r) => n + r.length, 0);
      expect(bytes, `got ${bytes} bytes for ${datagram.length}`).to.be.at.most(datagram.length);
    });

    it('a datagram never starts a stream (rkllm_run_async, rkllm_run)', async () => {
      const before = server.streams.runs;
      for (const method of ['rkllm_run_async', 'rkllm_run']) {
        const datagram = rpc(method, { prompt_input: TINY_MODEL_PROMPTS.long, max_new_tokens: 50 }, 8);
        const replies = await probe.exchange(datagram, marker);
        const bytes = replies.reduce((n, r) => n + r.length, 0);
        expect(bytes, method).to.be.at.most(datagram.length);
      }
      expect(server.streams.live).to.equal(0);
      expect(server.streams.runs).to.equal(before);
    });
  });

  describe('UDP on loopback', () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer({ settings: { engine: { parallel: 1 }, tcp: { enabled: false }, ws: { enabled: false } } });
    });
    after(async () => server?.close());

    it('behaves as before: the whole reply, and streams', async () => {
      const udp = await server.udp();
      try {
        const list = await udp.call('rkllm_list_functions', {});
        expect(JSON.stringify(list).length).to.be.above(5000);
        const drained = await udp.stream({ prompt_input: 'x', max_new_tokens: 3 });
        expect(drained.last.end).to.equal(true);
      } finally {
        await udp.close();
      }
    });
  });
});
