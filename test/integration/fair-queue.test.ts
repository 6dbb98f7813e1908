// The fair queue over a real server: two API keys, one floods the queue, the other's short run is
// served at the next free slot; each key's share of the queue is bounded.
import { expect } from 'chai';
import { TINY_MODEL_PROMPTS } from '../../src/gguf/builtin.js';
import { HttpRpc } from '../helpers/rpc.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { greedy } from '../helpers/prompts.js';

const KEY_A = 'alpha-key-0123456789abcdef';
const KEY_B = 'bravo-key-0123456789abcdef';
const bearer = (key: string): Record<string, string> => ({ authorization: `Bearer ${key}` });

describe('Fair queue across clients', function () {
  this.timeout(120_000);
  let server: TestServer | undefined;

  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  it("serves a new key's 5-token run at the next free slot, ahead of another key's 16 queued streams", async () => {
    server = await startTestServer({ settings: { engine: { parallel: 1 }, auth: { api_keys: [KEY_A, KEY_B] } } });
    const a = new HttpRpc(server.url, bearer(KEY_A));
    const b = new HttpRpc(server.url, bearer(KEY_B));
    const running = await a.start({ prompt_input: TINY_MODEL_PROMPTS.long, max_new_tokens: 2000, ...greedy });
    await server.streams.until(() => server!.streams.runs === 1, 'the first stream to run');
    const queued = [];
    for (let i = 0; i < 16; i++) queued.push(await a.start({ prompt_input: TINY_MODEL_PROMPTS.long, max_new_tokens: 40, ...greedy }));
    // Key A's share of the queue (engine.queue_limit_per_client, 16 by default) is full ...
    const refused = await a.call('rkllm_run_async', { prompt_input: 'x', max_new_tokens: 5 });
    expect(refused.error).to.include({ code: -32000 });
    expect(refused.error!.message).to.include('engine.queue_limit_per_client');
    expect(refused.error!.data.retry_after).to.equal(1);
    // ... while key B still gets in, and runs as soon as the slot frees: no stream of A runs before it.
    const before = server.streams.runs;
    const short = b.call('rkllm_run', { prompt_input: 'The fox', max_new_tokens: 5, ...greedy });
    await server.streams.until(() => server!.streams.live === 18, "B's run to be queued");
    await a.result('rkllm_abort', { stream_id: running.stream_id });
    const answer = await short;
    expect(answer.result.finish_reason).to.equal('length');
    // Runs since B asked: B's own, and at most A's next, which takes the slot B frees.
    expect(server.streams.runs - before, 'streams that got a slot by the time B was answered').to.be.at.most(2);
    // A's queued streams still run, in their order, afterwards.
    const first = await a.drain(queued[0]!.stream_id);
    expect(first.last.finish_reason).to.equal('length');
  });
});
