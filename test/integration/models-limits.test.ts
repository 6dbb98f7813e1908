// Models by name (docs/models.md), beyond the basics of models.test.ts: the memory budget
// (max_loaded 0), a model's sidecar NAME.json, admin keys for models_load/models_unload, and the
// RKLLM engine (the ABI twin), which holds one model at a time.
import { expect } from 'chai';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ollama } from 'ollama';
import OpenAI from 'openai';
import { ensureBuiltinModel, TINY_MODEL_PROMPTS } from '../../src/gguf/builtin.js';
import { ModelCatalog } from '../../src/models/catalog.js';
import { TWIN_MODELS, buildTwin, slowLoad } from '../helpers/rkllm-twin.js';
import { HttpRpc } from '../helpers/rpc.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const PROMPT = TINY_MODEL_PROMPTS.long;

/** A temporary models folder holding a copy of the tiny model under each name. */
async function folderOf(names: string[]): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'rkllm-models-'));
  const tiny = await ensureBuiltinModel('tiny');
  for (const name of names) await copyFile(tiny, join(dir, `${name}.gguf`));
  return dir;
}

const loadedNames = async (server: TestServer, rpc: HttpRpc = server.http): Promise<string[]> =>
  ((await rpc.result('models_loaded', {})).models as Array<{ name: string }>).map((m) => m.name).sort();

