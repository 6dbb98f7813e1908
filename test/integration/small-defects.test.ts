// Issue 14, section 5: the smaller defects, each over a real server.
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import { startTestServer, type TestServer } from '../helpers/server.js';

const KEY = 'alpha-key-0123456789abcdef';

/** Sends one line over TCP and collects the raw reply lines up to the one with `"end":true`. */
async function tcpLines(address: string, line: string): Promise<string[]> {
  const [host, port] = [address.slice(0, address.lastIndexOf(':')), Number(address.slice(address.lastIndexOf(':') + 1))];
  const socket = connect({ host, port });
  socket.write(`${line}\n`);
  let text = '';
  for await (const data of socket) {
    text += String(data);
    if (text.includes('"end":true')) break;
  }
  socket.destroy();
  return text.split('\n').filter(Boolean);
}

/** `[[[...]]]`, `depth` levels deep, as JSON text. */
const nested = (depth: number): string => '['.repeat(depth) + ']'.repeat(depth);

describe('Smaller defects (issue 14, section 5)', function () {
  this.timeout(120_000);
  let server: TestServer;

  before(async () => {
    server = await startTestServer({ settings: { engine: { parallel: 4 } } });
  });
  after(async () => {
    await server?.close();
  });

  it('deeply nested values in a checked parameter get -32602, and nothing is logged at error level', async () => {
    for (const depth of [10_000, 100_000]) {
      for (const body of [
        `{"jsonrpc":"2.0","id":1,"method":"rkllm_run","params":{"prompt_input":${nested(depth)}}}`,
        `{"jsonrpc":"2.0","id":1,"method":"rkllm_set_function_tools","params":{"tools":${nested(depth)}}}`,
      ]) {
        const reply = await server.http.raw(body);
        expect(reply.body.error, body.slice(0, 80)).to.include({ code: -32602 });
        expect(reply.body.error.message).to.match(/nest/);
      }
    }
    const errors = server.log.lines.filter((line) => line.level >= 50);
    expect(errors, JSON.stringify(errors).slice(0, 500)).to.deep.equal([]);
  });

  it('echoes ids beyond 2^53 exactly, in replies, errors, batches and request_id', async () => {
    const big = '9007199254740993';
    const one = await server.http.raw(`{"jsonrpc":"2.0","id":${big},"method":"rkllm_is_running"}`);
    expect(one.text).to.include(`"id":${big}`);
    const error = await server.http.raw(`{"jsonrpc":"2.0","id":-${big}1,"method":"no_such_method"}`);
    expect(error.text).to.include(`"id":-${big}1`);
    const batch = await server.http.raw(
      `[{"jsonrpc":"2.0","id":${big},"method":"rkllm_is_running"},{"jsonrpc":"2.0","id":"${big}","method":"rkllm_is_running"},` +
        `{"jsonrpc":"2.0","method":"rkllm_is_running","params":{},"id":12345678901234567890}]`,
    );
    expect(batch.text).to.include(`"id":${big}`);
    expect(batch.text).to.include(`"id":"${big}"`);
    expect(batch.text).to.include('"id":12345678901234567890');
    const started = await server.http.raw(
      `{"jsonrpc":"2.0","id":${big},"method":"rkllm_run_async","params":{"prompt_input":"The fox","max_new_tokens":2,"top_k":1,"temperature":0,"repeat_penalty":1}}`,
    );
    expect(started.text).to.include(`"request_id":${big}`);
    const lines = await tcpLines(
      server.addresses.tcp!,
      `{"jsonrpc":"2.0","id":${big},"method":"rkllm_run_async","params":{"prompt_input":"The fox","max_new_tokens":2,"top_k":1,"temperature":0,"repeat_penalty":1}}`,
    );
    expect(lines.length, JSON.stringify(lines)).to.be.greaterThan(1);
    for (const line of lines) expect(line).to.include(`"id":${big}`);
  });

  it('rkllm_clear_kv_cache with start_pos after end_pos is -32602', async () => {
    const reply = await server.http.call('rkllm_clear_kv_cache', { start_pos: [5], end_pos: [2] });
    expect(reply.error).to.include({ code: -32602 });
    expect(reply.error!.message).to.include('start_pos');
  });

  it('HTTP refuses the api_key member without an Authorization header, and the docs say so', async () => {
    await using keyed = await startTestServer({ settings: { auth: { api_keys: [KEY] } } });
    const reply = await keyed.http.raw(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'rkllm_is_running', api_key: KEY }));
    expect(reply.status).to.equal(401);
    const docs = readFileSync(fileURLToPath(new URL('../../../docs/deployment.md', import.meta.url)), 'utf8');
    expect(docs).not.to.include('Any transport also accepts the `api_key` member');
    expect(docs).to.match(/HTTP\s+does not read the `api_key` member/);
  });
});
