// MCP over Streamable HTTP at /mcp, with the official SDK's Client against a server in this process.
import { expect } from 'chai';
import { request } from 'node:http';
import {
  LoggingMessageNotificationSchema,
  ResourceUpdatedNotificationSchema,
  type CallToolResult,
} from '@modelcontextprotocol/sdk/types.js';
import OpenAI from 'openai';
import { TINY_MODEL_PROMPTS } from '../../src/gguf/builtin.js';
import { liveFixture } from '../helpers/fixture.js';
import { LOG_LEVEL_META_KEY, type Client as ClientV2 } from '@modelcontextprotocol/client';
import { connectHttp, connectHttpV2, textOf, type McpConnection, type Progress } from '../helpers/mcp.js';
import { greedy } from '../helpers/prompts.js';
import { HttpRpc } from '../helpers/rpc.js';
import { startTestServer } from '../helpers/server.js';
import { until } from '../helpers/until.js';

const KEY_A = 'alpha-key-0123456789abcdef';
const KEY_B = 'bravo-key-0123456789abcdef';
/** A prompt whose prefill takes long enough to cancel it before the first token. */
const SLOW_PROMPT = 'Alice was beginning to get very tired of sitting by her sister on the bank. '.repeat(115); // about 1,840 tokens of the built-in model: a prefill long enough to cancel inside

/** POSTs an initialize with a Host header of our choosing (fetch does not let one set Host). */
function statusWithHost(url: string, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method: 'POST', headers: { host, 'content-type': 'application/json', accept: 'application/json, text/event-stream' } },
      (res) => {
        res.resume();
        resolve(res.statusCode!);
      },
    );
    req.on('error', reject);
    req.end(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }));
  });
}