describe('models by name: the memory budget (models.max_loaded 0)', function () {
  this.timeout(120_000);
  const CONTEXT = 1024;
  let dir: string;
  let memory: number;

  before(async () => {
    dir = await folderOf(['alpha', 'beta']);
    // The estimate the server computes from the GGUF header: the built-in default and alpha, beta are the same file.
    const catalog = new ModelCatalog({ dir, engine: 'llama.cpp' });
    memory = (await catalog.find('alpha'))!.memory(CONTEXT, 1);
    expect(memory).to.be.above((await catalog.find('alpha'))!.size, 'the estimate counts the KV cache beside the weights');
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const start = (maxMemory: number): Promise<TestServer> =>
    startTestServer({
      settings: { engine: { parallel: 1, max_context_len: CONTEXT, max_memory: maxMemory }, models: { dir, max_loaded: 0 } },
    });

  const run = (server: TestServer, model: string) => server.http.result('rkllm_run', { prompt_input: PROMPT, max_new_tokens: 3, model });

  it('a budget one byte short of two models holds one: each request for another unloads the loaded one', async () => {
    const server = await start(2 * memory - 1);
    try {
      expect(await loadedNames(server)).to.deep.equal(['rkllm-tiny']);
      await run(server, 'alpha');
      expect(await loadedNames(server)).to.deep.equal(['alpha']);
      await run(server, 'beta');
      expect(await loadedNames(server)).to.deep.equal(['beta']);
    } finally {
      await server.close();
    }
  });

  it('a budget of two models holds two, each counted at its computed estimate; a third unloads the least recently used', async () => {
    const server = await start(2 * memory);
    try {
      await run(server, 'alpha');
      const view = (await server.http.result('models_loaded', {})).models as Array<{ name: string; memory: number }>;
      expect(view.map((m) => [m.name, m.memory]).sort()).to.deep.equal([
        ['alpha', memory],
        ['rkllm-tiny', memory],
      ]);
      await run(server, 'beta');
      expect(await loadedNames(server)).to.deep.equal(['alpha', 'beta']);
    } finally {
      await server.close();
    }
  });
});

describe("models by name: a model's sidecar NAME.json", function () {
  this.timeout(120_000);
  // The frame around a run's prompt: with the prompt " beginning to" it is PROMPT.
  const PREFIX = 'Alice was';
  const POSTFIX = ' get very tired';
  const INNER = ' beginning to';
  let dir: string;
  let server: TestServer;

  before(async () => {
    dir = await folderOf(['alpha', 'framed']);
    const sidecar = {
      max_context_len: 256,
      sampling: { top_k: 1, repeat_penalty: 1 },
      chat_template: { system_prompt: '', prompt_prefix: PREFIX, prompt_postfix: POSTFIX },
    };
    await writeFile(join(dir, 'framed.json'), JSON.stringify(sidecar));
    server = await startTestServer({ settings: { engine: { max_context_len: 1024 }, models: { dir, max_loaded: 2 } } });
  });

  after(async () => {
    await server?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('/api/show gives its context, sampling and template', async () => {
    const ollama = new Ollama({ host: `http://${server.addresses.http}` });
    const shown = await ollama.show({ model: 'framed' });
    expect(shown.parameters.split('\n')).to.include.members(['top_k 1', 'repeat_penalty 1', 'num_ctx 256']);
    expect(shown.template).to.equal(`${PREFIX}{{ .Prompt }}${POSTFIX}`);
    const plain = await ollama.show({ model: 'alpha' });
    expect(plain.parameters.split('\n')).to.include.members(['top_k 40', 'num_ctx 1024']);
  });

  it('its template frames each prompt and its sampling is the default: the same greedy text as alpha given the framed prompt', async () => {
    expect(PREFIX + INNER + POSTFIX).to.equal(PROMPT);
    const rest = INNER;
    const framed = (await server.http.result('rkllm_run', { prompt_input: rest, max_new_tokens: 12, model: 'framed' })).text as string;
    const again = (await server.http.result('rkllm_run', { prompt_input: rest, max_new_tokens: 12, model: 'framed' })).text as string;
    const greedy = { prompt_input: PROMPT, max_new_tokens: 12, top_k: 1, repeat_penalty: 1, model: 'alpha' };
    const alpha = (await server.http.result('rkllm_run', greedy)).text as string;
    expect(framed).to.have.length.above(0);
    expect(framed).to.equal(alpha);
    expect(again).to.equal(framed);
    const unframed = (await server.http.result('rkllm_run', { ...greedy, prompt_input: rest })).text as string;
    expect(unframed).not.to.equal(framed, 'the frame changes the text: the check above is meaningful');
  });

  it('its context is the one it loads with: a prompt of about 300 tokens overflows it, not alpha', async () => {
    const long = ` ${PREFIX}`.repeat(150);
    const refused = await server.http.call('rkllm_run', { prompt_input: long, max_new_tokens: 2, model: 'framed' });
    expect(refused.error).to.deep.include({ code: -32602 });
    expect(refused.error!.message).to.match(/max_context_len 256/);
    const accepted = await server.http.result('rkllm_run', { prompt_input: long, max_new_tokens: 2, model: 'alpha' });
    expect(accepted.text).to.be.a('string');
  });
});

describe('models by name: loading and unloading need an admin key when keys are set (on demand too, unless models.user_loads)', function () {
  this.timeout(120_000);
  const KEY = 'user-key-0123456789abcdef';
  const ADMIN = 'admin-key-0123456789abcdef';
  let dir: string;
  let server: TestServer;

  before(async () => {
    dir = await folderOf(['alpha']);
    server = await startTestServer({ settings: { auth: { api_keys: [KEY], admin_keys: [ADMIN] }, models: { dir, max_loaded: 2 } } });
  });

  after(async () => {
    await server?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('models_load and models_unload are -32018 with a user key and done with an admin key; listing needs a key only', async () => {
    const user = new HttpRpc(server.url, { authorization: `Bearer ${KEY}` });
    const admin = new HttpRpc(server.url, { authorization: `Bearer ${ADMIN}` });
    expect((await user.result('models_list', {})).models.map((m: { name: string }) => m.name)).to.deep.equal(['rkllm-tiny', 'alpha']);
    const refused = await user.call('models_load', { model: 'alpha' });
    expect(refused.error).to.deep.include({ code: -32018 });
    expect(refused.error!.message).to.match(/models_load.*admin key/);
    expect(await loadedNames(server, user)).to.deep.equal(['rkllm-tiny']);
    expect(await admin.result('models_load', { model: 'alpha' })).to.deep.equal({ model: 'alpha', loaded: true });
    expect(await loadedNames(server, user)).to.deep.equal(['alpha', 'rkllm-tiny']);
    expect((await user.call('models_unload', { model: 'alpha' })).error).to.deep.include({ code: -32018 });
    expect(await loadedNames(server, user)).to.deep.equal(['alpha', 'rkllm-tiny']);
    expect(await admin.result('models_unload', { model: 'alpha' })).to.deep.equal({ model: 'alpha', unloading: true });
    expect(await loadedNames(server, user)).to.deep.equal(['rkllm-tiny']);
  });

  it('a user key is served the models that are loaded, and refused (403, -32018) one that would need loading; an admin key loads it on demand', async () => {
    const baseURL = `http://${server.addresses.http}/v1`;
    const user = new HttpRpc(server.url, { authorization: `Bearer ${KEY}` });
    const asUser = new OpenAI({ baseURL, apiKey: KEY, maxRetries: 0 });
    const asAdmin = new OpenAI({ baseURL, apiKey: ADMIN, maxRetries: 0 });
    const ask = (client: OpenAI, model: string): Promise<OpenAI.ChatCompletion> =>
      client.chat.completions.create({ model, messages: [{ role: 'user', content: 'Alice was' }], max_tokens: 4, temperature: 0 });
    expect(await loadedNames(server, user)).to.deep.equal(['rkllm-tiny']);
    const refused = await ask(asUser, 'alpha').catch((err: unknown) => err);
    expect(refused).to.be.instanceOf(OpenAI.PermissionDeniedError);
    expect((refused as Error).message).to.match(/alpha is not loaded.*admin key.*models\.user_loads/);
    const viaRpc = await user.call('rkllm_run', { prompt_input: 'Alice was', max_new_tokens: 4, model: 'alpha' });
    expect(viaRpc.error).to.deep.include({ code: -32018 });
    expect(await loadedNames(server, user), 'nothing was loaded for the user').to.deep.equal(['rkllm-tiny']);
    expect((await ask(asUser, 'rkllm-tiny')).choices[0]!.message.content).to.be.a('string');
    expect((await ask(asAdmin, 'alpha')).choices[0]!.message.content).to.be.a('string');
    expect(await loadedNames(server, user)).to.deep.equal(['alpha', 'rkllm-tiny']);
    expect((await ask(asUser, 'alpha')).choices[0]!.message.content, 'loaded now: served to the user').to.be.a('string');
    expect((await user.result('rkllm_run', { prompt_input: 'Alice was', max_new_tokens: 4, model: 'alpha' })).text).to.be.a('string');
    await new HttpRpc(server.url, { authorization: `Bearer ${ADMIN}` }).result('models_unload', { model: 'alpha' });
  });

  it('with models.user_loads, a user key loads on demand', async () => {
    const own = await startTestServer({
      settings: { auth: { api_keys: [KEY], admin_keys: [ADMIN] }, models: { dir, max_loaded: 2, user_loads: true } },
    });
    try {
      const asUser = new OpenAI({ baseURL: `http://${own.addresses.http}/v1`, apiKey: KEY, maxRetries: 0 });
      const answer = await asUser.chat.completions.create({
        model: 'alpha',
        messages: [{ role: 'user', content: 'Alice was' }],
        max_tokens: 4,
      });
      expect(answer.choices[0]!.message.content).to.be.a('string');
      expect(await loadedNames(own, new HttpRpc(own.url, { authorization: `Bearer ${KEY}` }))).to.deep.equal(['alpha', 'rkllm-tiny']);
    } finally {
      await own.close();
    }
  });
});

describe('models by name on the RKLLM engine (ABI twin): one model at a time', function () {
  this.timeout(120_000);
  let dir: string;
  let server: TestServer;
  let openai: OpenAI;
  let ollama: Ollama;

  before(async () => {
    const library = await buildTwin('1.3');
    dir = await mkdtemp(join(tmpdir(), 'rkllm-models-'));
    await copyFile(TWIN_MODELS.echo, join(dir, 'echo.rkllm'));
    server = await startTestServer({
      settings: {
        engine: { kind: 'rkllm', model_path: TWIN_MODELS.story, max_context_len: 1024, rkllm: { library } },
        models: { dir, max_loaded: 2 },
      },
    });
    openai = new OpenAI({ baseURL: `http://${server.addresses.http}/v1`, apiKey: 'unused', maxRetries: 0 });
    ollama = new Ollama({ host: `http://${server.addresses.http}` });
  });

  after(async () => {
    await server?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('max_loaded 2 is 1: a loading model counts against it, is not in /api/ps until loaded, and is not unloaded before its request runs', async () => {
    const chat = (model: string) =>
      openai.chat.completions.create({ model, messages: [{ role: 'user', content: 'Once upon a time' }], max_tokens: 5 });
    expect((await openai.models.list()).data.map((m) => m.id)).to.deep.equal(['story', 'echo']);
    expect((await ollama.ps()).models.map((m) => m.name)).to.deep.equal(['story:latest']);
    const slow = slowLoad();
    slow.apply();
    try {
      const echo = chat('echo');
      await server.log.line('models: loading');
      // story made room for echo; echo is loading (its worker waits at the twin's gate).
      const view = (await server.http.result('models_loaded', {})).models as Array<{ name: string; state: string }>;
      expect(view.map((m) => [m.name, m.state])).to.deep.equal([['echo', 'loading']]);
      expect((await ollama.ps()).models).to.deep.equal([]);
      // A request for story now finds no room: the loading model is neither unloaded nor counted out.
      const story = chat('story');
      await server.log.line('models: waiting for room');
      expect(server.log.lines.some((l) => l.msg === 'models: default model loaded again')).to.equal(false);
      slow.finish();
      const [echoed, told] = await Promise.all([echo, story]);
      expect(echoed.model).to.equal('echo');
      expect(told.model).to.equal('story');
      expect(told.choices[0]!.message.content).not.to.equal(echoed.choices[0]!.message.content);
    } finally {
      slow.finish();
    }
    const events = server.log.lines
      .filter((l) => ['models: loaded', 'models: unloaded', 'models: default model loaded again'].includes(l.msg))
      .map((l) => `${l.msg} ${l.model}`);
    expect(events).to.deep.equal([
      'models: unloaded story',
      'models: loaded echo',
      'models: unloaded echo',
      'models: default model loaded again story',
    ]);
    expect((await ollama.ps()).models.map((m) => m.name)).to.deep.equal(['story:latest']);
  });
});
