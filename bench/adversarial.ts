/**
 * `npm run bench:adversarial`: bad inputs over every transport against one real server (HTTP, TCP,
 * UDP, WebSocket in-process; stdio as a spawned CLI). Each input knows the answer it is due (a
 * JSON-RPC error code, an HTTP status or a WebSocket close code); the table counts per transport
 * the inputs tried, answered correctly, answered wrongly, crashes (the server gone) and hangs (no
 * answer within the timeout). Meanwhile a stream started before the flood, on its own connection,
 * must end with every seq once. The faces (`/v1`, `/api`, `/mcp`) get the bad requests of issue
 * 25 while `GET /health` is timed. Not part of the test suite: it is evidence for the robustness notes.
 */
import { spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { WebSocket } from 'ws';
import { TINY_MODEL_PROMPTS } from '../src/gguf/builtin.js';
import { hostPort, TcpRpc } from '../test/helpers/live-rpc.js';
import { greedy } from '../test/helpers/prompts.js';
import { startTestServer } from '../test/helpers/server.js';

const TIMEOUT_MS = 5000;
const LIMIT = 64 * 1024;
const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));

/** What an input is due: a JSON-RPC error code (or a batch of them), an HTTP status, or a WebSocket close code. */
interface Expect {
  code?: number;
  batch?: number[];
  status?: number;
  close?: number;
  /** Several inputs of this transport may legitimately close the connection afterwards. */
  closesConnection?: boolean;
}

interface Case {
  name: string;
  body: string | Buffer;
  expect: Expect;
  headers?: Record<string, string>;
  /** WebSocket: send as a binary frame. */
  binary?: boolean;
  /** HTTP: the path (absent: the round's URL) and method (absent: POST). */
  path?: string;
  method?: string;
}

const C = { PARSE: -32700, INVALID_REQUEST: -32600, NOT_FOUND: -32601, PARAMS: -32602, FORBIDDEN: -32018 } as const;

function req(method: string, params?: unknown, id: unknown = 1): string {
  return JSON.stringify({ jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) });
}

