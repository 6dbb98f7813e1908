// Requests that arrive while the model loads wait for it (engine.load_wait_ms) on every transport;
// MCP's initialize answers at once. Loading (in the RKLLM runtime's worker process) waits for the
// test to open the twin's gate (slowLoad), so "while it loads" is certain.
import { expect } from 'chai';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { startServer } from '../../src/server.js';
import { TcpRpc } from '../helpers/live-rpc.js';
import { connectHttp, connectHttpV2 } from '../helpers/mcp.js';
import { TWIN_MODELS, buildTwin, slowLoad } from '../helpers/rkllm-twin.js';
import { HttpRpc } from '../helpers/rpc.js';
import { captureLog, testSettings } from '../helpers/server.js';

/** Starts a server on a model that loads only once `load()` is called. */
async function loadingServer(settings: Record<string, unknown> = {}) {
  const library = await buildTwin('1.3');
  const slow = slowLoad();
  const log = captureLog();
  const merged = {
    udp: { enabled: false },
    ws: { enabled: false },
    ...settings,
    engine: { kind: 'rkllm', model_path: TWIN_MODELS.story, rkllm: { library }, ...(settings.engine as object) },
  };
  slow.apply();
  const starting = startServer(testSettings(merged), log.log);
  const load = async (): Promise<void> => {
    slow.finish();
    await starting;
  };
  try {
    const bound = await log.line('transports bound');
    return {
      addresses: bound.addresses as Record<string, string>,
      log,
      load,
      loaded: () => log.lines.some((l) => String(l.msg).includes('listening for connections')),
      /** Lets the load finish, whatever happened, and closes the server. */
      close: async (): Promise<void> => {
        slow.finish();
        await (await starting).close();
      },
    };
  } catch (err) {
    slow.finish();
    throw err;
  }
}

describe('requests while the model loads', function () {
  this.timeout(120_000);

  it('wait for the model on HTTP, TCP and MCP, and are answered once it has loaded; MCP initialize answers at once', async () => {
    const server = await loadingServer();
    try {
      const url = `http://${server.addresses.http}/`;
      const mcp = await connectHttp(url);
      expect((await mcp.client.listTools()).tools).to.have.lengthOf(4);
      const modern = await connectHttpV2(url, 'modern');
      const tcp = await TcpRpc.connect(server.addresses.tcp!);
      try {
        const call = mcp.client.callTool({ name: 'generate', arguments: { prompt: 'Once upon a time', max_new_tokens: 8 } });
        const modernCall = modern.callTool({ name: 'generate', arguments: { prompt: 'Once upon a time', max_new_tokens: 8 } });
        const overHttp = new HttpRpc(url).call('rkllm_is_running', {}, 'early-http');
        const overTcp = tcp.call('rkllm_is_running', {}, 'early-tcp');
        // Everything above was sent, and MCP answers a ping (2025; 2026-07-28 has none), while the model is still loading.
        await mcp.client.ping();
        expect(server.loaded()).to.equal(false);
        await server.load();
        const result = (await call) as CallToolResult;
        expect(result.isError).to.not.equal(true);
        expect(result.structuredContent).to.have.property('finish_reason');
        expect((await modernCall).structuredContent, '2026-07-28').to.have.property('finish_reason');
        expect((await overHttp).result).to.deep.include({ running: false });
        expect((await overTcp).result).to.deep.include({ running: false });
        expect(server.loaded()).to.equal(true);
      } finally {
        await tcp.close();
        await mcp.close();
        await modern.close();
      }
    } finally {
      await server.close();
    }
  });

  it('are refused with -32004 once engine.load_wait_ms has passed, over JSON-RPC and as a tool error result', async () => {
    const server = await loadingServer({ engine: { load_wait_ms: 50 } });
    try {
      const url = `http://${server.addresses.http}/`;
      const refused = await new HttpRpc(url).call('rkllm_is_running', {}, 'early');
      expect(refused.error).to.deep.include({ code: -32004 });
      expect(refused.error!.message).to.match(/still loading after 50 ms \(setting engine\.load_wait_ms\)/);
      const mcp = await connectHttp(url);
      try {
        const result = (await mcp.client.callTool({ name: 'model_info', arguments: {} })) as CallToolResult;
        expect(result.isError).to.equal(true);
        expect(server.loaded()).to.equal(false);
      } finally {
        await mcp.close();
      }
    } finally {
      await server.close();
    }
  });
});

describe('the OpenAI and Ollama APIs while the model loads', function () {
  this.timeout(120_000);

  it('answer 503 with Retry-After in their own shapes, then serve once the model has loaded', async () => {
    const server = await loadingServer();
    try {
      const base = `http://${server.addresses.http}`;
      const body = JSON.stringify({ model: 'any', messages: [{ role: 'user', content: 'Once' }], max_tokens: 3 });
      const openai = await fetch(`${base}/v1/chat/completions`, { method: 'POST', body });
      expect(openai.status).to.equal(503);
      expect(openai.headers.get('retry-after')).to.equal('1');
      expect(((await openai.json()) as { error: { message: string } }).error.message)
        .to.be.a('string')
        .and.not.equal('');
      const ollama = await fetch(`${base}/api/tags`);
      expect(ollama.status).to.equal(503);
      expect(Object.keys((await ollama.json()) as object)).to.deep.equal(['error']);
      expect(server.loaded()).to.equal(false);
      await server.load();
      const models = (await (await fetch(`${base}/v1/models`)).json()) as { data: Array<{ id: string }> };
      expect(models.data.map((m) => m.id)).to.deep.equal(['story']);
    } finally {
      await server.close();
    }
  });
});