describe('MCP over Streamable HTTP (/mcp)', function () {
  this.timeout(120_000);
  // Its tests open more sessions, all from one address without keys, than mcp.max_sessions_per_key lets stay open.
  const fixture = liveFixture({ settings: { mcp: { max_sessions_per_key: 256 } } });
  let connections: McpConnection[] = [];
  const connect = async (headers?: Record<string, string>): Promise<McpConnection> => {
    const connection = await connectHttp(fixture.server.url, headers);
    connections.push(connection);
    return connection;
  };
  afterEach(async () => {
    await Promise.all(connections.map((c) => c.close()));
    connections = [];
  });

  it('initializes with a session id, and lists the four tools with input and output schemas', async () => {
    const { client, transport } = await connect();
    expect(transport.sessionId).to.be.a('string').with.length.above(10);
    expect(client.getServerVersion()).to.include({ name: 'rkllm-mcp' });
    expect(client.getServerCapabilities()).to.include.keys('tools', 'resources');
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name)).to.have.members(['generate', 'chat', 'embed', 'model_info']);
    const generate = tools.find((t) => t.name === 'generate')!;
    expect(generate.inputSchema.properties).to.have.keys([
      'prompt',
      'max_new_tokens',
      'temperature',
      'top_k',
      'top_p',
      'repeat_penalty',
      'stop',
      'model',
    ]);
    expect(generate.inputSchema.required).to.deep.equal(['prompt']);
    expect(generate.outputSchema!.properties).to.have.keys(['text', 'finish_reason', 'perf']);
    const chat = tools.find((t) => t.name === 'chat')!;
    expect(chat.inputSchema.properties).to.include.keys('messages', 'session', 'temperature');
    for (const tool of tools) expect(tool.outputSchema, tool.name).to.be.an('object');
  });

  it('tool calls are counted in the metrics like every other request, by tool', async () => {
    const { client } = await connect();
    const count = async (): Promise<number> => {
      const text = await (await fetch(`${fixture.server.url}metrics`)).text();
      const line = text
        .split('\n')
        .find((l) => l.startsWith('rkllm_request_duration_seconds_count{') && l.includes('method="mcp/model_info"'));
      return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
    };
    const before = await count();
    await client.callTool({ name: 'model_info', arguments: {} });
    await client.callTool({ name: 'model_info', arguments: {} });
    expect(await count()).to.equal(before + 2);
  });

  it('generate: the greedy text equals rkllm_run for the same prompt, as content and structuredContent', async () => {
    const { client } = await connect();
    const args = { prompt: TINY_MODEL_PROMPTS.long, max_new_tokens: 40, ...greedy };
    const result = (await client.callTool({ name: 'generate', arguments: args })) as CallToolResult;
    const expected = await fixture.http.result('rkllm_run', { prompt_input: args.prompt, max_new_tokens: 40, ...greedy });
    expect(result.isError).to.not.equal(true);
    expect(expected.text).to.have.length.above(20);
    expect(textOf(result)).to.equal(expected.text);
    expect(result.structuredContent).to.deep.include({ text: expected.text, finish_reason: 'length' });
    expect((result.structuredContent as { perf: { generate_tokens: number } }).perf.generate_tokens).to.equal(40);
  });

  it('streams each new piece of text as a progress notification; joined, they are the final text', async () => {
    const { client } = await connect();
    const seen: Progress[] = [];
    const args = { prompt: TINY_MODEL_PROMPTS.multiByte, max_new_tokens: 100, ...greedy };
    const result = await client.callTool({ name: 'generate', arguments: args }, undefined, { onprogress: (p) => void seen.push(p) });
    expect(seen.length).to.be.above(10);
    expect(seen.map((p) => p.message).join('')).to.equal(textOf(result));
    expect(seen.every((p) => p.total === 100)).to.equal(true);
    const counts = seen.map((p) => p.progress);
    expect(counts).to.deep.equal([...counts].sort((a, b) => a - b));
    expect(new Set(counts).size).to.equal(counts.length);
  });

  it('stop sequences end the text before the first one, also in the progress messages', async () => {
    const { client } = await connect();
    const full = textOf(
      await client.callTool({ name: 'generate', arguments: { prompt: TINY_MODEL_PROMPTS.long, max_new_tokens: 60, ...greedy } }),
    );
    const stop = full.slice(20, 24);
    const seen: Progress[] = [];
    const args = { prompt: TINY_MODEL_PROMPTS.long, max_new_tokens: 60, stop: [stop], ...greedy };
    const result = (await client.callTool({ name: 'generate', arguments: args }, undefined, {
      onprogress: (p) => void seen.push(p),
    })) as CallToolResult;
    expect(textOf(result)).to.equal(full.slice(0, full.indexOf(stop)));
    expect(result.structuredContent).to.deep.include({ finish_reason: 'stop' });
    expect(seen.map((p) => p.message).join('')).to.equal(textOf(result));
  });

  it("chat goes through the model's chat template: its answer equals the OpenAI face's for the same conversation", async () => {
    const { client } = await connect();
    const messages = [
      { role: 'system' as const, content: 'You tell stories.' },
      { role: 'user' as const, content: 'Alice was' },
      { role: 'assistant' as const, content: 'beginning to get very tired' },
      { role: 'user' as const, content: 'and then?' },
    ];
    const chat = (await client.callTool({ name: 'chat', arguments: { messages, max_new_tokens: 20, ...greedy } })) as CallToolResult;
    const openai = new OpenAI({ baseURL: `${fixture.server.url}v1`, apiKey: 'unused', maxRetries: 0 });
    const completion = await openai.chat.completions.create({
      model: (await openai.models.list()).data[0]!.id,
      messages,
      max_tokens: 20,
      temperature: 0,
      top_k: 1,
      repeat_penalty: 1,
    } as OpenAI.ChatCompletionCreateParamsNonStreaming);
    expect(textOf(chat)).to.have.length.above(10);
    expect(textOf(chat)).to.equal(completion.choices[0]!.message.content);
  });

  it('chat keeps a session between calls; another session starts fresh', async () => {
    const { client } = await connect();
    const first = (await client.callTool({
      name: 'chat',
      arguments: { messages: [{ role: 'user', content: 'Alice was' }], session: 'tea-party', max_new_tokens: 10, ...greedy },
    })) as CallToolResult;
    expect(first.structuredContent).to.deep.include({ session: 'tea-party', turns: 2 });
    const second = (await client.callTool({
      name: 'chat',
      arguments: { messages: [{ role: 'user', content: 'and then?' }], session: 'tea-party', max_new_tokens: 10, ...greedy },
    })) as CallToolResult;
    expect(second.structuredContent).to.deep.include({ turns: 4 });
    // The same conversation sent whole, without a session, gives the same answer: the history was kept.
    const whole = (await client.callTool({
      name: 'chat',
      arguments: {
        messages: [
          { role: 'user', content: 'Alice was' },
          { role: 'assistant', content: textOf(first) },
          { role: 'user', content: 'and then?' },
        ],
        max_new_tokens: 10,
        ...greedy,
      },
    })) as CallToolResult;
    expect(whole.structuredContent).to.deep.include({ turns: 4 });
    expect(textOf(whole)).to.equal(textOf(second));
    const other = (await client.callTool({
      name: 'chat',
      arguments: { messages: [{ role: 'user', content: 'and then?' }], session: 'croquet', max_new_tokens: 10, ...greedy },
    })) as CallToolResult;
    expect(other.structuredContent).to.deep.include({ turns: 2 });
  });

  it('cancelling a call stops its generation, during decoding and during prefill, and frees the engine', async () => {
    const { client } = await connect();
    const { streams } = fixture.server;
    for (const phase of ['decoding', 'prefill'] as const) {
      const abort = new AbortController();
      let cancelledAt = 0;
      const cancel = (): void => {
        if (cancelledAt > 0) return;
        cancelledAt = performance.now();
        abort.abort();
      };
      const runsBefore = streams.runs;
      const prompt = phase === 'prefill' ? SLOW_PROMPT : TINY_MODEL_PROMPTS.long;
      const call = client.callTool({ name: 'generate', arguments: { prompt, max_new_tokens: 100 } }, undefined, {
        signal: abort.signal,
        onprogress: cancel,
      });
      const settled = call.then(
        () => 'answered',
        (err: Error) => err.name,
      );
      if (phase === 'prefill') {
        await streams.until(() => streams.runs > runsBefore, 'the stream to run');
        cancel();
      }
      expect(await settled, phase).to.equal('McpError');
      await streams.until(() => streams.live === 0, 'the cancelled stream to end');
      const stoppedMs = performance.now() - cancelledAt;
      if (process.env.MCP_REPORT) process.stderr.write(`${phase}: stopped ${stoppedMs.toFixed(1)} ms after the cancellation\n`);
      const ended = streams.finals.get(streams.startedIds.at(-1)!)!;
      expect(ended.finish_reason, phase).to.equal('abort');
      expect(ended.perf!.generate_tokens, phase).to.be.below(phase === 'prefill' ? 1 : 100);
      expect(stoppedMs, `${phase}: stopped ${stoppedMs.toFixed(1)} ms after the cancellation`).to.be.below(1000);
    }
    expect(await fixture.http.result('rkllm_is_running', {})).to.deep.equal({ running: false, active: 0, queued: 0 });
    const after = (await client.callTool({
      name: 'generate',
      arguments: { prompt: 'The King', max_new_tokens: 5, ...greedy },
    })) as CallToolResult;
    expect(after.structuredContent).to.deep.include({ finish_reason: 'length' });
  });

  it('a client that goes away before the result cancels its call: the generation stops and frees the engine', async () => {
    const { transport } = await connect();
    const { streams } = fixture.server;
    const gone = new AbortController();
    const runsBefore = streams.runs;
    const res = await fetch(`${fixture.server.url}mcp`, {
      method: 'POST',
      signal: gone.signal,
      headers: {
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-session-id': transport.sessionId!,
        'mcp-protocol-version': transport.protocolVersion ?? '2025-06-18',
      },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 'vanishing',
        method: 'tools/call',
        params: { name: 'generate', arguments: { prompt: TINY_MODEL_PROMPTS.long, max_new_tokens: 1500, temperature: 0 } },
      }),
    });
    expect(res.status).to.equal(200);
    await streams.until(() => streams.runs > runsBefore, 'the call to run');
    gone.abort();
    await streams.until(() => streams.live === 0, 'the abandoned stream to end');
    const ended = streams.finals.get(streams.startedIds.at(-1)!)!;
    expect(ended.finish_reason).to.equal('abort');
    expect(ended.perf!.generate_tokens).to.be.below(1500);
  });

  it('embed returns one vector per input, from the last hidden layer', async () => {
    const { client } = await connect();
    const one = (await client.callTool({ name: 'embed', arguments: { input: 'The Queen' } })) as CallToolResult;
    const { vectors, dimensions } = one.structuredContent as { vectors: number[][]; dimensions: number };
    expect(vectors).to.have.lengthOf(1);
    expect(dimensions).to.be.above(0).and.equal(vectors[0]!.length);
    const two = (await client.callTool({ name: 'embed', arguments: { input: ['The Queen', 'The King'] } })) as CallToolResult;
    const both = (two.structuredContent as { vectors: number[][] }).vectors;
    expect(both[0]).to.deep.equal(vectors[0]);
    expect(both[1]).to.not.deep.equal(vectors[0]);
  });

  it('model_info and rkllm://model describe the model; rkllm://streams/{id} reads a stream started over JSON-RPC', async () => {
    const { client } = await connect();
    const info = (await client.callTool({ name: 'model_info', arguments: {} })) as CallToolResult;
    expect(info.structuredContent).to.include({ engine: 'llama.cpp', slots: 4, queue_limit: 64 });
    const model = await client.readResource({ uri: 'rkllm://model' });
    expect(JSON.parse((model.contents[0] as { text: string }).text)).to.deep.equal(info.structuredContent);
    const { resourceTemplates } = await client.listResourceTemplates();
    expect(resourceTemplates.map((t) => t.uriTemplate)).to.include('rkllm://streams/{stream_id}');
    const params = { prompt_input: TINY_MODEL_PROMPTS.long, max_new_tokens: 30, ...greedy };
    const { stream_id } = await fixture.http.start(params);
    await fixture.server.streams.untilEnded(stream_id);
    const read = await client.readResource({ uri: `rkllm://streams/${stream_id}` });
    const stream = JSON.parse((read.contents[0] as { text: string }).text);
    expect(stream).to.deep.include({
      stream_id,
      ended: true,
      finish_reason: 'length',
      text: (await fixture.http.result('rkllm_run', params)).text,
    });
    const missing = await client.readResource({ uri: 'rkllm://streams/st_nope' }).then(
      () => undefined,
      (err: { code: number }) => err.code,
    );
    expect(missing).to.equal(-32602);
  });

  it("prompts render messages; completions offer their arguments, the models and the caller's streams", async () => {
    const { client } = await connect();
    expect(client.getServerCapabilities()).to.include.keys('prompts', 'completions', 'logging');
    const { prompts } = await client.listPrompts();
    expect(prompts.map((p) => p.name)).to.have.members(['summarize', 'translate', 'classify', 'extract-json']);
    expect(prompts.find((p) => p.name === 'translate')!.arguments!.map((a) => [a.name, a.required])).to.deep.include(['language', true]);
    const got = await client.getPrompt({ name: 'translate', arguments: { text: 'Bonjour', language: 'German' } });
    expect((got.messages[0]!.content as { text: string }).text).to.match(/into German[\s\S]*Bonjour$/);
    const complete = async (ref: object, name: string, value: string): Promise<string[]> =>
      (await client.complete({ ref: ref as { type: 'ref/prompt'; name: string }, argument: { name, value } })).completion.values;
    expect(await complete({ type: 'ref/prompt', name: 'translate' }, 'language', 'fr')).to.deep.equal(['French']);
    expect(await complete({ type: 'ref/prompt', name: 'classify' }, 'labels', 'sp')).to.deep.equal(['spam,not spam']);
    expect(await complete({ type: 'ref/prompt', name: 'generate' }, 'model', '')).to.have.length.above(0);
    expect(await complete({ type: 'ref/prompt', name: 'nothing' }, 'language', '')).to.deep.equal([]);
    const { stream_id } = await fixture.http.start({ prompt_input: SLOW_PROMPT, max_new_tokens: 3, ...greedy });
    expect(await complete({ type: 'ref/resource', uri: 'rkllm://streams/{stream_id}' }, 'stream_id', '')).to.include(stream_id);
    await fixture.server.streams.untilEnded(stream_id);
  });

  it("logging/setLevel picks which of its own calls' warnings and refusals a session gets as log notifications", async () => {
    const { client } = await connect();
    const other = await connect();
    const logs: { client: string; level: string; data: unknown }[] = [];
    client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => void logs.push({ client: 'a', ...n.params }));
    other.client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => void logs.push({ client: 'b', ...n.params }));
    await client.setLoggingLevel('warning');
    await client.callTool({ name: 'generate', arguments: { prompt: 'The fox', max_new_tokens: 2, ...greedy } });
    await client.callTool({ name: 'generate', arguments: { prompt: 'x', max_new_tokens: 999_999 } });
    expect(logs.map((l) => [l.client, l.level])).to.deep.equal([
      ['a', 'warning'],
      ['a', 'warning'],
    ]);
    expect(String(logs[1]!.data)).to.match(/refused.*max_new_tokens/);
    await client.setLoggingLevel('error');
    await client.callTool({ name: 'generate', arguments: { prompt: 'x', max_new_tokens: 999_999 } });
    expect(logs).to.have.length(2);
  });

  it('resources/subscribe: a stream of its own tells of new text, the model of loads; unsubscribing stops them', async () => {
    const { client } = await connect();
    const updated: string[] = [];
    client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => void updated.push(n.params.uri));
    expect(client.getServerCapabilities()!.resources).to.include({ subscribe: true });
    const { stream_id } = await fixture.http.start({ prompt_input: SLOW_PROMPT, max_new_tokens: 20, ...greedy });
    const uri = `rkllm://streams/${stream_id}`;
    await client.subscribeResource({ uri });
    await fixture.server.streams.untilEnded(stream_id);
    await until(() => updated.includes(uri), 'a resources/updated for the stream');
    await client.unsubscribeResource({ uri });
    const other = await client.subscribeResource({ uri: 'rkllm://streams/st_nope' }).catch((err: { code: number }) => err.code);
    expect(other).to.equal(-32602);
    await client.subscribeResource({ uri: 'rkllm://model' });
    // The default model unloaded, then loaded again by the next call.
    expect(await fixture.http.result('models_unload', { model: 'rkllm-tiny' })).to.deep.include({ unloading: true });
    await client.callTool({ name: 'model_info', arguments: {} });
    await until(() => updated.filter((u) => u === 'rkllm://model').length >= 3, 'unloaded, loading, loaded');
    await client.unsubscribeResource({ uri: 'rkllm://model' });
    const told = updated.length;
    await fixture.http.result('models_unload', { model: 'rkllm-tiny' });
    await client.callTool({ name: 'model_info', arguments: {} });
    expect(updated).to.have.length(told);
  });

  it('bad arguments and unknown tools get errors, and the session survives them', async () => {
    const { client } = await connect();
    const bad = (await client.callTool({ name: 'generate', arguments: { prompt: 7 } }).catch((err: Error) => err)) as
      CallToolResult | Error;
    if (bad instanceof Error) expect(bad.message).to.match(/prompt/);
    else expect(bad.isError).to.equal(true);
    const tooMany = (await client.callTool({ name: 'generate', arguments: { prompt: 'x', max_new_tokens: 999_999 } })) as CallToolResult;
    expect(tooMany.isError).to.equal(true);
    expect(textOf(tooMany)).to.match(/max_new_tokens/);
    const unknown = await client.callTool({ name: 'no_such_tool', arguments: {} }).catch((err: Error) => err);
    expect(unknown instanceof Error ? unknown.message : textOf(unknown)).to.match(/no_such_tool/);
    const ok = (await client.callTool({
      name: 'generate',
      arguments: { prompt: 'The fox', max_new_tokens: 3, ...greedy },
    })) as CallToolResult;
    expect(ok.structuredContent).to.deep.include({ finish_reason: 'length' });
  });

  it('refuses a foreign Origin and Host (DNS rebinding) with 403, and a request without a session with 400', async () => {
    const url = `${fixture.server.url}mcp`;
    const init = {
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'x', version: '1' } },
    };
    const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
    const post = (extra: Record<string, string>, body: unknown = init) =>
      fetch(url, { method: 'POST', headers: { ...headers, ...extra }, body: JSON.stringify(body) });
    expect((await post({ origin: 'http://evil.example' })).status).to.equal(403);
    expect(await statusWithHost(url, 'evil.example:80')).to.equal(403);
    // Another local page (the port of the MCP Inspector's UI) is foreign too, unless http.allowed_origins lists it.
    expect((await post({ origin: 'http://localhost:6274' })).status).to.equal(403);
    const local = await post({ origin: `http://${fixture.server.addresses.http}` });
    expect(local.status).to.equal(200);
    expect(local.headers.get('mcp-session-id')).to.be.a('string');
    await local.body?.cancel();
    expect((await post({}, { jsonrpc: '2.0', id: 2, method: 'tools/list' })).status).to.equal(400);
    expect((await fetch(url, { headers: { accept: 'text/event-stream', 'mcp-session-id': 'nope' } })).status).to.equal(404);
  });

  it('DELETE ends a session', async () => {
    const { client, transport } = await connect();
    await transport.terminateSession();
    const after = await client.listTools().catch((err: Error) => err);
    expect(after).to.be.an('error');
  });
});