/** The bad inputs every transport gets (variants generated). */
function commonCases(): Case[] {
  const cases: Case[] = [];
  const add = (name: string, body: string | Buffer, expect: Expect): void => void cases.push({ name, body, expect });
  // Malformed JSON.
  const broken = ['{', '}', '{"jsonrpc":"2.0",', '[1,2', 'nul', 'tru', '{"a":}', "{'a':1}", '{"a":1,}', '[,]', '"unterminated', '{"a" 1}'];
  for (const b of broken) for (let i = 0; i < 5; i++) add(`json ${b}#${i}`, ' '.repeat(i) + b, { code: C.PARSE });
  for (let i = 0; i < 40; i++)
    add(`json garbage ${i}`, `{"jsonrpc":"2.0","id":${i},"method":"x"` + '}'.repeat(i % 3 === 0 ? 2 : 0) + 'x', { code: C.PARSE });
  // Invalid UTF-8.
  const badBytes = [[0xff], [0xc3, 0x28], [0xe2, 0x82], [0xf0, 0x28, 0x8c, 0xbc], [0xed, 0xa0, 0x80], [0xc0, 0xaf]];
  for (const bytes of badBytes)
    for (let i = 0; i < 5; i++)
      add(
        `utf8 ${bytes.join(',')}#${i}`,
        Buffer.concat([Buffer.from(`{"jsonrpc":"2.0","id":${i},"method":"ping","x":"`), Buffer.from(bytes), Buffer.from('"}')]),
        {
          code: C.PARSE,
        },
      );
  // Wrong envelopes.
  const envelopes: unknown[] = [
    1,
    'str',
    true,
    null,
    {},
    { jsonrpc: '1.0', id: 1, method: 'rkllm_is_running' },
    { jsonrpc: 2, id: 1, method: 'rkllm_is_running' },
    { id: 1, method: 'rkllm_is_running' },
    { jsonrpc: '2.0', id: 1 },
    { jsonrpc: '2.0', id: 1, method: 5 },
    { jsonrpc: '2.0', id: 1, method: null },
    { jsonrpc: '2.0', id: {}, method: 'rkllm_is_running' },
    { jsonrpc: '2.0', id: [1], method: 'rkllm_is_running' },
    { jsonrpc: '2.0', id: true, method: 'rkllm_is_running' },
    { jsonrpc: '2.0', id: 1, method: 'rkllm_is_running', params: 5 },
    { jsonrpc: '2.0', id: 1, method: 'rkllm_is_running', params: 'x' },
    { jsonrpc: '2.0', id: 1, method: '' },
  ];
  for (const [i, e] of envelopes.entries())
    for (let k = 0; k < 4; k++)
      add(`envelope ${i}#${k}`, JSON.stringify(e), {
        code:
          e === 1 || e === 'str' || e === true || e === null
            ? C.INVALID_REQUEST
            : i >= 14 && i <= 15
              ? C.INVALID_REQUEST
              : i === 16
                ? C.NOT_FOUND
                : C.INVALID_REQUEST,
      });
  // Unknown methods.
  for (let i = 0; i < 60; i++) add(`unknown ${i}`, req(`no_such_method_${i}`, {}, i), { code: C.NOT_FOUND });
  for (const m of ['test_slow', 'rpc.discover', '__proto__', 'constructor', 'toString', 'hasOwnProperty'])
    add(`unknown ${m}`, req(m, {}), { code: C.NOT_FOUND });
  // Wrong param types and missing fields.
  const run = { prompt_input: 'hi', max_new_tokens: 2, ...greedy };
  const badRuns: Array<Record<string, unknown>> = [
    { ...run, prompt_input: 5 },
    { ...run, prompt_input: null },
    { ...run, prompt_input: ['a'] },
    { ...run, max_new_tokens: 'x' },
    { ...run, max_new_tokens: -5 },
    { ...run, max_new_tokens: 1.5 },
    { ...run, max_new_tokens: 1e12 },
    { ...run, temperature: 'hot' },
    { ...run, temperature: -1 },
    { ...run, top_k: -3 },
    { ...run, top_p: 7 },
    { ...run, input_type: 9 },
    { ...run, input_type: 1 },
    { ...run, input_type: 1, token_input: { input_ids: [-1] } },
    { ...run, input_type: 1, token_input: { input_ids: [1e9] } },
    { ...run, input_type: 1, token_input: { input_ids: 'x' } },
    { ...run, mode: 7 },
    { ...run, role: 'root' },
    { ...run, unknown_field: 1 },
    { ...run, keep_history: 'yes' },
    { ...run, seed: 'x' },
    { ...run, detach: 3 },
    { ...run, lora_params: 5 },
    { ...run, prompt_cache_params: { save_prompt_cache: 1, prompt_cache_path: '/tmp/x' } },
    { ...run, prompt_cache_params: { save_prompt_cache: 1, prompt_cache_path: '../x' } },
    { ...run, prompt_cache_params: { save_prompt_cache: 1, prompt_cache_path: '../../etc/passwd' } },
    { ...run, prompt_cache_params: { save_prompt_cache: 1, prompt_cache_path: 'a/../../x' } },
    { ...run, prompt_cache_params: { save_prompt_cache: 1, prompt_cache_path: '' } },
    { ...run, prompt_cache_params: { save_prompt_cache: 1 } },
    { ...run, chat_template: 5 },
    { ...run, function_tools: 'x' },
    { max_new_tokens: 2 },
    { ...run, prompt_input: 'x'.repeat(100) + '\u0000' },
  ];
  for (const method of ['rkllm_run', 'rkllm_run_async'])
    for (const [i, p] of badRuns.entries()) {
      const expect = i === 32 ? undefined : { code: C.PARAMS };
      if (expect) add(`${method} params ${i}`, req(method, p, `${method}-${i}`), expect);
    }
  for (const [i, p] of [
    {},
    { stream_id: 5 },
    { stream_id: 'nope', wait_ms: 'x' },
    { stream_id: 'x', after_seq: 'a' },
    { wait_ms: -1, stream_id: 'x' },
    [1, 2],
  ].entries())
    add(`poll params ${i}`, req('poll', p, `poll-${i}`), { code: C.PARAMS });
  for (const [i, p] of [{ stream_id: 5 }, { request_id: {} }, { stream_id: 'x', extra: 1 }].entries())
    add(`abort params ${i}`, req('rkllm_abort', p, `abort-${i}`), { code: C.PARAMS });
  for (const m of ['rkllm_load_prompt_cache'])
    for (const path of ['/tmp/x', '../x', '../../etc/passwd', '/etc/shadow', '..'])
      add(`${m} ${path}`, req(m, { prompt_cache_path: path }), { code: C.PARAMS });
  for (const path of ['/tmp/x', '../x'])
    add(`rkllm_init model ${path}`, req('rkllm_init', { param: { model_path: path } }), { code: C.PARAMS });
  // Deep nesting (params, and a deep value inside a request).
  for (const depth of [65, 100, 1000, 10_000]) {
    add(
      `deep array ${depth}`,
      `{"jsonrpc":"2.0","id":1,"method":"rkllm_is_running","params":{"a":${'['.repeat(depth)}${']'.repeat(depth)}}}`,
      { code: C.PARAMS },
    );
    add(
      `deep object ${depth}`,
      `{"jsonrpc":"2.0","id":1,"method":"rkllm_is_running","params":{"a":${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}}}`,
      { code: C.PARAMS },
    );
  }
  // Huge ids (beyond 2^53, long strings): answered with the same id.
  for (const id of ['9007199254740993', '123456789012345678901234567890', '-9007199254740993', '1.5e300'])
    add(`huge id ${id}`, `{"jsonrpc":"2.0","id":${id},"method":"no_such"}`, { code: C.NOT_FOUND });
  // A number no double holds is not a usable id: the envelope is refused.
  add('huge id 1e400', `{"jsonrpc":"2.0","id":1e400,"method":"no_such"}`, { code: C.INVALID_REQUEST });
  add('long string id', req('no_such', {}, 'i'.repeat(10_000)), { code: C.NOT_FOUND });
  // Batches.
  add('empty batch', '[]', { code: C.INVALID_REQUEST });
  for (const n of [101, 500])
    add(`batch ${n}`, JSON.stringify(Array.from({ length: n }, (_, i) => JSON.parse(req('rkllm_is_running', {}, i)))), {
      code: C.INVALID_REQUEST,
    });
  for (let i = 0; i < 20; i++) {
    const items = [JSON.parse(req('no_such', {}, `b${i}`)), 1, { jsonrpc: '2.0', id: `c${i}`, method: 'poll', params: {} }];
    add(`mixed batch ${i}`, JSON.stringify(items), { batch: [C.NOT_FOUND, C.INVALID_REQUEST, C.PARAMS] });
  }
  add('batch of garbage', '[1,2,3]', { batch: [C.INVALID_REQUEST, C.INVALID_REQUEST, C.INVALID_REQUEST] });
  add('batch of batches', '[[],[]]', { batch: [C.INVALID_REQUEST, C.INVALID_REQUEST] });
  return cases;
}

