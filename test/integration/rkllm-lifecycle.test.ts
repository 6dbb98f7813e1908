// rkllm_init and rkllm_destroy over HTTP: one model at a time, loaded at run time.
import { expect } from 'chai';
import { copyFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { TINY_MODEL_PROMPTS, ensureBuiltinModel } from '../../src/gguf/builtin.js';
import { HttpRpc, type RpcResponse } from '../helpers/rpc.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const greedy = { top_k: 1, temperature: 0, repeat_penalty: 1 };

function expectError(res: RpcResponse, code: number, pattern?: RegExp): void {
  expect(res.error, JSON.stringify(res.result)).to.not.equal(undefined);
  expect(res.error!.code, res.error!.message).to.equal(code);
  if (pattern) expect(res.error!.message).to.match(pattern);
}

describe('rkllm_init and rkllm_destroy', function () {
  this.timeout(120_000);
  let server: TestServer;
  let rpc: HttpRpc;
  /** The built-in model, by its name inside the models folder (setting folders.models), as clients name it. */
  let modelPath: string;
  let models: string;

  before(async () => {
    const builtin = await ensureBuiltinModel('tiny');
    models = mkdtempSync(join(tmpdir(), 'rkllm-models-'));
    modelPath = basename(builtin);
    copyFileSync(builtin, join(models, modelPath));
    server = await startTestServer({ settings: { engine: { parallel: 1, model_path: builtin }, folders: { models } } });
    rpc = new HttpRpc(server.url);
  });

  after(async () => {
    await server.close();
  });

  it('a second rkllm_init without rkllm_destroy gets -32008', async () => {
    expectError(await rpc.call('rkllm_init', { model_path: modelPath }), -32008, /already loaded .*call rkllm_destroy first/);
  });

  it('rkllm_destroy ends every running and queued stream with a final chunk carrying -32009', async () => {
    const before = await rpc.result('rkllm_run', { prompt_input: TINY_MODEL_PROMPTS.long, max_new_tokens: 30, ...greedy });
    const running = await rpc.start({ prompt_input: TINY_MODEL_PROMPTS.long, max_new_tokens: 2000, ...greedy });
    const queued = await rpc.start({ prompt_input: 'The Queen said', max_new_tokens: 50, ...greedy });
    // The first stream is generating; the second waits for the one slot.
    await server.streams.untilChunks(running.stream_id, 1);
    expect(await rpc.result('rkllm_is_running', {})).to.deep.equal({ running: true, active: 1, queued: 1 });
    const destroyed = await rpc.result('rkllm_destroy', {});
    expect(destroyed).to.deep.equal({ destroyed: true, streams_stopped: 2 });
    for (const { stream_id } of [running, queued]) {
      const { last } = await rpc.drain(stream_id);
      expect(last.end).to.equal(true);
      expect(last.error!.code).to.equal(-32009);
      expect(last.error!.message).to.match(/rkllm_destroy/);
    }

    expectError(await rpc.call('rkllm_run', { prompt_input: 'x' }), -32004, /No model is loaded; call rkllm_init/);
    expectError(await rpc.call('rkllm_get_kv_cache_size', {}), -32004);
    expect((await rpc.result('rkllm_is_running', {})).running).to.equal(false);
    expect(await rpc.result('rkllm_destroy', {})).to.deep.equal({ destroyed: true, streams_stopped: 0 });

    // Loading at run time: the same model gives the same text again.
    const init = await rpc.result('rkllm_init', { model_path: modelPath, max_context_len: 256, extend_param: { enabled_cpus_num: 1 } });
    expect(init).to.include({ initialized: true, engine: 'llama.cpp', max_context_len: 256 });
    const after = await rpc.result('rkllm_run', { prompt_input: TINY_MODEL_PROMPTS.long, max_new_tokens: 30, ...greedy });
    expect(after.text).to.equal(before.text);
  });

  it('refuses a missing model file with -32602 and a file llama.cpp cannot load with -32006, and keeps serving', async () => {
    await rpc.result('rkllm_destroy', {});
    const missing = await rpc.call('rkllm_init', { model_path: 'nonexistent/model.gguf' });
    expectError(missing, -32602, /"model_path" names no file/);
    expect(missing.error!.data.reason).to.equal('file_not_found');
    writeFileSync(join(models, 'junk.gguf'), 'this is not a GGUF file');
    expectError(await rpc.call('rkllm_init', { model_path: 'junk.gguf' }), -32006, /llama\.cpp cannot load/);
    expectError(await rpc.call('rkllm_init', { model_path: modelPath, extend_param: { use_cross_attn: 1 } }), -32005, /cross-attention/);
    await rpc.result('rkllm_init', { model_path: modelPath });
    expect((await rpc.result('rkllm_run', { prompt_input: 'The fox', max_new_tokens: 5, ...greedy })).perf.generate_tokens).to.equal(5);
  });
});
