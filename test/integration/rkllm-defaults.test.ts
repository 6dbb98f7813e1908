// The RKLLM engine starts from the library's own rkllm_createDefaultParam(), with only what was given laid over it.
import { expect } from 'chai';
import { TWIN_MODELS, buildTwin } from '../helpers/rkllm-twin.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

describe('RKLLM engine: the runtime defaults (ABI twin 1.3)', function () {
  this.timeout(60_000);
  let server: TestServer | undefined;

  before(async () => {
    const library = await buildTwin('1.3');
    server = await startTestServer({
      settings: { engine: { kind: 'rkllm', model_path: TWIN_MODELS.echo, max_context_len: 1024, rkllm: { library } } },
    });
  });
  after(async () => {
    await server?.close();
  });

  it("rkllm_init receives the library's defaults where nothing was given (the twin's differ from rkllm.h's)", async () => {
    const run = await server!.http.result('rkllm_run', { prompt_input: 'x' });
    const echoed = JSON.parse(run.text) as { param: Record<string, any> };
    expect(echoed.param.extend_param).to.include({ enabled_cpus_num: 4, enabled_cpus_mask: 240 });
    expect(echoed.param).to.include({ n_keep: -1, max_context_len: 1024 });
  });

  it('loads one runtime instance by default (engine.parallel 0 is 1 on rkllm)', async () => {
    const status = await server!.http.result('engine_status', {});
    expect(status.runtime).to.not.have.property('instances');
    expect((await server!.http.result('rkllm_get_kv_cache_size', {})).cache_sizes).to.have.lengthOf(1);
  });

  it("rkllm_createDefaultParam returns the library's values, loaded or not", async () => {
    const loaded = await server!.http.result('rkllm_createDefaultParam', {});
    expect(loaded.extend_param).to.include({ enabled_cpus_num: 4, enabled_cpus_mask: 240 });
    expect(loaded).to.include({ n_keep: -1, max_context_len: 512 });
    await server!.http.result('rkllm_destroy', {});
    const unloaded = await server!.http.result('rkllm_createDefaultParam', {});
    expect(unloaded).to.deep.equal(loaded);
  });
});