/** Oversized messages: each transport's own answer. */
function oversized(expect: Expect, count = 3): Case[] {
  const bodies = (i: number): string =>
    i % 2
      ? `{"jsonrpc":"2.0","id":1,"method":"rkllm_is_running","params":{"a":${'{"a":'.repeat(LIMIT / 5 + i)}1${'}'.repeat(LIMIT / 5 + i)}}}`
      : req('rkllm_run', { prompt_input: 'x'.repeat(LIMIT + 1000 * i) });
  return Array.from({ length: count }, (_, i) => ({
    name: `oversized ${i}`,
    body: bodies(i),
    expect: { ...expect, closesConnection: true },
  }));
}

/**
 * The bad requests of the faces (OpenAI `/v1`, Ollama `/api`, MCP `/mcp`), each with its HTTP
 * status: what the probe of issue 25 sent (deep nesting, nulls, huge schemas, bad URLs, big bodies).
 */
function faceCases(model: string): Record<'openai' | 'ollama' | 'mcp', Case[]> {
  const deep = (n: number): string => '['.repeat(n) + ']'.repeat(n);
  const enumOf = (n: number): string =>
    JSON.stringify({ type: 'object', properties: { a: { enum: Array.from({ length: n }, (_, i) => `v${i}`) } } });
  const broken = ['{', '[1,2', '{"model":}', 'nul', '"x', '{"a" 1}'];
  const cases = (path: string, bodies: Array<[string, string, number]>): Case[] =>
    bodies.map(([name, body, status]) => ({ name: `${path} ${name}`, path, body, expect: { status } }));
  const chat = (extra: string, messages = '[{"role":"user","content":"hi"}]'): string =>
    `{"model":"${model}","messages":${messages}${extra}}`;
  const big = `{"model":"${model}","prompt":"${'x'.repeat(LIMIT)}"}`;
  const depths = [100, 1000, 20_000];
  return {
    openai: [
      ...cases('/v1/chat/completions', [
        ...broken.map((b): [string, string, number] => [`json ${b}`, b, 400]),
        ...depths.flatMap((d): Array<[string, string, number]> => [
          [`deep role ${d}`, chat('', `[{"role":${deep(d)},"content":"hi"}]`), 400],
          [`deep part ${d}`, chat('', `[{"role":"user","content":[{"type":${deep(d)}}]}]`), 400],
          [`deep response_format ${d}`, chat(`,"response_format":{"type":${deep(d)}}`), 400],
          [`deep parameters ${d}`, chat(`,"tools":[{"type":"function","function":{"name":"f","parameters":${deep(d)}}}]`), 400],
        ]),
        ['null tool', chat(',"tools":[null]'), 400],
        ['null tool_calls', chat('', '[{"role":"assistant","content":"","tool_calls":[null]},{"role":"user","content":"hi"}]'), 400],
        ['enum 2000', chat(`,"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":${enumOf(2000)}}}`), 400],
        [
          'forced enum 2000',
          chat(`,"tools":[{"type":"function","function":{"name":"f","parameters":${enumOf(2000)}}}],"tool_choice":"required"`),
          400,
        ],
        ['schema not object', chat(',"response_format":{"type":"json_schema","json_schema":{"schema":7}}'), 400],
        ['n 2', chat(',"n":2'), 400],
        ['temperature -1', chat(',"temperature":-1'), 400],
        ['unknown model', '{"model":"no-such-model","messages":[{"role":"user","content":"hi"}]}', 404],
        ['oversized', big, 413],
      ]),
      { name: 'GET /v1/models/%ZZ', path: '/v1/models/%ZZ', method: 'GET', body: '', expect: { status: 400 } },
      { name: 'GET /v1/nothing', path: '/v1/nothing', method: 'GET', body: '', expect: { status: 404 } },
    ],
    ollama: [
      ...cases('/api/chat', [
        ...broken.map((b): [string, string, number] => [`json ${b}`, b, 400]),
        ...depths.map((d): [string, string, number] => [`deep role ${d}`, chat('', `[{"role":${deep(d)},"content":"hi"}]`), 400]),
        ['null tool_calls', chat('', '[{"role":"assistant","content":"","tool_calls":[null]},{"role":"user","content":"hi"}]'), 400],
        ['null tool', chat(',"tools":[null]'), 400],
        ['format enum 2000', chat(`,"format":${enumOf(2000)}`), 400],
        ['oversized', big, 413],
      ]),
      ...cases('/api/generate', [
        ...depths.map((d): [string, string, number] => [
          `deep keep_alive ${d}`,
          `{"model":"${model}","prompt":"hi","keep_alive":${deep(d)}}`,
          400,
        ]),
        ['bad keep_alive', `{"model":"${model}","prompt":"hi","keep_alive":"soon"}`, 400],
        ['unknown model', '{"model":"no-such-model","prompt":"hi"}', 404],
        ['oversized', big, 413],
      ]),
    ],
    mcp: cases('/mcp', [
      ...broken.map((b): [string, string, number] => [`json ${b}`, b, 400]),
      ...depths.map((d): [string, string, number] => [
        `deep ${d}`,
        req('initialize', { a: JSON.parse(deep(Math.min(d, 1000))) as unknown }),
        400,
      ]),
      ['oversized', `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"a":"${'x'.repeat(LIMIT)}"}}`, 413],
    ]).map((c) => ({ ...c, headers: { accept: 'application/json, text/event-stream' } })),
  };
}

