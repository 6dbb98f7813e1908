// The Ollama-compatible API (/api), driven by the official `ollama` client.
import { expect } from 'chai';
import { Ollama } from 'ollama';
import { TINY_MODEL_PROMPTS } from '../../src/gguf/builtin.js';
import { liveFixture } from '../helpers/fixture.js';
import { msUntilIdle } from '../helpers/idle.js';
import { startTestServer } from '../helpers/server.js';

const PROMPT = TINY_MODEL_PROMPTS.long;
const DURATIONS = ['total_duration', 'load_duration', 'prompt_eval_count', 'prompt_eval_duration', 'eval_count', 'eval_duration'];

describe('Ollama-compatible API', function () {
  this.timeout(120_000);
  const fixture = liveFixture({ settings: { engine: { parallel: 2 } } });
  let ollama: Ollama;
  let model: string;
  let base: string;

  before(async () => {
    base = `http://${fixture.server.addresses.http}`;
    ollama = new Ollama({ host: base });
    model = (await ollama.list()).models[0]!.name;
  });

  it('version, tags, show and ps describe the loaded model', async () => {
    expect((await ollama.version()).version).to.match(/^\d+\.\d+\.\d+$/);
    const { models } = await ollama.list();
    expect(models).to.have.length(1);
    expect(model).to.equal('rkllm-tiny:latest');
    expect(models[0]!.size).to.be.above(1000);
    expect(models[0]!.details.format).to.equal('gguf');
    const shown = await ollama.show({ model });
    expect(shown.capabilities).to.include.members(['completion', 'embedding']);
    expect(shown.parameters).to.match(/num_ctx \d+/);
    expect((await ollama.ps()).models.map((m) => m.name)).to.deep.equal([model]);
    expect(await ollama.show({ model: model.replace(/:latest$/, '') })).to.have.property('modelfile');
  });

  it('generate: greedy streamed text equals the non-streamed text and rkllm_run; counts and durations in nanoseconds', async () => {
    const rpc = (await fixture.http.result('rkllm_run', { prompt_input: PROMPT, max_new_tokens: 40, temperature: 0 })).text as string;
    const request = { model, prompt: PROMPT, options: { num_predict: 40, temperature: 0 } };
    const whole = await ollama.generate({ ...request, stream: false });
    expect(whole.response).to.equal(rpc);
    expect(whole).to.include({ done: true, done_reason: 'length', eval_count: 40 });
    for (const key of DURATIONS) expect(whole, key).to.have.property(key).that.is.a('number');
    expect(whole.total_duration).to.be.at.least(whole.eval_duration);
    expect(whole.eval_duration).to.be.above(1000);
    let streamed = '';
    let last: Record<string, unknown> = {};
    for await (const part of await ollama.generate({ ...request, stream: true })) {
      streamed += part.response;
      if (part.done) last = part as unknown as Record<string, unknown>;
    }
    expect(streamed).to.equal(rpc);
    expect(last).to.include({ done: true, done_reason: 'length', eval_count: 40 });
  });

  it('chat: greedy streamed text equals the non-streamed text; options map num_predict and stop', async () => {
    const request = {
      model,
      messages: [{ role: 'user', content: PROMPT }],
      options: { num_predict: 40, temperature: 0, top_k: 1, top_p: 1, repeat_penalty: 1.1, seed: 3 },
    };
    const whole = await ollama.chat({ ...request, stream: false });
    expect(whole.message.role).to.equal('assistant');
    expect(whole.eval_count).to.equal(40);
    let streamed = '';
    for await (const part of await ollama.chat({ ...request, stream: true })) streamed += part.message.content;
    expect(streamed).to.equal(whole.message.content);
    const stop = whole.message.content.slice(15, 19);
    const stopped = await ollama.chat({ ...request, options: { ...request.options, stop: [stop] }, stream: false });
    expect(stopped.message.content).to.equal(whole.message.content.slice(0, whole.message.content.indexOf(stop)));
    expect(stopped.done_reason).to.equal('stop');
  });

  it('format with a JSON Schema: the output parses and matches it', async () => {
    const format = {
      type: 'object',
      properties: { mood: { enum: ['happy', 'sad'] }, tired: { type: 'boolean' } },
      required: ['mood', 'tired'],
    };
    const res = await ollama.chat({
      model,
      messages: [{ role: 'user', content: PROMPT }],
      format,
      options: { num_predict: 200, temperature: 0 },
      stream: false,
    });
    const value = JSON.parse(res.message.content) as { mood: string; tired: boolean };
    expect(['happy', 'sad']).to.include(value.mood);
    expect(value.tired).to.be.a('boolean');
  });

  it('chat takes tools, tool calls and tool results in the conversation', async () => {
    const tool = {
      type: 'function',
      function: {
        name: 'get_weather',
        description: 'Weather',
        parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
      },
    };
    const res = await ollama.chat({
      model,
      messages: [
        { role: 'user', content: 'Weather in Rome?' },
        { role: 'assistant', content: '', tool_calls: [{ function: { name: 'get_weather', arguments: { city: 'Rome' } } }] },
        { role: 'tool', content: 'Sunny' },
      ],
      tools: [tool],
      // Greedy: a sampled answer may end with EOS before 10 tokens.
      options: { num_predict: 10, temperature: 0 },
      stream: false,
    });
    expect(res.done).to.equal(true);
    expect(res.eval_count).to.equal(10);
  });

  it("embed: one unit vector per input, equal to the OpenAI face's", async () => {
    const res = await ollama.embed({ model, input: ['Alice', 'the rabbit hole'] });
    expect(res.embeddings).to.have.length(2);
    expect(Math.hypot(...res.embeddings[0]!)).to.be.closeTo(1, 1e-5);
    const openai = (await (await fetch(`${base}/v1/embeddings`, { method: 'POST', body: JSON.stringify({ input: 'Alice' }) })).json()) as {
      data: Array<{ embedding: number[] }>;
    };
    expect(openai.data[0]!.embedding).to.deep.equal(res.embeddings[0]);
  });

  it("the client's abort frees the engine within 100 ms", async () => {
    const stream = await ollama.generate({ model, prompt: PROMPT, options: { num_predict: 8000, temperature: 0 }, stream: true });
    let parts = 0;
    const reading = (async () => {
      for await (const part of stream) if (part && ++parts === 5) stream.abort();
    })().catch((e: unknown) => e);
    expect(await reading).to.have.property('name', 'AbortError');
    const aborted = performance.now();
    expect(await msUntilIdle(fixture.http, aborted)).to.be.below(100);
  });

  it('bad requests: malformed JSON is 400, an unknown model 404, both as {"error": "..."}', async () => {
    const post = (path: string, body: string): Promise<Response> => fetch(`${base}${path}`, { method: 'POST', body });
    for (const path of ['/api/generate', '/api/chat', '/api/embed', '/api/show']) {
      const res = await post(path, '{"model"');
      expect(res.status, path).to.equal(400);
      expect(Object.keys((await res.json()) as object)).to.deep.equal(['error']);
    }
    const unknown = await ollama.generate({ model: 'llama3:8b', prompt: 'x', stream: false }).catch((e: unknown) => e);
    expect(unknown).to.have.property('status_code', 404);
    const bad = await ollama.generate({ model, prompt: 'x', options: { num_predict: 0 }, stream: false }).catch((e: unknown) => e);
    expect(bad).to.have.property('status_code', 400);
    expect((bad as Error).message).to.include('num_predict');
    expect((await post('/api/pull', '{}')).status).to.equal(404);
  });
});

describe('Ollama-compatible API: keys', function () {
  this.timeout(120_000);
  const KEY = 'ollama-key-0123456789abcdef';

  it('with keys, a request without the key is 401; with Authorization: Bearer it works', async () => {
    await using server = await startTestServer({ settings: { auth: { api_keys: [KEY] } } });
    const host = `http://${server.addresses.http}`;
    const refused = await new Ollama({ host }).list().catch((e: unknown) => e);
    expect(refused).to.have.property('status_code', 401);
    const ollama = new Ollama({ host, headers: { authorization: `Bearer ${KEY}` } });
    const model = (await ollama.list()).models[0]!.name;
    // Greedy: a sampled answer may end with EOS before 5 tokens.
    const options = { num_predict: 5, temperature: 0 };
    expect((await ollama.generate({ model, prompt: PROMPT, options, stream: false })).eval_count).to.equal(5);
  });
});
