// Issue 25: what an adversarial probe found on the faces (/v1, /api, /mcp). Each test failed before its fix.
import { expect } from 'chai';
import { request } from 'node:http';
import { Ollama } from 'ollama';
import OpenAI from 'openai';
import { OUTPUT_SCHEMA_LIMITS } from '../../src/request-schema.js';
import { connectHttp, type McpConnection } from '../helpers/mcp.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const USER = 'user-key-0123456789abcdef';
const OTHER = 'other-key-0123456789abcdef';
const ADMIN = 'admin-key-0123456789abcdef';
const bearer = (key: string): Record<string, string> => ({ authorization: `Bearer ${key}` });
const GREEDY = { temperature: 0, top_k: 1 };

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One raw HTTP request: a body no client library would build (deep nesting, bad encodings). */
function raw(
  base: string,
  path: string,
  body?: string,
  options: { method?: string; headers?: Record<string, string> } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${base}${path}`,
      {
        method: options.method ?? (body === undefined ? 'GET' : 'POST'),
        headers: { 'content-type': 'application/json', ...options.headers },
        agent: false,
      },
      (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** `depth` arrays nested in one another, as JSON text: `[[[...]]]`. */
function nested(depth: number): string {
  return '['.repeat(depth) + ']'.repeat(depth);
}

describe('Hostile requests on the faces (issue 25)', function () {
  this.timeout(120_000);
  let server: TestServer;
  let base: string;
  let model: string;

  before(async () => {
    server = await startTestServer({ settings: { auth: { api_keys: [USER, OTHER], admin_keys: [ADMIN] } } });
    base = `http://${server.addresses.http}`;
    model = (await new Ollama({ host: base, headers: bearer(ADMIN) }).list()).models[0]!.name;
  });
  after(() => server.close());
  // A test that fails may leave the model unloaded (before the keep_alive fix): an admin loads it again.
  afterEach(() => new Ollama({ host: base, headers: bearer(ADMIN) }).generate({ model, prompt: '', keep_alive: -1, stream: false }));

  it("a user key's keep_alive neither unloads nor shortens the shared model (it is ignored without models.user_loads)", async () => {
    const user = new Ollama({ host: base, headers: bearer(USER) });
    for (const keep_alive of [0, '0s', '1s', '1000h'] as const) {
      const loaded = await user.generate({ model, prompt: '', keep_alive, stream: false });
      expect(loaded.done_reason).not.to.equal('unload');
      await user.chat({ model, messages: [{ role: 'user', content: 'hi' }], keep_alive, options: { num_predict: 1 } });
      await user.embed({ model, input: 'hi', keep_alive });
    }
    const ps = await new Ollama({ host: base, headers: bearer(OTHER) }).ps();
    expect(ps.models.map((m) => m.name)).to.include(model);
    expect(new Date(ps.models[0]!.expires_at).getUTCFullYear()).to.be.above(2100);
    const other = new Ollama({ host: base, headers: bearer(OTHER) });
    const answer = await other.generate({ model, prompt: 'Alice', options: { num_predict: 3, ...GREEDY }, stream: false });
    expect(answer.eval_count).to.equal(3);
  });

  it("deep nesting in fields the faces write back answers 400 in the face's shape, never 500", async () => {
    const deep = nested(20_000);
    const v1 = [
      `{"model":"${model}","messages":[{"role":${deep},"content":"hi"}]}`,
      `{"model":"${model}","messages":[{"role":"user","content":[{"type":${deep}}]}]}`,
      `{"model":"${model}","messages":[{"role":"user","content":"hi"}],"response_format":{"type":${deep}}}`,
      `{"model":"${model}","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f","parameters":${deep}}}]}`,
    ];
    for (const body of v1) {
      const reply = await raw(base, '/v1/chat/completions', body, { headers: bearer(USER) });
      expect(reply.status, body.slice(0, 80)).to.equal(400);
      expect(JSON.parse(reply.body)).to.have.nested.property('error.message');
    }
    const api = [
      `{"model":"${model}","prompt":"hi","keep_alive":${deep}}`,
      `{"model":"${model}","messages":[{"role":${deep},"content":"hi"}]}`,
    ];
    for (const [i, body] of api.entries()) {
      const reply = await raw(base, i === 0 ? '/api/generate' : '/api/chat', body, { headers: bearer(USER) });
      expect(reply.status, body.slice(0, 80)).to.equal(400);
      expect(JSON.parse(reply.body)).to.have.property('error').that.is.a('string');
    }
  });

  it('null entries in tools and tool_calls answer 400 naming the field', async () => {
    const openai = new OpenAI({ baseURL: `${base}/v1`, apiKey: USER, maxRetries: 0 });
    const nullTools = await openai.chat.completions
      .create({ model, messages: [{ role: 'user', content: 'hi' }], tools: [null as never] })
      .catch((e: unknown) => e);
    expect(nullTools).to.have.property('status', 400);
    expect(String((nullTools as Error).message)).to.include('tools');
    const nullCalls = await openai.chat.completions
      .create({
        model,
        messages: [
          { role: 'assistant', content: '', tool_calls: [null as never] },
          { role: 'user', content: 'hi' },
        ],
      })
      .catch((e: unknown) => e);
    expect(nullCalls).to.have.property('status', 400);
    expect(String((nullCalls as Error).message)).to.include('tool_calls');
    const ollama = new Ollama({ host: base, headers: bearer(USER) });
    const ollamaNull = await ollama
      .chat({
        model,
        messages: [
          { role: 'assistant', content: '', tool_calls: [null as never] },
          { role: 'user', content: 'hi' },
        ],
      })
      .catch((e: unknown) => e);
    expect(ollamaNull).to.have.property('status_code', 400);
    expect(String((ollamaNull as Error).message)).to.include('tool_calls');
  });

  it('malformed percent-encoding is 400 or 404, not 500', async () => {
    const reply = await raw(base, '/v1/models/%ZZ', undefined, { headers: bearer(USER) });
    expect(reply.status).to.be.oneOf([400, 404]);
  });

  it('too large bodies get 413 on /v1 and /api, with Content-Length or chunked', async () => {
    const big = `{"model":"${model}","prompt":"${'a'.repeat(2 * 1024 * 1024)}"}`;
    for (const path of ['/v1/completions', '/api/generate']) {
      const sized = await raw(base, path, big, { headers: { ...bearer(USER), 'content-length': String(Buffer.byteLength(big)) } });
      expect(sized.status, path).to.equal(413);
      const chunked = await raw(base, path, big, { headers: { ...bearer(USER), 'transfer-encoding': 'chunked' } });
      expect(chunked.status, path).to.equal(413);
    }
  });

  it('JSON error replies say nosniff, and the page may not be framed', async () => {
    const error = await raw(base, '/v1/chat/completions', '{', { headers: bearer(USER) });
    expect(error.status).to.equal(400);
    expect(error.headers['x-content-type-options']).to.equal('nosniff');
    const page = await raw(base, '/', undefined, { headers: { accept: 'text/html' } });
    expect(String(page.headers['content-security-policy'])).to.include("frame-ancestors 'none'");
    expect(page.headers['x-frame-options']).to.equal('DENY');
  });

  it('an output schema over the bounds (20,000 enum entries) answers 400 on every face, at once', async () => {
    const schema = { type: 'object', properties: { a: { enum: Array.from({ length: 20_000 }, (_, i) => `v${i}`) } } };
    const openai = new OpenAI({ baseURL: `${base}/v1`, apiKey: USER, maxRetries: 0 });
    const messages = [{ role: 'user' as const, content: 'hi' }];
    const format = await openai.chat.completions
      .create({ model, messages, max_tokens: 2, response_format: { type: 'json_schema', json_schema: { name: 'x', schema } } })
      .catch((e: unknown) => e);
    expect(format).to.have.property('status', 400);
    expect(String((format as Error).message)).to.include('response_format.json_schema.schema');
    const tools = [{ type: 'function' as const, function: { name: 'f', parameters: schema } }];
    const forced = await openai.chat.completions
      .create({ model, messages, max_tokens: 2, tools, tool_choice: 'required' })
      .catch((e: unknown) => e);
    expect(forced).to.have.property('status', 400);
    expect(String((forced as Error).message)).to.include('parameters');
    const ollama = new Ollama({ host: base, headers: bearer(USER) });
    const started = performance.now();
    const ollamaFormat = await ollama.chat({ model, messages, format: schema, options: { num_predict: 2 } }).catch((e: unknown) => e);
    expect(ollamaFormat).to.have.property('status_code', 400);
    expect(String((ollamaFormat as Error).message)).to.include('format');
    expect(performance.now() - started).to.be.below(1000);
  });

  it('no request with the largest schemas the bounds allow stalls GET /health by more than 100 ms', async () => {
    // Client and server share this process: what the client builds (the probe's 530 KB body) is built before the timing.
    const probe = { type: 'object', properties: { a: { enum: Array.from({ length: 60_000 }, (_, i) => `v${i}`) } } };
    const probeBody = JSON.stringify({
      model,
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 4,
      response_format: { type: 'json_schema', json_schema: { name: 'form', schema: probe } },
    });
    for (const schema of largestSchemas('warm')) await constrained(base, model, schema);
    let refused: Reply | undefined;
    const worst = await healthStall(base, async () => {
      for (const schema of largestSchemas('a')) await constrained(base, model, schema);
      await Promise.all(largestSchemas('b').map((schema) => constrained(base, model, schema)));
      // The probe's schema, far over the bounds: refused before any grammar is built.
      refused = await raw(base, '/v1/chat/completions', probeBody, { headers: bearer(USER) });
    });
    expect(worst, 'the slowest GET /health, in ms').to.be.below(100);
    expect(refused?.status).to.equal(400);
  });
});