interface Tally {
  tried: number;
  correct: number;
  wrong: number;
  crashes: number;
  hangs: number;
  wrongs: string[];
}

function judge(tally: Tally, c: Case, got: Expect | 'hang'): void {
  tally.tried++;
  if (got === 'hang') {
    tally.hangs++;
    if (tally.wrongs.length < 8) tally.wrongs.push(`${c.name}: no answer (hang)`);
    return;
  }
  const ok =
    (c.expect.code === undefined || got.code === c.expect.code) &&
    (c.expect.status === undefined || got.status === c.expect.status) &&
    (c.expect.close === undefined || got.close === c.expect.close) &&
    (c.expect.batch === undefined || JSON.stringify(got.batch) === JSON.stringify(c.expect.batch));
  if (ok) tally.correct++;
  else {
    tally.wrong++;
    if (tally.wrongs.length < 8) tally.wrongs.push(`${c.name}: expected ${JSON.stringify(c.expect)}, got ${JSON.stringify(got)}`);
  }
}

function parseAnswer(text: string): Expect {
  try {
    const body = JSON.parse(text) as { error?: { code: number } } | Array<{ error?: { code: number } }>;
    if (Array.isArray(body)) return { batch: body.map((b) => b.error?.code ?? 0) };
    return { code: body.error?.code ?? 0 };
  } catch {
    return { code: NaN };
  }
}

