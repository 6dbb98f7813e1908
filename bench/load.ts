/**
 * Load for the bench's clients (run on the worker thread): many keep-alive HTTP requests, SSE
 * streams of llama-server, and bursts of streams over a live transport.
 */
import { Agent, request } from 'node:http';
import { connectLive, type LiveTransport } from '../test/helpers/live-rpc.js';
import type { Chunk } from '../src/streams/stream.js';

/**
 * One request on a keep-alive `agent` (a body makes it a POST): the status, and the body's text,
 * decoded only when asked (the request-rate load reads none). Node's own HTTP client: per request
 * it costs a fraction of what `fetch` does, which matters when the client shares this machine's
 * two cores with the server it measures.
 */
export function send(agent: Agent, url: URL, body: string | undefined): Promise<{ status: number; text: () => string }> {
  const headers = body === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) };
  return new Promise((resolve, reject) => {
    const req = request(
      { agent, host: url.hostname, port: url.port, path: url.pathname, method: body === undefined ? 'GET' : 'POST', headers },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (part: Buffer) => parts.push(part));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: () => Buffer.concat(parts).toString('utf8') }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** A keep-alive agent as the bench's clients use: one socket per concurrent request, no Nagle delay. */
export function benchAgent(connections: number): Agent {
  return new Agent({ keepAlive: true, maxSockets: connections, noDelay: true });
}

/** `connections` keep-alive connections sending `method` to `url` (a body makes it a POST) back to back for `seconds`. */
export async function requestsPerSecond(url: string, body: string | undefined, connections: number, seconds: number): Promise<number> {
  const agent = benchAgent(connections);
  const target = new URL(url);
  const one = async (): Promise<void> => {
    const { status } = await send(agent, target, body);
    if (status !== 200) throw new Error(`HTTP ${status} from ${url}`);
  };
  let done = 0;
  const until = performance.now() + seconds * 1000;
  const loop = async (): Promise<void> => {
    while (performance.now() < until) {
      await one();
      done++;
    }
  };
  // Warm the connections first, then count.
  await Promise.all(Array.from({ length: connections }, one));
  const started = performance.now();
  await Promise.all(Array.from({ length: connections }, loop));
  const elapsed = (performance.now() - started) / 1000;
  agent.destroy();
  return done / elapsed;
}

/** llama-server's /completion streamed as SSE: tokens received, and ms from the request to the first token. */
export async function llamaServerStream(base: string, prompt: string, tokens: number): Promise<{ tokens: number; firstMs: number }> {
  const started = performance.now();
  const res = await fetch(`${base}/completion`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      prompt,
      n_predict: tokens,
      stream: true,
      temperature: 0,
      top_k: 1,
      repeat_penalty: 1,
      ignore_eos: true,
      cache_prompt: false,
    }),
  });
  if (!res.ok || !res.body) throw new Error(`llama-server: HTTP ${res.status}`);
  let received = 0;
  let firstMs = NaN;
  let rest = '';
  const decoder = new TextDecoder();
  for await (const part of res.body) {
    rest += decoder.decode(part as Uint8Array, { stream: true });
    let at: number;
    while ((at = rest.indexOf('\n\n')) >= 0) {
      const event = rest.slice(0, at);
      rest = rest.slice(at + 2);
      if (!event.startsWith('data: ') || event === 'data: [DONE]') continue;
      const data = JSON.parse(event.slice(6)) as { content?: string; stop?: boolean };
      if (data.stop) continue;
      if (received === 0) firstMs = performance.now() - started;
      received++;
    }
  }
  return { tokens: received, firstMs };
}

/** `rounds` bursts of `streams` rkllm_run_async, one connection each, sent in one loop: per round, the slowest first chunk (ms). */
export async function burstFirstChunk(
  transport: LiveTransport,
  addresses: Record<string, string>,
  streams: number,
  rounds: number,
  params: Record<string, unknown>,
): Promise<number[]> {
  const clients = await Promise.all(Array.from({ length: streams }, () => connectLive(transport, addresses)));
  const slowest: number[] = [];
  try {
    for (let round = 0; round < rounds; round++) {
      const firsts: number[] = [];
      const started = performance.now();
      const ids = clients.map((client, i) => {
        client.onMessage = (message) => {
          const chunk = (message.result as { chunk?: Chunk } | undefined)?.chunk;
          if (chunk && firsts[i] === undefined) firsts[i] = performance.now() - started;
        };
        return client.send('rkllm_run_async', params);
      });
      await Promise.all(clients.map((client, i) => client.collect(ids[i]!, 300_000)));
      slowest.push(Math.max(...firsts));
    }
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
  return slowest;
}

/** The same burst against llama-server: per round, the slowest first token (ms). */
export async function llamaServerBurst(base: string, streams: number, rounds: number, prompt: string, tokens: number): Promise<number[]> {
  const slowest: number[] = [];
  for (let round = 0; round < rounds; round++) {
    const runs = await Promise.all(Array.from({ length: streams }, () => llamaServerStream(base, prompt, tokens)));
    slowest.push(Math.max(...runs.map((r) => r.firstMs)));
  }
  return slowest;
}
