// Graceful shutdown on SIGTERM and SIGINT, with streams running on several transports. Signals
// need a process of the server's own: these tests start the CLI.
import { expect } from 'chai';
import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { TINY_MODEL_PROMPTS } from '../../src/gguf/builtin.js';
import { StdioRpc, TcpRpc, UdpRpc, WsRpc, hostPort, type LiveRpc } from '../helpers/live-rpc.js';
import { greedy } from '../helpers/prompts.js';
import { HttpRpc } from '../helpers/rpc.js';
import { startServer, type ServerProcess } from '../helpers/server-process.js';

/** Greedy on the long prompt: 3000 tokens without EOS, taking far longer than the drain timeouts below. */
const LONG = { prompt_input: TINY_MODEL_PROMPTS.long, max_new_tokens: 3000, ...greedy };
/** A slot for each stream of the first test (four long ones and a short one). */
const ARGS = ['--parallel', '5', '--context', '16384'];

/** Calls `probe` every 10 ms until it returns something other than undefined (at most 500 times): for a server in another process, that is all one can do. */
async function until<T>(probe: () => Promise<T | undefined>): Promise<T> {
  for (let i = 0; i < 500; i++) {
    const value = await probe();
    if (value !== undefined) return value;
    await sleep(10);
  }
  throw new Error('the condition never held');
}

/** Whether a TCP connection to `address` is refused. */
function refusesConnections(address: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(hostPort(address));
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}

/** Waits until `client` has received at least `count` chunks for `id`. */
function received(client: LiveRpc, id: string | number | null, count: number): Promise<void> {
  return client.untilPending(id, count);
}

describe('Graceful shutdown', function () {
  this.timeout(120_000);
  let server: ServerProcess | undefined;
  const clients: LiveRpc[] = [];
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await server?.stop();
  });

  it('SIGTERM: stops accepting, keeps buffered streams pollable, ends what still runs at the drain timeout with finish_reason "shutdown", exits 0', async () => {
    server = await startServer({ args: ARGS, settings: { shutdown: { drain_timeout_s: 0.2, final_poll_timeout_s: 10 } } });
    const http = new HttpRpc(server.url);
    const tcp = (clients[clients.length] = await TcpRpc.connect(server.addresses.tcp!));
    const ws = (clients[clients.length] = await WsRpc.connect(server.addresses.ws!));
    const udp = (clients[clients.length] = await UdpRpc.connect(server.addresses.udp!));
    const short = await http.start({ prompt_input: 'The Queen said', max_new_tokens: 20, ...greedy });
    const polled = await http.start(LONG);
    const live = { tcp: tcp.send('rkllm_run_async', LONG), ws: ws.send('rkllm_run_async', LONG), udp: udp.send('rkllm_run_async', LONG) };
    await received(tcp, live.tcp, 3);
    await received(ws, live.ws, 3);
    await received(udp, live.udp, 3);
    // The short stream has ended before the signal, so only its buffer is left to read: on a loaded
    // machine it could otherwise still be running at the 0.2 s drain timeout and end "shutdown".
    // A poll with after_seq -1 acknowledges nothing, so the drain below still gets every chunk.
    await until(async () => ((await http.result('poll', { stream_id: short.stream_id, after_seq: -1 })).chunk?.end ? true : undefined));

    server.proc.kill('SIGTERM');
    const health = await until(async () => {
      const res = await fetch(`${server!.url}health`);
      return res.status === 503 ? ((await res.json()) as { status: string }) : undefined;
    });
    expect(health).to.deep.equal({ status: 'shutting_down', reason: 'the server is shutting down' });
    const refused = await http.call('rkllm_run_async', { prompt_input: 'too late', max_new_tokens: 5 });
    expect(refused.error).to.deep.include({ code: -32017 });
    expect(await refusesConnections(server.addresses.tcp!), 'no new TCP connections').to.equal(true);
    expect(await refusesConnections(server.addresses.ws!), 'no new WebSocket connections').to.equal(true);
    expect((await http.drain(short.stream_id)).last, 'a buffered stream stays pollable').to.include({ finish_reason: 'length' });

    const ends = await Promise.all([tcp.collect(live.tcp), ws.collect(live.ws), udp.collect(live.udp), http.drain(polled.stream_id)]);
    for (const { last: end } of ends) {
      expect(end).to.include({ end: true, finish_reason: 'shutdown' });
      expect(end.error).to.deep.include({ code: -32017 });
    }
    expect(await server.exited).to.equal(0);
    expect(server.stderr()).to.include('drain timeout: ending the streams still running');
  });

  it('SIGINT: streams that finish within the drain timeout end as usual, and the process exits 0 once they have been read', async () => {
    server = await startServer({ args: ARGS, settings: { shutdown: { drain_timeout_s: 60, final_poll_timeout_s: 0 } } });
    const http = new HttpRpc(server.url);
    const tcp = (clients[clients.length] = await TcpRpc.connect(server.addresses.tcp!));
    const polled = await http.start({ prompt_input: 'Once upon a time', max_new_tokens: 300, ...greedy });
    const id = tcp.send('rkllm_run_async', { prompt_input: 'The fox', max_new_tokens: 300, ...greedy });
    await received(tcp, id, 1);
    server.proc.kill('SIGINT');
    const [live, buffered] = await Promise.all([tcp.collect(id), http.drain(polled.stream_id)]);
    expect(live.last.finish_reason).to.equal('length');
    expect(buffered.last.finish_reason).to.equal('length');
    expect(await server.exited).to.equal(0);
    expect(server.stderr()).not.to.include('drain timeout');
  });

  it('a second signal exits at once', async () => {
    server = await startServer({ args: ARGS, settings: { shutdown: { drain_timeout_s: 600, final_poll_timeout_s: 600 } } });
    const http = new HttpRpc(server.url);
    await http.start(LONG);
    server.proc.kill('SIGTERM');
    await until(async () => ((await fetch(`${server!.url}health`)).status === 503 ? true : undefined));
    server.proc.kill('SIGTERM');
    expect(await server.exited).to.equal(128 + 15);
    expect(server.stderr()).to.include('second signal: exiting at once');
  });

  it('stdio: a stream running when SIGTERM comes ends with finish_reason "shutdown" on stdout, and the process exits 0', async () => {
    const client = await StdioRpc.spawn(undefined, { RKLLM_MCP_SHUTDOWN_DRAIN_TIMEOUT_S: '0.5', RKLLM_MCP_ENGINE_MAX_CONTEXT_LEN: '8192' });
    try {
      const id = client.send('rkllm_run_async', LONG);
      await received(client, id, 3);
      client.proc.kill('SIGTERM');
      const { last } = await client.collect(id);
      expect(last).to.include({ finish_reason: 'shutdown' });
      expect(await client.exited).to.equal(0);
    } finally {
      client.kill();
    }
  });
});