/** A live connection that yields whole messages in order (NDJSON over a stream, or frames/datagrams). */
interface Wire {
  send(data: string | Buffer, binary?: boolean): void;
  next(timeoutMs: number): Promise<Expect | 'hang'>;
  readonly gone: boolean;
  close(): void;
}

function queueWire(
  send: (data: string | Buffer, binary?: boolean) => void,
  close: () => void,
): Wire & { push(x: Expect): void; gone: boolean } {
  const queue: Expect[] = [];
  let waiter: (() => void) | undefined;
  return {
    gone: false,
    send,
    close,
    push(x) {
      queue.push(x);
      waiter?.();
    },
    async next(timeoutMs) {
      if (queue.length === 0)
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, timeoutMs);
          waiter = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      waiter = undefined;
      return queue.shift() ?? 'hang';
    },
  };
}

function ndjson(onLine: (line: string) => void): (data: Buffer) => void {
  let rest = '';
  return (data) => {
    rest += data.toString();
    let nl: number;
    while ((nl = rest.indexOf('\n')) >= 0) {
      onLine(rest.slice(0, nl));
      rest = rest.slice(nl + 1);
    }
  };
}

async function tcpWire(address: string): Promise<Wire> {
  const { host, port } = hostPort(address);
  const socket: Socket = connect(port, host);
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const wire = queueWire(
    (d) => socket.write(Buffer.concat([Buffer.from(d), Buffer.from('\n')])),
    () => socket.destroy(),
  );
  socket.on(
    'data',
    ndjson((line) => wire.push(parseAnswer(line))),
  );
  socket.on('error', () => {});
  socket.on('close', () => (wire.gone = true));
  return wire;
}

