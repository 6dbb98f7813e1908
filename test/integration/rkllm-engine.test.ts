/**
 * The server (in this process) on the RKLLM engine (`engine.kind: "rkllm"`), with the ABI twin as
 * librkllmrt.so: the runtime (in its worker process) crashes in the middle of a stream and the
 * server proves everything the engine promises. Errors at start, which the CLI reports with its
 * exit code, are tested in cli.test.ts.
 */
import { expect } from 'chai';
import { basename, dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { TcpRpc } from '../helpers/live-rpc.js';
import { TWIN_MODELS, buildTwin } from '../helpers/rkllm-twin.js';
import { HttpRpc } from '../helpers/rpc.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

/** Calls engine_status until `state` (at most 200 times, 50 ms apart). */
async function untilState(http: HttpRpc, state: string): Promise<any> {
  for (let i = 0; i < 200; i++) {
    const status = await http.result('engine_status', {});
    if (status.state === state) return status;
    await sleep(50);
  }
  throw new Error(`engine_status never reached "${state}"`);
}

describe('server with --engine rkllm (ABI twin 1.3)', function () {
  this.timeout(60_000);
  let library: string;
  let server: TestServer | undefined;
  let http: HttpRpc;
  let tcp: TcpRpc | undefined;

  before(async () => {
    library = await buildTwin('1.3');
    server = await startTestServer({
      // A long first delay, so the test sees the engine restarting.
      settings: {
        engine: { kind: 'rkllm', model_path: TWIN_MODELS.story, max_context_len: 1024, rkllm: { library, restart_delay_ms: 2000 } },
        folders: { models: dirname(TWIN_MODELS.story) },
      },
    });
    http = new HttpRpc(server.url);
    tcp = await TcpRpc.connect(server.addresses.tcp!);
  });

  after(async () => {
    await tcp?.close();
    await server?.close();
  });

  it('serves streams from the runtime, and reports the engine', async () => {
    const status = await http.result('engine_status', {});
    expect(status).to.include({ engine: 'rkllm', state: 'ready', model_path: TWIN_MODELS.story, restarts: 0 });
    expect(status.runtime).to.include({ library, layout: '1.3', layout_source: 'library', reported_version: '1.3' });
    const live = await tcp!.stream({ prompt_input: 'Once upon a time [utf8]', max_new_tokens: 40 });
    expect(live.last).to.include({ end: true, finish_reason: 'length' });
    expect(live.text).to.match(/[^\p{ASCII}]/u);
    const functions = await http.result('rkllm_list_functions', {});
    expect(functions.engine.name).to.equal('rkllm');
    const { json_schema, run_tools, run_template, seed, images, ...rkllmFeatures } = functions.engine.features;
    expect(Object.values(rkllmFeatures).every(Boolean)).to.equal(true);
    // images need a vision encoder, which this server was not given.
    expect([json_schema, run_tools, run_template, seed, images]).to.deep.equal([false, false, false, false, false]);
  });

  it('a runtime crash mid-stream: an error chunk ends that stream, the server keeps answering, the engine restarts and reloads, a queued stream is served', async () => {
    const crashing = await http.start({ prompt_input: 'this one crashes [crash:25]', max_new_tokens: 200 });
    const queued = tcp!.stream({ prompt_input: 'waiting behind the crash', max_new_tokens: 20 });

    const drained = await http.drain(crashing.stream_id);
    expect(drained.text.length).to.be.greaterThan(0);
    expect(drained.last).to.include({ end: true, finish_reason: 'error' });
    expect(drained.last.error!.code).to.equal(-32006);
    expect(drained.last.error!.message)
      .to.match(/killed by SIGSEGV/)
      .and.match(/reloads the model/);

    const restarting = await http.result('engine_status', {});
    expect(restarting.state).to.equal('restarting');
    expect(restarting.last_error.message).to.match(/SIGSEGV/);
    expect(restarting.runtime.pid).to.equal(null);
    const constants = await http.result('rkllm_get_constants', {});
    expect(constants.enums.LLMCallState.RKLLM_RUN_ERROR).to.equal(3);
    // The buffers are still managed: the crashed stream's buffer was released when it was drained.
    expect(await http.result('http_buffer_manager_status', {})).to.include({ initialized: true, active_buffers: 0, max_buffers: 256 });
    const running = await http.result('rkllm_is_running', {});
    expect(running.queued + running.active).to.be.greaterThan(0);

    const served = await queued;
    expect(served.last).to.include({ end: true, finish_reason: 'length' });
    const ready = await untilState(http, 'ready');
    expect(ready.restarts).to.equal(1);
    expect(ready.runtime.pid).to.be.a('number');

    const after = await http.result('rkllm_run', { prompt_input: 'and after', max_new_tokens: 8 });
    expect(after.finish_reason).to.equal('length');
  });

  it('rkllm_destroy ends the running stream and unloads; rkllm_init loads again', async () => {
    const running = await http.start({ prompt_input: 'a long one', max_new_tokens: 900 });
    const destroyed = await http.result('rkllm_destroy', {});
    expect(destroyed).to.include({ destroyed: true, streams_stopped: 1 });
    const drained = await http.drain(running.stream_id);
    expect(drained.last).to.include({ end: true, finish_reason: 'error' });
    expect(drained.last.error!.code).to.equal(-32009);
    expect(await http.result('engine_status', {})).to.include({ state: 'unloaded', model_path: null });
    const init = await http.result('rkllm_init', {
      model_path: basename(TWIN_MODELS.story),
      max_context_len: 512,
      top_k: 1,
      extend_param: { n_batch: 1 },
    });
    expect(init).to.include({ initialized: true, engine: 'rkllm', max_context_len: 512 });
    expect((await http.result('rkllm_run', { prompt_input: 'reloaded', max_new_tokens: 4 })).finish_reason).to.equal('length');
  });
});
