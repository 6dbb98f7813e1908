// Models by name (docs/models.md): a folder of generated models, driven by the official `openai` and `ollama` clients.
import { expect } from 'chai';
import { copyFile, mkdtemp, rm, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ollama } from 'ollama';
import OpenAI from 'openai';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { ensureBuiltinModel, TINY_MODEL_PROMPTS } from '../../src/gguf/builtin.js';
import { connectHttp, textOf } from '../helpers/mcp.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const PROMPT = TINY_MODEL_PROMPTS.long;

describe('models by name: a folder, loading on demand, LRU, keep_alive', function () {
  this.timeout(120_000);
  let dir: string;
  let server: TestServer;
  let openai: OpenAI;
  let ollama: Ollama;
  const loaded = async (): Promise<string[]> => (await ollama.ps()).models.map((m) => m.name).sort();
  const loads = (name: string): number => server.log.lines.filter((l) => l.msg === 'models: loading' && l.model === name).length;
  const chat = (model: string, max_tokens = 5) =>
    openai.chat.completions.create({ model, messages: [{ role: 'user', content: PROMPT }], max_tokens, temperature: 0 });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rkllm-models-'));
    const tiny = await ensureBuiltinModel('tiny');
    // beta is a distinct model: the same construction from a slice of the corpus (make-models --corpus).
    const fables = await ensureBuiltinModel('tiny', undefined, undefined, { corpus: ['aesop', 'gettysburg'] });
    for (const name of ['alpha', 'gamma']) await copyFile(tiny, join(dir, `${name}.gguf`));
    await copyFile(fables, join(dir, 'beta.gguf'));
    server = await startTestServer({
      settings: { engine: { parallel: 2, max_context_len: 8192 }, models: { dir, max_loaded: 2, keep_alive: '5m' } },
    });
    const base = `http://${server.addresses.http}`;
    openai = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 0 });
    ollama = new Ollama({ host: base });
  });

  after(async () => {
    await server?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('lists the built-in model and every file of the folder, with GGUF facts; files added or removed are seen at once', async () => {
    expect((await openai.models.list()).data.map((m) => m.id)).to.deep.equal(['rkllm-tiny', 'alpha', 'beta', 'gamma']);
    const tags = (await ollama.list()).models;
    const alpha = tags.find((m) => m.name === 'alpha:latest')!;
    expect(alpha.details).to.include({ format: 'gguf', family: 'llama', parameter_size: '2.6M', quantization_level: 'F16' });
    expect(alpha.size).to.be.above(1_000_000);
    const shown = await ollama.show({ model: 'beta' });
    expect(shown.model_info).to.include({ 'general.architecture': 'llama', 'general.basename': 'beta' });
    await copyFile(join(dir, 'alpha.gguf'), join(dir, 'delta.gguf'));
    expect((await openai.models.list()).data.map((m) => m.id)).to.include('delta');
    await unlink(join(dir, 'delta.gguf'));
    expect((await openai.models.list()).data.map((m) => m.id)).not.to.include('delta');
    const listed = await server.http.result('models_list', {});
    expect(listed.default).to.equal('rkllm-tiny');
    expect(listed.models.map((m: { name: string }) => m.name)).to.deep.equal(['rkllm-tiny', 'alpha', 'beta', 'gamma']);
  });

  it('an unknown name is a 404 in both APIs and -32602 model_not_found over JSON-RPC, and loads nothing', async () => {
    const before = await loaded();
    expect(await chat('nope').catch((e: unknown) => e)).to.be.instanceOf(OpenAI.NotFoundError);
    const err = (await ollama.generate({ model: 'nope', prompt: 'hi', stream: false }).catch((e: unknown) => e)) as {
      status_code?: number;
    };
    expect(err.status_code).to.equal(404);
    const rpc = await server.http.call('rkllm_run', { prompt_input: 'hi', model: 'nope' });
    expect(rpc.error).to.deep.include({ code: -32602 });
    expect(rpc.error!.data).to.include({ reason: 'model_not_found' });
    expect(loads('nope')).to.equal(0);
    expect(await loaded()).to.deep.equal(before);
  });

  it('loads a model on demand; two stay loaded within max_loaded 2; a third unloads the least recently used idle one', async () => {
    expect(await loaded()).to.deep.equal(['rkllm-tiny:latest']);
    const a = await chat('alpha');
    expect(a.model).to.equal('alpha');
    expect(await loaded()).to.deep.equal(['alpha:latest', 'rkllm-tiny:latest']);
    await chat('rkllm-tiny'); // the default model is now the most recently used: alpha is the LRU
    await chat('beta');
    expect(await loaded()).to.deep.equal(['beta:latest', 'rkllm-tiny:latest']);
    // The default model is unloaded in its turn, and loaded again when a run needs it.
    await chat('alpha');
    expect(await loaded()).to.deep.equal(['alpha:latest', 'beta:latest']);
    const text = (await server.http.result('rkllm_run', { prompt_input: PROMPT, max_new_tokens: 5, top_k: 1 })).text as string;
    expect(text.length).to.be.above(0);
    expect(await loaded()).to.deep.equal(['alpha:latest', 'rkllm-tiny:latest']);
  });

  it('two models give different greedy texts, each the same side by side as alone (their own slot pools)', async () => {
    const text = async (model: string): Promise<string> => (await chat(model, 12)).choices[0]!.message.content!;
    const aloneAlpha = await text('alpha');
    const aloneBeta = await text('beta');
    expect(aloneAlpha).to.have.length.above(0);
    expect(aloneBeta).to.have.length.above(0);
    expect(aloneBeta).not.to.equal(aloneAlpha);
    const [alpha, beta, alpha2, beta2] = await Promise.all([text('alpha'), text('beta'), text('alpha'), text('beta')]);
    expect([alpha, alpha2]).to.deep.equal([aloneAlpha, aloneAlpha]);
    expect([beta, beta2]).to.deep.equal([aloneBeta, aloneBeta]);
    expect(await loaded()).to.deep.equal(['alpha:latest', 'beta:latest']);
  });

  it('keep_alive 0 unloads the model once its request is answered; an empty prompt loads a model', async () => {
    const loadOnly = await ollama.generate({ model: 'gamma', prompt: '', keep_alive: '10m' });
    expect(loadOnly.done_reason).to.equal('load');
    expect(await loaded()).to.include('gamma:latest');
    const ps = (await ollama.ps()).models.find((m) => m.name === 'gamma:latest')!;
    expect(new Date(ps.expires_at).getTime() - Date.now()).to.be.within(9 * 60_000, 10 * 60_000 + 1000);
    const out = await ollama.generate({
      model: 'gamma',
      prompt: PROMPT,
      stream: false,
      keep_alive: 0,
      options: { num_predict: 5, temperature: 0 },
    });
    expect(out.eval_count).to.equal(5);
    expect(await loaded()).not.to.include('gamma:latest');
  });

  it('requests that arrive while a model loads wait for it: one load serves them all', async () => {
    await ollama.generate({ model: 'beta', prompt: '', keep_alive: 0 }); // beta is not loaded now
    expect(await loaded()).not.to.include('beta:latest');
    const before = loads('beta');
    const first = chat('beta');
    await server.log.line('models: loading');
    const rest = [chat('beta'), ollama.chat({ model: 'beta', messages: [{ role: 'user', content: PROMPT }], options: { num_predict: 3 } })];
    const answers = await Promise.all([first, ...rest]);
    expect(answers).to.have.length(3);
    expect(loads('beta') - before).to.equal(1);
  });

  it('a model with a running stream is never unloaded to make room: the LRU idle one goes instead', async () => {
    const controller = new AbortController();
    const stream = await openai.chat.completions.create(
      { model: 'alpha', messages: [{ role: 'user', content: PROMPT }], max_tokens: 8000, temperature: 0, stream: true },
      { signal: controller.signal },
    );
    const pieces: string[] = [];
    let failure: unknown;
    const reading = (async () => {
      try {
        for await (const chunk of stream) pieces.push(chunk.choices[0]?.delta.content ?? '');
      } catch (err) {
        if (!controller.signal.aborted) failure = err;
      }
    })();
    await server.streams.until(() => pieces.length > 3, 'the alpha stream to send text');
    // alpha runs; gamma then beta need room: the idle model goes each time, never alpha.
    await chat('gamma');
    expect(await loaded()).to.deep.equal(['alpha:latest', 'gamma:latest']);
    await chat('beta');
    expect(await loaded()).to.deep.equal(['alpha:latest', 'beta:latest']);
    const view = (await server.http.result('models_loaded', {})).models as Array<{ name: string; in_use: number }>;
    expect(view.find((m) => m.name === 'alpha')!.in_use).to.be.above(0, 'the alpha stream still runs: the check above is meaningful');
    // The metrics count the streams of every model's pool, not only the default model's.
    const metrics = await (await fetch(`http://${server.addresses.http}/metrics`)).text();
    expect(Number(/^rkllm_streams_active (\d+)$/m.exec(metrics)?.[1])).to.equal(1);
    // So does rkllm_is_running: the default model is idle, alpha generates.
    expect(await server.http.result('rkllm_is_running', {})).to.deep.equal({ running: true, active: 1, queued: 0 });
    const before = pieces.length;
    await server.streams.until(() => pieces.length > before + 3, 'the alpha stream to go on after the switches');
    controller.abort();
    await reading;
    expect(failure).to.equal(undefined);
  });

  it("the MCP tools' optional model: generate, embed and model_info run and describe the model named; an unknown name is a tool error", async () => {
    const mcp = await connectHttp(server.url);
    try {
      const call = async (name: string, args: Record<string, unknown>) =>
        (await mcp.client.callTool({ name, arguments: args })) as CallToolResult;
      const greedy = { prompt: PROMPT, max_new_tokens: 10, top_k: 1 };
      const beta = textOf(await call('generate', { ...greedy, model: 'beta' }));
      const alpha = textOf(await call('generate', { ...greedy, model: 'alpha' }));
      const rpc = async (model: string): Promise<string> =>
        (await server.http.result('rkllm_run', { prompt_input: PROMPT, max_new_tokens: 10, top_k: 1, model })).text as string;
      expect(beta).to.equal(await rpc('beta'));
      expect(alpha).to.equal(await rpc('alpha'));
      expect(beta).not.to.equal(alpha);
      const infoResult = await call('model_info', { model: 'beta' });
      expect(infoResult.isError, textOf(infoResult)).not.to.equal(true);
      const info = infoResult.structuredContent as { model: string; max_context_len: number };
      expect(info.model).to.equal('beta.gguf');
      expect(((await call('model_info', {})).structuredContent as { model: string }).model).to.match(/^rkllm-tiny-[0-9a-f]{12}\.gguf$/);
      const embedded = (await call('embed', { input: 'the Fox', model: 'beta' })).structuredContent as {
        model: string;
        dimensions: number;
      };
      expect(embedded.model).to.equal('beta.gguf');
      expect(embedded.dimensions).to.be.above(0);
      const unknown = await call('generate', { ...greedy, model: 'nope' });
      expect(unknown.isError).to.equal(true);
      expect(textOf(unknown)).to.match(/nope/);
      expect(loads('nope')).to.equal(0);
    } finally {
      await mcp.close();
    }
  });
});