async function wsWire(address: string, headers: Record<string, string> = {}): Promise<Wire> {
  const ws = new WebSocket(`ws://${address}/`, { headers });
  const wire = queueWire(
    (d, binary) => ws.send(d, { binary: binary === true }),
    () => ws.terminate(),
  );
  ws.on('message', (data: Buffer) => wire.push(parseAnswer(data.toString())));
  ws.on('close', (code) => {
    wire.gone = true;
    wire.push({ close: code });
  });
  ws.on('unexpected-response', (_req, res) => wire.push({ status: res.statusCode }));
  ws.on('error', () => {});
  await new Promise<void>((resolve) => {
    ws.once('open', resolve);
    ws.once('close', resolve);
    ws.once('unexpected-response', () => resolve());
  });
  return wire;
}

async function udpWire(address: string): Promise<Wire> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const to = hostPort(address);
  const wire = queueWire(
    (d) => socket.send(typeof d === 'string' ? Buffer.from(d) : d, to.port, to.host),
    () => socket.close(),
  );
  socket.on('message', (data) => wire.push(parseAnswer(data.toString())));
  return wire;
}

async function liveRound(tally: Tally, open: () => Promise<Wire>, cases: Case[], alive: () => boolean, close = true): Promise<void> {
  let wire = await open();
  for (const c of cases) {
    if (wire.gone) wire = await open();
    wire.send(c.body, c.binary);
    const got = await wire.next(TIMEOUT_MS);
    judge(tally, c, got);
    if (c.expect.closesConnection && !wire.gone) {
      await wire.next(TIMEOUT_MS);
      wire.close();
      wire = await open();
    }
    if (!alive()) {
      tally.crashes++;
      return;
    }
  }
  if (close) wire.close();
}

async function httpRound(tally: Tally, url: string, cases: Case[]): Promise<void> {
  for (const c of cases) {
    try {
      const method = c.method ?? 'POST';
      const res = await fetch(c.path === undefined ? url : new URL(c.path, url), {
        method,
        body: method === 'GET' ? undefined : typeof c.body === 'string' ? c.body : new Uint8Array(c.body),
        headers: { 'content-type': 'application/json', ...c.headers },
        signal: AbortSignal.timeout(TIMEOUT_MS),
      });
      const text = await res.text();
      const answer = text === '' ? {} : parseAnswer(text);
      judge(tally, c, { ...answer, status: res.status });
    } catch (err) {
      if ((err as Error).name === 'TimeoutError') judge(tally, c, 'hang');
      else {
        tally.crashes++;
        judge(tally, c, { code: NaN });
      }
    }
  }
}

/** POSTs to `/mcp` (where a loopback-bound server checks Host, as MCP asks) with the Host header given. */
function withHost(address: string, host: string): Promise<Expect | 'hang'> {
  const { host: hostname, port } = hostPort(address);
  return new Promise((resolve) => {
    const r = request(
      { hostname, port, method: 'POST', path: '/mcp', headers: { host, 'content-type': 'application/json' }, timeout: TIMEOUT_MS },
      (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => resolve({ ...(text ? parseAnswer(text) : {}), status: res.statusCode }));
      },
    );
    r.on('timeout', () => {
      r.destroy();
      resolve('hang');
    });
    r.on('error', () => resolve({ code: NaN }));
    r.end(req('rkllm_is_running', {}));
  });
}

