// The server on the RKLLM engine with --parallel 3: three runtime instances serve three runs at once, as slots.
import { expect } from 'chai';
import { HttpRpc } from '../helpers/rpc.js';
import { TWIN_MODELS, buildTwin } from '../helpers/rkllm-twin.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

describe('server with --engine rkllm --parallel 3 (ABI twin 1.2)', function () {
  this.timeout(60_000);
  let server: TestServer | undefined;

  before(async () => {
    const library = await buildTwin('1.2');
    server = await startTestServer({
      settings: {
        engine: {
          kind: 'rkllm',
          model_path: TWIN_MODELS.story,
          max_context_len: 512,
          parallel: 3,
          rkllm: { library, runtime_version: '1.2' },
        },
      },
    });
  });
  after(async () => {
    await server?.close();
  });

  it('reports three instances, serves three runs at once with their own texts, and KV cache sizes per instance', async () => {
    const status = await server!.http.result('engine_status', {});
    expect(status).to.include({ engine: 'rkllm', state: 'ready' });
    expect(status.runtime.instances).to.have.lengthOf(3);
    const prompts = ['Ships [slow:20000]', 'Trees [slow:20000]', 'Stars [slow:20000]'];
    const runs = await Promise.all(prompts.map((prompt_input) => server!.http.result('rkllm_run', { prompt_input, max_new_tokens: 10 })));
    expect(runs.map((run) => run.finish_reason)).to.deep.equal(['length', 'length', 'length']);
    expect(new Set(runs.map((run) => run.text)).size).to.equal(3);
    const sizes = await server!.http.result('rkllm_get_kv_cache_size', {});
    expect(sizes.cache_sizes).to.have.lengthOf(3);
  });

  it('a crash of one instance ends its stream with -32006 while the two others finish; the engine stays ready', async () => {
    const http = new HttpRpc(server!.url);
    const prompts = ['Long one [slow:20000]', 'Crashing [crash:3] [slow:20000]', 'Long two [slow:20000]'];
    const started = await Promise.all(prompts.map((prompt_input) => http.start({ prompt_input, max_new_tokens: 15 })));
    const drained = await Promise.all(started.map((s: { stream_id: string }) => http.drain(s.stream_id)));
    expect(drained[1]!.last).to.include({ end: true, finish_reason: 'error' });
    expect(drained[1]!.last.error!.code).to.equal(-32006);
    expect(drained[1]!.last.error!.message)
      .to.match(/killed by SIGSEGV/)
      .and.match(/the others keep running/);
    for (const i of [0, 2]) expect(drained[i]!.last).to.include({ end: true, finish_reason: 'length' });
    const status = await server!.http.result('engine_status', {});
    expect(status.state).to.equal('ready');
    expect(status.last_error.message).to.match(/SIGSEGV/);
  });

  it('the scheduler runs three at once: rkllm_is_running shows 3 active and none queued', async () => {
    const http = new HttpRpc(server!.url);
    const prompts = ['One [slow:30000]', 'Two [slow:30000]', 'Three [slow:30000]'];
    const started = await Promise.all(prompts.map((prompt_input) => http.start({ prompt_input, max_new_tokens: 20 })));
    let running = await http.result('rkllm_is_running', {});
    for (let i = 0; i < 100 && running.active < 3; i++) running = await http.result('rkllm_is_running', {});
    expect(running).to.include({ active: 3, queued: 0 });
    const drained = await Promise.all(started.map((s: { stream_id: string }) => http.drain(s.stream_id)));
    for (const d of drained) expect(d.last).to.include({ end: true, finish_reason: 'length' });
  });
});
