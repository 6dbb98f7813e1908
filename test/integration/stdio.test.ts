// stdio: a parent process speaks NDJSON on the server's stdin and stdout. This needs a process of
// its own: the server reads its stdin and writes its stdout.
import { expect } from 'chai';
import { setTimeout as sleep } from 'node:timers/promises';
import { TINY_MODEL_PROMPTS } from '../../src/gguf/builtin.js';
import { StdioRpc } from '../helpers/live-rpc.js';
import { greedy } from '../helpers/prompts.js';
import { HttpRpc } from '../helpers/rpc.js';
import { writeSettings } from '../helpers/server-process.js';

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