async function main(): Promise<void> {
  const server = await startTestServer({
    settings: { log_level: 'silent', http: { max_body_bytes: LIMIT }, tcp: { max_line_bytes: LIMIT }, ws: { max_message_bytes: LIMIT } },
  });
  const { addresses } = server;
  const tallies: Record<string, Tally> = {};
  const tally = (t: string): Tally => (tallies[t] ??= { tried: 0, correct: 0, wrong: 0, crashes: 0, hangs: 0, wrongs: [] });

  // A stream started before the flood, on its own connection: it must end with every seq once.
  const watcher = await TcpRpc.connect(addresses.tcp!);
  const watched = watcher.stream({ prompt_input: TINY_MODEL_PROMPTS.long, max_new_tokens: 400, ...greedy }, 'watched');
  await watcher.untilPending('watched', 1);

  const common = commonCases();
  // HTTP: statuses too (an error-only reply carries its status, 200 for most).
  const httpCases: Case[] = [
    ...common.map((c) => ({ ...c, expect: { ...c.expect, status: c.expect.code === C.FORBIDDEN ? 403 : 200 } })),
    ...oversized({ status: 413 }),
  ];
  for (const origin of [
    'http://evil.example',
    'null',
    'https://127.0.0.1.evil.example',
    'http://localhost:1',
    'file://',
    'chrome-extension://abc',
  ])
    for (let i = 0; i < 5; i++)
      httpCases.push({
        name: `origin ${origin}#${i}`,
        body: req('rkllm_is_running', {}),
        headers: { origin },
        expect: { status: 403, code: C.FORBIDDEN },
      });
  await httpRound(tally('http'), server.url, httpCases);
  // fetch cannot set Host (DNS rebinding, checked on /mcp): a plain request can.
  for (const host of ['evil.example', 'evil.example:80', 'localhost.evil.example', '127.0.0.1.nip.io'])
    for (let i = 0; i < 5; i++)
      judge(
        tally('http'),
        { name: `host ${host}`, body: '', expect: { status: 403, code: C.FORBIDDEN } },
        await withHost(addresses.http!, host),
      );

  // The faces, while GET /health is timed: no request may stall the others (a grammar built on the event loop did).
  const model = ((await (await fetch(`${server.url}v1/models`)).json()) as { data: Array<{ id: string }> }).data[0]!.id;
  let polling = true;
  let slowest = 0;
  const poll = (async () => {
    while (polling) {
      const started = performance.now();
      await fetch(`${server.url}health`).then((r) => r.text());
      slowest = Math.max(slowest, performance.now() - started);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  })();
  for (const [face, cases] of Object.entries(faceCases(model))) await httpRound(tally(face), server.url, cases);
  polling = false;
  await poll;

  const alive = (): boolean => true;
  await liveRound(tally('tcp'), () => tcpWire(addresses.tcp!), [...common, ...oversized({ code: C.INVALID_REQUEST })], alive);
  const udpCases = [
    ...common.filter((c) => Buffer.byteLength(c.body) <= 65_507),
    ...[70_000].map((n) => ({ name: `oversized datagram ${n}`, body: 'x'.repeat(n), expect: {} })),
  ];
  // A datagram over 65507 bytes cannot be sent at all over IPv4; the server's own limit is that.
  await liveRound(
    tally('udp'),
    () => udpWire(addresses.udp!),
    udpCases.filter((c) => !c.name.startsWith('oversized')),
    alive,
  );
  const binary = Array.from({ length: 30 }, (_, i) => ({
    name: `binary frame ${i}`,
    body: Buffer.from(req('rkllm_is_running', {}, i)),
    binary: true,
    expect: { code: C.INVALID_REQUEST },
  }));
  await liveRound(tally('ws'), () => wsWire(addresses.ws!), [...common, ...binary, ...oversized({ close: 1009 })], alive);
  for (const origin of ['http://evil.example', 'null', 'https://127.0.0.1.evil.example'])
    for (let i = 0; i < 5; i++) {
      const wire = await wsWire(addresses.ws!, { origin });
      judge(tally('ws'), { name: `ws origin ${origin}`, body: '', expect: { status: 403 } }, await wire.next(TIMEOUT_MS));
      wire.close();
    }

  // Floods: many requests at once on one connection of each transport, every one answered.
  for (const t of ['tcp', 'ws', 'udp'] as const) {
    const wire = await (t === 'tcp' ? tcpWire(addresses.tcp!) : t === 'ws' ? wsWire(addresses.ws!) : udpWire(addresses.udp!));
    const n = t === 'udp' ? 100 : 500;
    for (let i = 0; i < n; i++) wire.send(req(i % 2 ? 'no_such' : 'rkllm_is_running', {}, i));
    let answered = 0;
    for (let i = 0; i < n; i++) if ((await wire.next(TIMEOUT_MS)) !== 'hang') answered++;
    const flood = tally(t);
    flood.tried += n;
    flood.correct += answered;
    flood.hangs += n - answered;
    wire.close();
  }
  const floods = await Promise.all(
    Array.from({ length: 300 }, (_, i) => server.http.call(i % 2 ? 'no_such' : 'rkllm_is_running', {}).catch(() => undefined)),
  );
  tally('http').tried += floods.length;
  tally('http').correct += floods.filter((r) => r !== undefined).length;
  tally('http').hangs += floods.filter((r) => r === undefined).length;

  // stdio: a spawned CLI with every network transport off.
  const child = spawn(process.execPath, [CLI, '--stdio', '--no-http', '--no-tcp', '--no-udp', '--no-ws', '--log-level', 'silent'], {
    stdio: ['pipe', 'pipe', 'ignore'],
  });
  let exited = false;
  child.on('exit', () => (exited = true));
  const stdio = queueWire(
    (d) => child.stdin.write(Buffer.concat([Buffer.from(d), Buffer.from('\n')])),
    () => child.stdin.end(),
  );
  child.stdout.on(
    'data',
    ndjson((line) => stdio.push(parseAnswer(line))),
  );
  child.stdin.on('error', () => {});
  stdio.send(req('rkllm_is_running', {}, 'ready'));
  await stdio.next(120_000);
  const big = Array.from({ length: 2 }, (_, i) => ({
    name: `oversized line ${i}`,
    body: 'x'.repeat(1024 * 1024 + 10),
    expect: { code: C.INVALID_REQUEST },
  }));
  await liveRound(
    tally('stdio'),
    async () => stdio,
    [...common, ...big],
    () => !exited,
    false,
  );

  // After the flood: the server still answers, and the watched stream lost nothing.
  const after = await server.http.call('rkllm_is_running', {});
  const { chunks, last } = await watched;
  const seqs = chunks.map((c) => c.seq);
  const lost = seqs.filter((s, i) => s !== i).length + (last.end ? 0 : 1);
  stdio.send(req('rkllm_is_running', {}, 'after'));
  const stdioAfter = await stdio.next(TIMEOUT_MS);

  process.stdout.write(`\nadversarial run, ${new Date().toISOString()}\n`);
  process.stdout.write(`transport   tried correct  wrong crashes  hangs\n`);
  let total = 0;
  for (const [t, s] of Object.entries(tallies)) {
    total += s.tried;
    process.stdout.write(
      `${t.padEnd(9)} ${[s.tried, s.correct, s.wrong, s.crashes, s.hangs].map((n) => String(n).padStart(7)).join('')}\n`,
    );
  }
  process.stdout.write(`total tried: ${total}\n`);
  process.stdout.write(`slowest GET /health while the faces were probed: ${slowest.toFixed(1)} ms\n`);
  for (const [t, s] of Object.entries(tallies)) for (const w of s.wrongs) process.stdout.write(`  wrong (${t}) ${w}\n`);
  process.stdout.write(
    `server answers after the flood: ${after.result ? 'yes' : 'NO'}; stdio: ${stdioAfter !== 'hang' ? 'yes' : 'NO'} (${exited ? 'exited' : 'running'})\n`,
  );
  process.stdout.write(
    `watched stream: ${chunks.length} chunks, final ${last.end ? 'received' : 'MISSING'} (${last.finish_reason}), seqs out of order or lost: ${lost}\n`,
  );
  stdio.close();
  await watcher.close();
  await server.close();
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`${(err as Error).stack}\n`);
    process.exit(1);
  },
);