describe('MCP over HTTP with API keys', function () {
  this.timeout(120_000);
  const fixture = liveFixture({ settings: { auth: { api_keys: [KEY_A, KEY_B] } } });

  it('needs a Bearer key; a session belongs to its key, and so do the streams a caller may read', async () => {
    const refused = await connectHttp(fixture.server.url).then(
      () => 'connected',
      (err: Error) => err.message,
    );
    expect(refused).to.match(/401|Unauthorized/);
    const a = await connectHttp(fixture.server.url, { authorization: `Bearer ${KEY_A}` });
    const b = await connectHttp(fixture.server.url, { authorization: `Bearer ${KEY_B}` });
    try {
      const result = (await a.client.callTool({
        name: 'generate',
        arguments: { prompt: 'The King', max_new_tokens: 5, ...greedy },
      })) as CallToolResult;
      expect(result.structuredContent).to.deep.include({ finish_reason: 'length' });
      // B's key on A's session: as good as unknown.
      const res = await fetch(`${fixture.server.url}mcp`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          authorization: `Bearer ${KEY_B}`,
          'mcp-session-id': a.transport.sessionId!,
          'mcp-protocol-version': '2025-06-18',
        },
        body: JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/list' }),
      });
      expect(res.status).to.equal(404);
      const rpcA = new HttpRpc(fixture.server.url, { authorization: `Bearer ${KEY_A}` });
      const { stream_id } = await rpcA.start({ prompt_input: 'The fox', max_new_tokens: 5 });
      await fixture.server.streams.untilEnded(stream_id);
      expect(
        JSON.parse(((await a.client.readResource({ uri: `rkllm://streams/${stream_id}` })).contents[0] as { text: string }).text),
      ).to.include({ ended: true });
      const hidden = await b.client.readResource({ uri: `rkllm://streams/${stream_id}` }).then(
        () => undefined,
        (err: { code: number }) => err.code,
      );
      expect(hidden).to.equal(-32602);
      // 2026-07-28 (no sessions): the key of each request, and the streams it may read and complete.
      const refusedV2 = await connectHttpV2(fixture.server.url, 'modern').then(
        () => 'connected',
        (err: Error) => err.message,
      );
      expect(refusedV2).to.match(/401|Unauthorized/);
      const a2 = await connectHttpV2(fixture.server.url, 'modern', { authorization: `Bearer ${KEY_A}` });
      const b2 = await connectHttpV2(fixture.server.url, 'modern', { authorization: `Bearer ${KEY_B}` });
      try {
        const own = await a2.readResource({ uri: `rkllm://streams/${stream_id}` });
        expect(JSON.parse((own.contents[0] as { text: string }).text)).to.include({ ended: true });
        const other = await b2.readResource({ uri: `rkllm://streams/${stream_id}` }).then(
          () => undefined,
          (err: { code: number }) => err.code,
        );
        expect(other).to.equal(-32602);
      } finally {
        await Promise.all([a2.close(), b2.close()]);
      }
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });
});

