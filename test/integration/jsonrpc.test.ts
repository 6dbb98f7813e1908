// JSON-RPC 2.0 conformance and bad input, over real HTTP to a real server (in this process).
import { expect } from 'chai';
import { request } from 'node:http';
import { HttpRpc } from '../helpers/rpc.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

describe('JSON-RPC 2.0 over HTTP', function () {
  this.timeout(60_000);
  let server: TestServer;
  let rpc: HttpRpc;

  before(async () => {
    server = await startTestServer({ settings: { http: { max_body_bytes: 4096 }, streams: { max_wait_ms: 5000 } } });
    rpc = new HttpRpc(server.url);
  });

  after(async () => {
    await server.close();
  });

  /** The server still answers after whatever the test threw at it. */
  afterEach(async () => {
    const res = await rpc.call('rkllm_is_running', {});
    expect(res.error).to.equal(undefined);
    expect(res.result.running).to.be.a('boolean');
  });

  describe('parse errors (-32700, id null)', () => {
    it('refuses a body that is not JSON', async () => {
      const { status, body } = await rpc.raw('{"jsonrpc": "2.0", "method": "poll", ');
      expect(status).to.equal(200);
      expect(body.id).to.equal(null);
      expect(body.error.code).to.equal(-32700);
    });

    it('refuses invalid UTF-8', async () => {
      const bytes = Buffer.concat([
        Buffer.from('{"jsonrpc":"2.0","id":1,"method":"rkllm_run","params":{"prompt_input":"'),
        Buffer.from([0xc3, 0x28]),
        Buffer.from('"}}'),
      ]);
      const { body } = await rpc.raw(bytes);
      expect(body).to.deep.equal({
        jsonrpc: '2.0',
        id: null,
        error: { code: -32700, message: 'Parse error: the message is not valid UTF-8' },
      });
    });
  });

  describe('invalid requests (-32600)', () => {
    for (const [what, message] of [
      ['a bare number', 42],
      ['a missing jsonrpc member', { id: 1, method: 'poll' }],
      ['a wrong jsonrpc version', { jsonrpc: '1.0', id: 1, method: 'poll' }],
      ['a method that is not a string', { jsonrpc: '2.0', id: 1, method: 5 }],
      ['params that are a string', { jsonrpc: '2.0', id: 1, method: 'poll', params: 'x' }],
      ['an id that is an object', { jsonrpc: '2.0', id: { a: 1 }, method: 'poll' }],
    ] as const) {
      it(`refuses ${what}`, async () => {
        const { body } = await rpc.raw(JSON.stringify(message));
        expect(body.error.code).to.equal(-32600);
        expect(body.error.message).to.match(/^Invalid Request/);
      });
    }

    it('keeps the id of an invalid request when the id itself is valid', async () => {
      const { body } = await rpc.raw(JSON.stringify({ jsonrpc: '2.0', id: 'abc', method: 7 }));
      expect(body.id).to.equal('abc');
    });

    it('refuses an empty batch', async () => {
      const { body } = await rpc.raw('[]');
      expect(body).to.deep.equal({ jsonrpc: '2.0', id: null, error: { code: -32600, message: 'Invalid Request: empty batch' } });
    });
  });

  it('answers -32601 for an unknown method, and for diagnostics when they are off', async () => {
    for (const name of ['no_such_method', 'test_http_buffer_manager', 'constructor', '__proto__']) {
      const res = await rpc.call(name, {});
      expect(res.error!.code, name).to.equal(-32601);
      expect(res.error!.message).to.include(name);
    }
  });

  describe('invalid params (-32602) name the field and the problem', () => {
    const cases: Array<[string, unknown, RegExp]> = [
      ['a typo in a field name', { promt_input: 'hi' }, /unknown field "promt_input"/],
      ['a wrong type', { prompt_input: 5 }, /"prompt_input" must be string/],
      ['a missing prompt', { input_type: 0 }, /missing required field "prompt_input"/],
      ['an absurd max_new_tokens', { prompt_input: 'hi', max_new_tokens: 1e12 }, /"max_new_tokens" must be <= 1048576/],
      [
        'max_new_tokens beyond the context',
        { prompt_input: 'hi', max_new_tokens: 100000 },
        /"max_new_tokens" must be -1 or between 1 and 2048/,
      ],
      [
        'a nested field out of range',
        { input: { prompt_input: 'hi' }, infer_params: { sampling_params: { top_p: 2 } } },
        /"infer_params.sampling_params.top_p" must be <= 1/,
      ],
      [
        'a field given flat and nested',
        { prompt_input: 'a', input: { prompt_input: 'b' } },
        /"prompt_input" is given both flat and in "input"/,
      ],
      ['positional params', ['hi'], /params must be an object/],
    ];
    for (const [what, params, pattern] of cases) {
      it(`for ${what}`, async () => {
        const res = await rpc.call('rkllm_run', params);
        expect(res.error!.code).to.equal(-32602);
        expect(res.error!.message).to.match(pattern);
      });
    }

    it('for a prompt longer than the context', async () => {
      const res = await rpc.call('rkllm_run_async', { prompt_input: 'x'.repeat(3500) });
      expect(res.error!.code).to.equal(-32602);
      expect(res.error!.message).to.match(/longer than the context allows/);
    });

    it('for a negative or huge wait_ms', async () => {
      const { stream_id } = await rpc.start({ prompt_input: 'hi', max_new_tokens: 4 });
      const negative = await rpc.call('poll', { stream_id, wait_ms: -1 });
      expect(negative.error!.message).to.match(/"wait_ms" must be >= 0/);
      const huge = await rpc.call('poll', { stream_id, wait_ms: 10 ** 9 });
      expect(huge.error!.message).to.match(/"wait_ms" must be <= 5000/);
    });

    it('for after_seq beyond what was sent', async () => {
      const { stream_id } = await rpc.start({ prompt_input: 'hi', max_new_tokens: 3, top_k: 1 });
      const { last } = await rpc.drain(stream_id, { afterSeq: true });
      const res = await rpc.call('poll', { stream_id, after_seq: 99 });
      expect(res.error!.code).to.equal(-32602);
      expect(res.error!.message).to.equal(`after_seq 99 is beyond the last chunk sent (seq ${last.seq})`);
    });
  });

  describe('poll for a stream that is not there', () => {
    it('says the stream is unknown', async () => {
      const res = await rpc.call('poll', { stream_id: 'st_nope' });
      expect(res.error!.code).to.equal(-32001);
      expect(res.error!.message).to.equal('Unknown stream st_nope');
    });

    it('says the stream was released after its final chunk was acknowledged', async () => {
      const { stream_id } = await rpc.start({ prompt_input: 'hi', max_new_tokens: 2 });
      await rpc.drain(stream_id);
      const res = await rpc.call('poll', { stream_id });
      expect(res.error!.code).to.equal(-32001);
      expect(res.error!.message).to.match(/ended and its buffer was released/);
    });

    it('says when no live stream has the request id', async () => {
      const res = await rpc.call('poll', { request_id: 'never-used' });
      expect(res.error!.code).to.equal(-32001);
      expect(res.error!.message).to.match(/No live stream was started by request id "never-used"/);
    });
  });

  describe('ids, batches and notifications', () => {
    for (const id of ['req-1', 42, 0, -7, 1.5, null, '']) {
      it(`echoes the id ${JSON.stringify(id)} exactly`, async () => {
        const res = await rpc.call('rkllm_is_running', {}, id);
        expect(res.id).to.equal(id);
        expect(res.result.running).to.be.a('boolean');
      });
    }

    it('answers a batch that mixes requests, notifications and errors, leaving notifications out', async () => {
      const { status, body } = await rpc.raw(
        JSON.stringify([
          { jsonrpc: '2.0', id: 1, method: 'rkllm_is_running', params: {} },
          { jsonrpc: '2.0', method: 'rkllm_is_running', params: {} },
          { jsonrpc: '2.0', id: 'x', method: 'nope' },
          { foo: 'bar' },
          { jsonrpc: '2.0', id: 3, method: 'http_buffer_manager_status' },
        ]),
      );
      expect(status).to.equal(200);
      expect(body).to.have.lengthOf(4);
      expect(body[0]).to.deep.include({ id: 1 });
      expect(body[0].result.running).to.be.a('boolean');
      expect(body[1]).to.deep.equal({ jsonrpc: '2.0', id: 'x', error: { code: -32601, message: 'Method not found: nope' } });
      expect(body[2].id).to.equal(null);
      expect(body[2].error.code).to.equal(-32600);
      expect(body[3].id).to.equal(3);
      expect(body[3].result).to.deep.include({ initialized: true, max_buffers: 256, buffer_timeout: 60 });
      expect(body[3].result.active_buffers).to.equal((await rpc.result('http_buffer_manager_status', {})).active_buffers);
    });

    it('answers a body of notifications only with 204 and an empty body', async () => {
      const single = await rpc.raw(JSON.stringify({ jsonrpc: '2.0', method: 'rkllm_is_running' }));
      expect(single.status).to.equal(204);
      expect(single.text).to.equal('');
      const batch = await rpc.raw(
        JSON.stringify([
          { jsonrpc: '2.0', method: 'nope' },
          { jsonrpc: '2.0', method: 'rkllm_is_running' },
        ]),
      );
      expect(batch.status).to.equal(204);
      expect(batch.text).to.equal('');
    });
  });

  describe('size limit', () => {
    it('refuses a body over the limit from its Content-Length, without reading it', async () => {
      const { status, body } = await rpc.raw(
        JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'rkllm_run', params: { prompt_input: 'x'.repeat(5000) } }),
      );
      expect(status).to.equal(413);
      expect(body.error).to.deep.equal({ code: -32600, message: 'Request body exceeds the limit of 4096 bytes' });
    });

    it('refuses a chunked body once it passes the limit, before it ends', async () => {
      const url = new URL(server.url);
      const reply = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        let answered = false;
        const req = request(
          { host: url.hostname, port: url.port, method: 'POST', path: '/', headers: { 'transfer-encoding': 'chunked' } },
          (res) => {
            answered = true;
            let body = '';
            res.on('data', (d: Buffer) => (body += d.toString()));
            res.on('end', () => resolve({ status: res.statusCode!, body }));
          },
        );
        // Once the server has answered it may cut the connection while we still write: that is fine.
        // Before the answer it is the failure this test looks for.
        req.on('error', (err) => {
          if (!answered) reject(err);
        });
        // Keep writing well past the limit; the server answers without waiting for the end.
        const piece = 'x'.repeat(1024);
        let sent = 0;
        const pump = (): void => {
          while (sent < 64 && req.write(piece)) sent++;
          if (sent < 64) req.once('drain', pump);
        };
        pump();
      });
      expect(reply.status).to.equal(413);
      expect(JSON.parse(reply.body).error.code).to.equal(-32600);
    });
  });

  it('answers GET with 405', async () => {
    const res = await fetch(server.url);
    expect(res.status).to.equal(405);
    expect(res.headers.get('allow')).to.equal('POST');
  });

  it('lists every method with its schema and support', async () => {
    const { functions } = await rpc.result<{ functions: Array<{ name: string; params: any; supported: boolean }> }>(
      'rkllm_list_functions',
      {},
    );
    const names = functions.map((f) => f.name);
    for (const name of [
      'rkllm_run',
      'rkllm_run_async',
      'poll',
      'rkllm_abort',
      'rkllm_is_running',
      'rkllm_list_functions',
      'http_buffer_manager_status',
    ]) {
      expect(names).to.include(name);
    }
    expect(names).not.to.include('test_buffer_cleanup');
    const poll = functions.find((f) => f.name === 'poll')!;
    expect(poll.params.properties).to.have.keys(['stream_id', 'request_id', 'after_seq', 'wait_ms']);
    expect(poll.params.additionalProperties).to.equal(false);
    // The llama.cpp engine cannot do cross-attention; everything else it supports.
    expect(functions.filter((f) => !f.supported).map((f) => f.name)).to.deep.equal(['rkllm_set_cross_attn_params']);
  });
});
