/** MCP clients for tests: the official SDK's `Client`, over Streamable HTTP or over a spawned `--stdio` server. */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { Client as ClientV2, StreamableHTTPClientTransport as StreamableHTTPClientTransportV2 } from '@modelcontextprotocol/client';

/** A connected SDK client and a way to close it. */
export interface McpConnection {
  client: Client;
  transport: StreamableHTTPClientTransport;
  close(): Promise<void>;
}

/** Connects (initialize and initialized) to `/mcp` of the server at `baseUrl` ("http://host:port/"). */
export async function connectHttp(baseUrl: string, headers: Record<string, string> = {}): Promise<McpConnection> {
  const client = new Client({ name: 'rkllm-mcp-test', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL('mcp', baseUrl), { requestInit: { headers } });
  await client.connect(transport);
  return { client, transport, close: () => client.close() };
}

/** The text content of a tool result. */
export function textOf(result: unknown): string {
  const content = (result as CallToolResult).content;
  return content.map((c) => (c.type === 'text' ? c.text : '')).join('');
}

/** The progress notifications of one tool call, in order. */
export interface Progress {
  progress: number;
  total?: number;
  message?: string;
}

/** A v2 SDK client (`@modelcontextprotocol/client`) on `/mcp`: `modern` pins 2026-07-28, `legacy` speaks 2025-11-25 with a session. */
export async function connectHttpV2(baseUrl: string, era: 'modern' | 'legacy', headers: Record<string, string> = {}): Promise<ClientV2> {
  const client = new ClientV2(
    { name: 'rkllm-mcp-test', version: '2.0.0' },
    { versionNegotiation: { mode: era === 'modern' ? { pin: '2026-07-28' } : 'legacy' } },
  );
  await client.connect(new StreamableHTTPClientTransportV2(new URL('mcp', baseUrl), { requestInit: { headers } }));
  return client;
}