describe('MCP sessions and initialize under limits (issue 25)', function () {
  this.timeout(60_000);

  it('one key cannot take every MCP session: mcp.max_sessions_per_key, with 429', async () => {
    const server = await startTestServer({ settings: { auth: { api_keys: [USER, OTHER] }, mcp: { max_sessions_per_key: 3 } } });
    const base = server.url;
    const open: McpConnection[] = [];
    try {
      for (let i = 0; i < 3; i++) open.push(await connectHttp(base, bearer(USER)));
      const refused = await connectHttp(base, bearer(USER)).then(
        (c) => (open.push(c), 'connected'),
        (err: Error & { code?: number }) => `${err.code} ${err.message}`,
      );
      expect(refused).to.match(/^429 .*mcp\.max_sessions_per_key/);
      open.push(await connectHttp(base, bearer(OTHER)));
    } finally {
      await Promise.all(open.map((c) => c.close()));
      await server.close();
    }
  });

  it('rapid initialize requests get 429 beyond limits.request_burst, as every other route does', async () => {
    const server = await startTestServer({
      settings: { auth: { api_keys: [USER] }, limits: { requests_per_second: 2, request_burst: 4 } },
    });
    const open: McpConnection[] = [];
    try {
      const outcomes: string[] = [];
      const started = performance.now();
      for (let i = 0; i < 12; i++) {
        outcomes.push(
          await connectHttp(server.url, bearer(USER)).then(
            (c) => (open.push(c), 'connected'),
            (err: Error & { code?: number }) => `${err.code} ${err.message}`,
          ),
        );
      }
      // The burst, and what the rate (2/s) refilled meanwhile; every other initialize is refused with 429.
      const allowed = 4 + Math.ceil((2 * (performance.now() - started)) / 1000);
      const connected = outcomes.filter((o) => o === 'connected').length;
      expect(connected).to.be.within(4, allowed);
      expect(outcomes.filter((o) => o.startsWith('429 ')).length, outcomes.join('\n')).to.equal(12 - connected);
    } finally {
      await Promise.all(open.map((c) => c.close()));
      await server.close();
    }
  });
});

