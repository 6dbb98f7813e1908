// MCP over stdio: the SDK's StdioClientTransport spawns the real bin (`rkllm-mcp --stdio`), which
// answers MCP and the RKLLM JSON-RPC methods on the same stdin/stdout. This needs a process of its
// own: the server reads its stdin and writes its stdout.
import { expect } from 'chai';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult, JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { TINY_MODEL_PROMPTS } from '../../src/gguf/builtin.js';
import { textOf, type Progress } from '../helpers/mcp.js';
import { greedy } from '../helpers/prompts.js';
import { TWIN_MODELS, buildTwin, slowLoad } from '../helpers/rkllm-twin.js';
import { CLI, scratchDir } from '../helpers/server-process.js';

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
    const after = (await client.callTool({ name: 'generate', arguments: { prompt: 'The King', max_new_tokens: 3, ...greedy } })) as CallToolResult;
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
      expect(spawned.stderr()).to.include('listening for connections');
    } finally {
      slow.finish();
    }
  });
});