describe('MCP over HTTP with a full queue', function () {
  this.timeout(120_000);

  it('answers a tool call with an error result that says when to retry', async () => {
    await using server = await startTestServer({ settings: { engine: { parallel: 1, queue_limit: 0 } } });
    const a = await connectHttp(server.url);
    try {
      const abort = new AbortController();
      const running = a.client.callTool(
        { name: 'generate', arguments: { prompt: TINY_MODEL_PROMPTS.long, max_new_tokens: 2000 } },
        undefined,
        {
          signal: abort.signal,
        },
      );
      const failed = running.catch(() => undefined);
      await server.streams.until(() => server.streams.runs > 0, 'the first run');
      const busy = (await a.client.callTool({ name: 'generate', arguments: { prompt: 'x', max_new_tokens: 2 } })) as CallToolResult;
      expect(busy.isError).to.equal(true);
      expect(textOf(busy)).to.match(/busy.*Retry after 1 s/i);
      abort.abort();
      await failed;
    } finally {
      await a.close();
    }
  });
});

describe('MCP 2026-07-28 over HTTP, with the v2 client', function () {
  this.timeout(120_000);
  const fixture = liveFixture();
  let clients: ClientV2[] = [];
  const connect = async (era: 'modern' | 'legacy' = 'modern'): Promise<ClientV2> => {
    const client = await connectHttpV2(fixture.server.url, era);
    clients.push(client);
    return client;
  };
  afterEach(async () => {
    await Promise.all(clients.map((c) => c.close()));
    clients = [];
  });

  it('negotiates 2026-07-28 (or 2025-11-25 when asked): tools, progress, prompts, completions and resources in both', async () => {
    for (const era of ['modern', 'legacy'] as const) {
      const client = await connect(era);
      expect(client.getNegotiatedProtocolVersion(), era).to.equal(era === 'modern' ? '2026-07-28' : '2025-11-25');
      expect((await client.listTools()).tools.map((t) => t.name)).to.have.members(['generate', 'chat', 'embed', 'model_info']);
      const progress: string[] = [];
      const args = { prompt: TINY_MODEL_PROMPTS.long, max_new_tokens: 30, ...greedy };
      const result = await client.callTool(
        { name: 'generate', arguments: args },
        { onprogress: (p) => void progress.push(p.message ?? '') },
      );
      const text = (await fixture.http.result('rkllm_run', { prompt_input: args.prompt, max_new_tokens: 30, ...greedy })).text;
      expect(result.structuredContent, era).to.deep.include({ text, finish_reason: 'length' });
      expect(progress.join(''), era).to.equal(text);
      expect((await client.listPrompts()).prompts, era).to.have.length(4);
      const done = await client.complete({ ref: { type: 'ref/prompt', name: 'translate' }, argument: { name: 'language', value: 'Ge' } });
      expect(done.completion.values, era).to.deep.equal(['German']);
      const model = await client.readResource({ uri: 'rkllm://model' });
      expect(JSON.parse((model.contents[0] as { text: string }).text), era).to.include({ engine: 'llama.cpp' });
    }
  });

  it('log notifications follow the level each request carries (2026-07-28: the _meta log level)', async () => {
    const client = await connect();
    const logs: string[] = [];
    client.setNotificationHandler('notifications/message', (n) => void logs.push(`${n.params.level} ${String(n.params.data)}`));
    const call = (level: string): Promise<unknown> =>
      client.callTool({ name: 'generate', arguments: { prompt: 'x', max_new_tokens: 999_999 }, _meta: { [LOG_LEVEL_META_KEY]: level } });
    await call('warning');
    expect(logs).to.have.length(1);
    expect(logs[0]).to.match(/^warning generate refused: .*max_new_tokens/);
    await call('error');
    expect(logs).to.have.length(1);
  });

  it('a response stream the client closes (and nothing else) cancels its call: the generation stops', async () => {
    const { streams } = fixture.server;
    const runsBefore = streams.runs;
    const gone = new AbortController();
    // Without a progressToken the answer is one JSON body at the end: the client goes away before it.
    const answered = fetch(`${fixture.server.url}mcp`, {
      method: 'POST',
      signal: gone.signal,
      headers: {
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-protocol-version': '2026-07-28',
        'mcp-method': 'tools/call',
        'mcp-name': 'generate',
      },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 'vanishing',
        method: 'tools/call',
        params: {
          name: 'generate',
          arguments: { prompt: TINY_MODEL_PROMPTS.long, max_new_tokens: 1500, temperature: 0 },
          _meta: {
            'io.modelcontextprotocol/protocolVersion': '2026-07-28',
            'io.modelcontextprotocol/clientCapabilities': {},
            'io.modelcontextprotocol/clientInfo': { name: 'raw', version: '1' },
          },
        },
      }),
    });
    await streams.until(() => streams.runs > runsBefore, 'the call to run');
    gone.abort();
    expect(
      await answered.then(
        () => 'answered',
        () => 'gone',
      ),
    ).to.equal('gone');
    await streams.until(() => streams.live === 0, 'the abandoned stream to end');
    expect(streams.finals.get(streams.startedIds.at(-1)!)!.finish_reason).to.equal('abort');
  });

  it('a call the client aborts (its response stream closed) stops its generation and frees the engine', async () => {
    const client = await connect();
    const { streams } = fixture.server;
    const runsBefore = streams.runs;
    const abort = new AbortController();
    const call = client.callTool(
      { name: 'generate', arguments: { prompt: TINY_MODEL_PROMPTS.long, max_new_tokens: 1500, temperature: 0 } },
      { signal: abort.signal, onprogress: () => {} },
    );
    await streams.until(() => streams.runs > runsBefore, 'the call to run');
    abort.abort();
    expect(
      await call.then(
        () => 'answered',
        () => 'aborted',
      ),
    ).to.equal('aborted');
    await streams.until(() => streams.live === 0, 'the aborted stream to end');
    const ended = streams.finals.get(streams.startedIds.at(-1)!)!;
    expect(ended.finish_reason).to.equal('abort');
    expect(ended.perf!.generate_tokens).to.be.below(1500);
  });
});

describe('MCP 2026-07-28 subscriptions/listen, with the v2 client', function () {
  this.timeout(120_000);
  const fixture = liveFixture();

  it('a listen on a stream of its own and on the model tells of new text and of loads; closing it stops them', async () => {
    const client = await connectHttpV2(fixture.server.url, 'modern');
    try {
      const updated: string[] = [];
      client.setNotificationHandler('notifications/resources/updated', (n) => void updated.push(n.params.uri));
      const { stream_id } = await fixture.http.start({ prompt_input: SLOW_PROMPT, max_new_tokens: 20, ...greedy });
      const uri = `rkllm://streams/${stream_id}`;
      const subscription = await client.listen({ resourceSubscriptions: [uri, 'rkllm://model'] });
      await until(() => updated.includes(uri), 'a resources/updated for the stream');
      await fixture.http.result('models_unload', { model: 'rkllm-tiny' });
      await until(() => updated.includes('rkllm://model'), 'a resources/updated for the model');
      await subscription.close();
      expect(await subscription.closed).to.equal('local');
    } finally {
      await client.close();
    }
  });
});