/** The largest output schemas the bounds allow, each pathological in its own way: enum entries, properties, depth, alternatives. */
function largestSchemas(tag: string): Array<Record<string, unknown>> {
  const { bytes, depth, choices } = OUTPUT_SCHEMA_LIMITS;
  const fill = (count: number, overhead: number): string => 'x'.repeat(Math.max(1, Math.floor((bytes * 0.9) / count) - overhead));
  // A new `tag` in each name: a grammar built before for the same schema would cost nothing.
  const entries = Array.from({ length: choices }, (_, i) => `${tag}${i}${fill(choices, 12)}`);
  const names = Array.from({ length: Math.floor(bytes / 40) }, (_, i) => `${tag}${i}`);
  let deep: Record<string, unknown> = { type: 'string' };
  for (let i = 1; i < depth / 2; i++) deep = { type: 'object', properties: { [tag]: deep, b: { type: 'integer' } }, required: [tag, 'b'] };
  const count = Math.min(choices, Math.floor(bytes / 64));
  const alternatives = Array.from({ length: count }, (_, i) => ({
    type: 'object',
    properties: { [`${tag}${i}${fill(count, 60)}`]: { type: 'number' } },
  }));
  return [
    { type: 'object', properties: { a: { enum: entries } }, required: ['a'] },
    { type: 'object', properties: Object.fromEntries(names.map((n) => [n, { type: 'string' }])), required: names },
    deep,
    { type: 'object', properties: { a: { anyOf: alternatives } }, required: ['a'] },
  ].map((schema) => (expect(JSON.stringify(schema).length).to.be.at.most(bytes), schema));
}

/** One constrained generation through the OpenAI client (a few tokens, greedy). */
async function constrained(base: string, model: string, schema: Record<string, unknown>): Promise<void> {
  const openai = new OpenAI({ baseURL: `${base}/v1`, apiKey: USER, maxRetries: 0 });
  await openai.chat.completions.create({
    model,
    messages: [{ role: 'user', content: 'Fill in the form.' }],
    max_tokens: 4,
    temperature: 0,
    response_format: { type: 'json_schema', json_schema: { name: 'form', schema } },
  });
}

/** Runs `work` while polling GET /health every 10 ms; the slowest answer, in ms. */
async function healthStall(base: string, work: () => Promise<void>): Promise<number> {
  let done = false;
  let worst = 0;
  const poll = (async () => {
    while (!done) {
      const started = performance.now();
      await raw(base, '/health');
      worst = Math.max(worst, performance.now() - started);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  })();
  try {
    await work();
  } finally {
    done = true;
    await poll;
  }
  return worst;
}
