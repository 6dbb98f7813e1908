// The OpenAI-compatible API (/v1), driven by the official `openai` client.
import { expect } from 'chai';
import OpenAI from 'openai';
import { TINY_MODEL_PROMPTS } from '../../src/gguf/builtin.js';
import { liveFixture } from '../helpers/fixture.js';
import { msUntilIdle } from '../helpers/idle.js';
import { HttpRpc } from '../helpers/rpc.js';
import { startTestServer } from '../helpers/server.js';

/** About 6000 tokens for the character-level model: its prefill takes well over 100 ms. */
const LONG_PROMPT = 'Alice was beginning to get very tired of sitting by her sister on the bank. '.repeat(80);
const PROMPT = TINY_MODEL_PROMPTS.long;

const WEATHER_TOOL = {
  type: 'function' as const,
  function: {
    name: 'get_weather',
    description: 'The weather in a city',
    parameters: {
      type: 'object',
      properties: { city: { enum: ['Paris', 'Rome'] }, celsius: { type: 'boolean' } },
      required: ['city', 'celsius'],
    },
  },
};

async function collect(
  stream: AsyncIterable<OpenAI.Chat.Completions.ChatCompletionChunk>,
): Promise<{ text: string; chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] }> {
  const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return { text: chunks.map((c) => c.choices[0]?.delta.content ?? '').join(''), chunks };
}

describe('OpenAI-compatible API', function () {
  this.timeout(120_000);
  const fixture = liveFixture({ settings: { engine: { parallel: 2, max_context_len: 8192 } } });
  let openai: OpenAI;
  let model: string;
  let base: string;

  before(async () => {
    base = `http://${fixture.server.addresses.http}`;
    openai = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 0 });
    model = (await openai.models.list()).data[0]!.id;
  });

  describe('models', () => {
    it('lists the loaded model under its file name without the extension, and returns it by id', async () => {
      const list = await openai.models.list();
      expect(list.data).to.have.length(1);
      expect(model).to.equal('rkllm-tiny');
      expect(list.data[0]).to.include({ id: model, object: 'model' });
      expect(await openai.models.retrieve(model)).to.include({ id: model, object: 'model' });
    });

    it('an unknown model is a 404 in OpenAI error shape', async () => {
      const err = await openai.models.retrieve('gpt-4o').catch((e: unknown) => e);
      expect(err).to.be.instanceOf(OpenAI.NotFoundError);
      expect((err as InstanceType<typeof OpenAI.NotFoundError>).error).to.include({
        type: 'invalid_request_error',
        code: 'model_not_found',
      });
      const chat = await openai.chat.completions
        .create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] })
        .catch((e: unknown) => e);
      expect(chat).to.be.instanceOf(OpenAI.NotFoundError);
    });
  });

  describe('chat completions and completions', () => {
    it('greedy chat: the streamed text equals the non-streamed text; usage and finish_reason are reported', async () => {
      const request = { model, messages: [{ role: 'user' as const, content: PROMPT }], max_tokens: 40, temperature: 0 };
      const whole = await openai.chat.completions.create(request);
      const choice = whole.choices[0]!;
      expect(whole.object).to.equal('chat.completion');
      expect(choice.message.role).to.equal('assistant');
      expect(choice.finish_reason).to.equal('length');
      expect(choice.message.content).to.have.length.above(10);
      expect(whole.usage).to.include({ completion_tokens: 40 });
      expect(whole.usage!.total_tokens).to.equal(whole.usage!.prompt_tokens + 40);
      const streamed = await collect(
        await openai.chat.completions.create({ ...request, stream: true, stream_options: { include_usage: true } }),
      );
      expect(streamed.text).to.equal(choice.message.content);
      expect(streamed.chunks[0]!.choices[0]!.delta.role).to.equal('assistant');
      expect(streamed.chunks.filter((c) => c.choices[0]?.finish_reason).map((c) => c.choices[0]!.finish_reason)).to.deep.equal(['length']);
      expect(streamed.chunks.at(-1)!.choices).to.deep.equal([]);
      expect(streamed.chunks.at(-1)!.usage).to.include({ completion_tokens: 40 });
    });

    it('greedy completion: streamed and non-streamed text equal rkllm_run for the same raw prompt', async () => {
      const rpc = (await fixture.http.result('rkllm_run', { prompt_input: PROMPT, max_new_tokens: 50, temperature: 0 })).text as string;
      const whole = await openai.completions.create({ model, prompt: PROMPT, max_tokens: 50, temperature: 0 });
      expect(whole.object).to.equal('text_completion');
      expect(whole.choices[0]!.text).to.equal(rpc);
      expect(whole.choices[0]!.finish_reason).to.equal('length');
      let streamed = '';
      for await (const chunk of await openai.completions.create({ model, prompt: PROMPT, max_tokens: 50, temperature: 0, stream: true })) {
        streamed += chunk.choices[0]?.text ?? '';
      }
      expect(streamed).to.equal(rpc);
    });

    it('a stop string ends the text before it, never included, streamed or not; finish_reason is "stop"', async () => {
      const full = (await openai.completions.create({ model, prompt: PROMPT, max_tokens: 60, temperature: 0 })).choices[0]!.text;
      const stop = full.slice(20, 24);
      const expected = full.slice(0, full.indexOf(stop));
      const whole = await openai.completions.create({ model, prompt: PROMPT, max_tokens: 60, temperature: 0, stop: ['zzzz', stop] });
      expect(whole.choices[0]).to.include({ text: expected, finish_reason: 'stop' });
      const streamed = await collect(
        await openai.chat.completions.create({
          model,
          messages: [{ role: 'user', content: PROMPT }],
          max_tokens: 60,
          temperature: 0,
          stop,
          stream: true,
        }),
      );
      expect(streamed.text).to.equal(expected);
      expect(streamed.chunks.at(-1)!.choices[0]!.finish_reason).to.equal('stop');
    });

    it('accepts system, assistant and tool messages, sampling fields and the llama-server extensions', async () => {
      const res = await openai.chat.completions.create({
        model,
        messages: [
          { role: 'system', content: 'You tell stories.' },
          { role: 'user', content: 'Weather?' },
          {
            role: 'assistant',
            content: null,
            tool_calls: [{ id: 'c1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Rome"}' } }],
          },
          { role: 'tool', tool_call_id: 'c1', content: 'Sunny' },
          { role: 'user', content: [{ type: 'text', text: 'Alice' }] },
        ],
        max_completion_tokens: 8,
        temperature: 0.7,
        top_p: 0.9,
        frequency_penalty: 0.5,
        presence_penalty: 0.5,
        seed: 42,
        // @ts-expect-error llama-server's extensions are not in the client's types
        top_k: 20,
        repeat_penalty: 1.2,
      });
      expect(res.choices[0]!.finish_reason).to.equal('length');
      expect(res.usage!.completion_tokens).to.equal(8);
    });

    it('the same seed gives the same sampled text', async () => {
      const request = { model, prompt: PROMPT, max_tokens: 30, temperature: 1.5, seed: 7 };
      const [a, b] = await Promise.all([openai.completions.create(request), openai.completions.create(request)]);
      expect(a.choices[0]!.text).to.equal(b.choices[0]!.text);
    });
  });

  describe('tools and JSON', () => {
    it('tool_choice "required": the call comes back as tool_calls with arguments that match the parameters, streamed or not', async () => {
      const request = {
        model,
        messages: [{ role: 'user' as const, content: 'What is the weather in Rome?' }],
        tools: [WEATHER_TOOL],
        tool_choice: 'required' as const,
        max_tokens: 200,
      };
      const whole = await openai.chat.completions.create(request);
      const choice = whole.choices[0]!;
      expect(choice.finish_reason).to.equal('tool_calls');
      expect(choice.message.content).to.equal(null);
      const call = choice.message.tool_calls![0]!;
      expect(call.type).to.equal('function');
      if (call.type !== 'function') throw new Error('not a function call');
      expect(call.function.name).to.equal('get_weather');
      const args = JSON.parse(call.function.arguments) as { city: string; celsius: boolean };
      expect(['Paris', 'Rome']).to.include(args.city);
      expect(args.celsius).to.be.a('boolean');
      const streamed = await collect(await openai.chat.completions.create({ ...request, stream: true }));
      const deltas = streamed.chunks.flatMap((c) => c.choices[0]?.delta.tool_calls ?? []);
      expect(deltas).to.have.length(1);
      expect(deltas[0]!.function!.name).to.equal('get_weather');
      expect(JSON.parse(deltas[0]!.function!.arguments!)).to.have.keys('city', 'celsius');
      expect(streamed.text).to.equal('');
      expect(streamed.chunks.at(-1)!.choices[0]!.finish_reason).to.equal('tool_calls');
    });

    it('tool_choice naming a function calls that one; "auto" lets the model answer in text', async () => {
      const other = {
        type: 'function' as const,
        function: { name: 'get_time', parameters: { type: 'object', properties: { zone: { enum: ['UTC'] } }, required: ['zone'] } },
      };
      const named = await openai.chat.completions.create({
        model,
        messages: [{ role: 'user', content: 'Time?' }],
        tools: [WEATHER_TOOL, other],
        tool_choice: { type: 'function', function: { name: 'get_time' } },
        max_tokens: 100,
      });
      const call = named.choices[0]!.message.tool_calls![0]!;
      if (call.type !== 'function') throw new Error('not a function call');
      expect(call.function.name).to.equal('get_time');
      expect(JSON.parse(call.function.arguments)).to.deep.equal({ zone: 'UTC' });
      const cut = await openai.chat.completions.create({
        model,
        messages: [{ role: 'user', content: 'Weather?' }],
        tools: [WEATHER_TOOL],
        tool_choice: 'required',
        max_tokens: 3,
      });
      expect(cut.choices[0]!.finish_reason, 'a call cut short by max_tokens').to.equal('length');
      expect(cut.choices[0]!.message.tool_calls).to.equal(undefined);
      expect(cut.choices[0]!.message.content).to.match(/^\{/);
      const auto = await openai.chat.completions.create({
        model,
        messages: [{ role: 'user', content: PROMPT }],
        tools: [WEATHER_TOOL],
        max_tokens: 20,
        temperature: 0,
      });
      expect(auto.choices[0]!.message.tool_calls).to.equal(undefined);
      expect(auto.choices[0]!.message.content).to.have.length.above(0);
    });

    it('response_format json_schema: the output parses and matches the schema; json_object gives a JSON object', async () => {
      const schema = {
        type: 'object',
        properties: {
          mood: { enum: ['happy', 'sad'] },
          tired: { type: 'boolean' },
          tags: { type: 'array', items: { enum: ['a', 'b'] }, maxItems: 3 },
        },
        required: ['mood', 'tired', 'tags'],
      };
      for (const stream of [false, true]) {
        const request = {
          model,
          messages: [{ role: 'user' as const, content: PROMPT }],
          max_tokens: 300,
          temperature: 0,
          response_format: { type: 'json_schema' as const, json_schema: { name: 'alice', schema } },
        };
        const text = stream
          ? (await collect(await openai.chat.completions.create({ ...request, stream: true }))).text
          : (await openai.chat.completions.create(request)).choices[0]!.message.content!;
        const value = JSON.parse(text) as { mood: string; tired: boolean; tags: string[] };
        expect(text).to.equal(text.trim());
        expect(['happy', 'sad']).to.include(value.mood);
        expect(value.tired).to.be.a('boolean');
        expect(value.tags.every((t) => t === 'a' || t === 'b')).to.equal(true);
      }
      // Any JSON object: the built-in model fills a free string until max_tokens, so only the start is certain.
      const object = await openai.chat.completions.create({
        model,
        messages: [{ role: 'user', content: PROMPT }],
        max_tokens: 50,
        temperature: 0,
        response_format: { type: 'json_object' },
      });
      const content = object.choices[0]!.message.content!;
      expect(content).to.match(/^\{\s*"/);
      if (object.choices[0]!.finish_reason === 'stop') expect(JSON.parse(content)).to.be.an('object');
    });
  });

  describe('embeddings', () => {
    it('one vector per input, unit length, the same for the same text, in float or base64', async () => {
      const res = await openai.embeddings.create({ model, input: ['Alice', 'the rabbit hole', 'Alice'] });
      expect(res.data.map((d) => d.index)).to.deep.equal([0, 1, 2]);
      const [a, b, again] = res.data.map((d) => d.embedding);
      expect(a!.length).to.be.above(16);
      expect(b!.length).to.equal(a!.length);
      expect(Math.hypot(...a!)).to.be.closeTo(1, 1e-5);
      expect(again).to.deep.equal(a);
      expect(b).to.not.deep.equal(a);
      expect(res.usage.prompt_tokens).to.be.above(0);
      const floats = await openai.embeddings.create({ model, input: 'Alice', encoding_format: 'float' });
      floats.data[0]!.embedding.forEach((v, i) => expect(v).to.be.closeTo(a![i]!, 1e-6));
    });
  });

  describe('abort and disconnects', () => {
    it("the client's abort of a stream frees the engine within 100 ms", async () => {
      const controller = new AbortController();
      const stream = await openai.chat.completions.create(
        { model, messages: [{ role: 'user', content: PROMPT }], max_tokens: 8000, temperature: 0, stream: true },
        { signal: controller.signal },
      );
      let chunks = 0;
      const reading = (async () => {
        for await (const chunk of stream) if (chunk && ++chunks === 5) controller.abort();
      })().catch((e: unknown) => e);
      // The client ends the iteration quietly on its own abort.
      await reading;
      const aborted = performance.now();
      expect(chunks).to.be.at.least(5);
      expect(await msUntilIdle(fixture.http, aborted)).to.be.below(100);
    });

    it("the client's abort during prefill (not streamed) frees the engine within 100 ms", async () => {
      const controller = new AbortController();
      let pending: Promise<unknown> | undefined;
      await fixture.server.streams.untilNextRun(() => {
        pending = openai.completions
          .create({ model, prompt: LONG_PROMPT, max_tokens: 100 }, { signal: controller.signal })
          .catch((e: unknown) => e);
      });
      expect((await fixture.http.result('rkllm_is_running', {})).running).to.equal(true);
      controller.abort();
      const aborted = performance.now();
      expect(await pending).to.be.instanceOf(OpenAI.APIUserAbortError);
      expect(await msUntilIdle(fixture.http, aborted)).to.be.below(100);
    });
  });

  describe('bad requests', () => {
    const post = (path: string, body: string): Promise<Response> =>
      fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });

    it('malformed JSON is a 400 in OpenAI error shape, and the server goes on answering', async () => {
      for (const path of ['/v1/chat/completions', '/v1/completions', '/v1/embeddings']) {
        const res = await post(path, '{"model": ');
        expect(res.status).to.equal(400);
        const { error } = (await res.json()) as { error: Record<string, unknown> };
        expect(error).to.have.keys('message', 'type', 'param', 'code');
        expect(error.type).to.equal('invalid_request_error');
      }
      expect((await openai.models.list()).data).to.have.length(1);
    });

    it('n other than 1, missing messages, wrong types and ranges are 400s that name the field', async () => {
      const cases: Array<[Record<string, unknown>, string]> = [
        [{ messages: [{ role: 'user', content: 'x' }], n: 2 }, 'n'],
        [{}, 'messages'],
        [{ messages: [] }, 'messages'],
        [{ messages: [{ role: 'robot', content: 'x' }] }, 'messages[0].role'],
        [{ messages: [{ role: 'user', content: 'x' }], temperature: 'hot' }, 'temperature'],
        [{ messages: [{ role: 'user', content: 'x' }], top_p: 3 }, 'top_p'],
        [{ messages: [{ role: 'user', content: 'x' }], max_tokens: 0 }, 'max_tokens'],
        [{ messages: [{ role: 'user', content: 'x' }], stop: 5 }, 'stop'],
        [{ messages: [{ role: 'user', content: 'x' }], response_format: { type: 'xml' } }, 'response_format.type'],
        [
          {
            messages: [{ role: 'user', content: 'x' }],
            tools: [WEATHER_TOOL],
            tool_choice: { type: 'function', function: { name: 'nope' } },
          },
          'tool_choice',
        ],
      ];
      for (const [body, param] of cases) {
        const err = await openai.chat.completions.create({ model, ...body } as never).catch((e: unknown) => e);
        expect(err, param).to.be.instanceOf(OpenAI.BadRequestError);
        expect((err as InstanceType<typeof OpenAI.BadRequestError>).error, param).to.include({ type: 'invalid_request_error', param });
      }
    });

    it('an unknown path under /v1 is a 404; POST / stays JSON-RPC', async () => {
      expect((await post('/v1/images/generations', '{}')).status).to.equal(404);
      expect(await fixture.http.result('rkllm_is_running', {})).to.include({ running: false });
    });

    it('the requests are counted in the metrics under the face', async () => {
      await openai.models.list();
      const text = await (await fetch(`${base}/metrics`)).text();
      expect(text).to.match(/method="openai\.models",transport="http"/);
      expect(text).to.match(/method="openai\.chat\.completions",transport="http"/);
    });
  });
});

describe('OpenAI-compatible API: keys and the queue', function () {
  this.timeout(120_000);
  const KEY = 'openai-key-0123456789abcdef';

  it('with keys, a request without the key or with a wrong one is 401; the apiKey works', async () => {
    await using server = await startTestServer({ settings: { auth: { api_keys: [KEY] } } });
    const baseURL = `http://${server.addresses.http}/v1`;
    const wrong = await new OpenAI({ baseURL, apiKey: 'wrong-key-0123456789abcdef', maxRetries: 0 }).models.list().catch((e: unknown) => e);
    expect(wrong).to.be.instanceOf(OpenAI.AuthenticationError);
    const none = await fetch(`${baseURL}/models`);
    expect(none.status).to.equal(401);
    expect(((await none.json()) as { error: { type: string } }).error.type).to.equal('authentication_error');
    const client = new OpenAI({ baseURL, apiKey: KEY, maxRetries: 0 });
    const model = (await client.models.list()).data[0]!.id;
    // Greedy: a sampled answer may end with EOS before 5 tokens.
    const res = await client.completions.create({ model, prompt: PROMPT, max_tokens: 5, temperature: 0 });
    expect(res.usage!.completion_tokens).to.equal(5);
  });

  it('a stream started through the API belongs to its key: only that key can abort it', async () => {
    const OTHER = 'other-key-0123456789abcdef';
    await using server = await startTestServer({ settings: { auth: { api_keys: [KEY, OTHER] } } });
    const client = new OpenAI({ baseURL: `http://${server.addresses.http}/v1`, apiKey: KEY, maxRetries: 0 });
    const model = (await client.models.list()).data[0]!.id;
    const stream = await client.chat.completions.create({
      model,
      messages: [{ role: 'user', content: PROMPT }],
      max_tokens: 8000,
      temperature: 0,
      stream: true,
    });
    let text = '';
    const reading = (async () => {
      for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    })();
    await server.streams.until(() => server.streams.runs === 1, 'the stream to start');
    expect(await new HttpRpc(server.url, { authorization: `Bearer ${OTHER}` }).result('rkllm_abort', {})).to.deep.equal({ aborted: 0 });
    expect(await new HttpRpc(server.url, { authorization: `Bearer ${KEY}` }).result('rkllm_abort', {})).to.deep.equal({ aborted: 1 });
    await reading;
    expect(text.length).to.be.below(8000);
  });

  it('a full queue is a 429 with Retry-After', async () => {
    await using server = await startTestServer({ settings: { engine: { parallel: 1, queue_limit: 0 } } });
    const baseURL = `http://${server.addresses.http}/v1`;
    const client = new OpenAI({ baseURL, apiKey: 'unused', maxRetries: 0 });
    const model = (await client.models.list()).data[0]!.id;
    const controller = new AbortController();
    const first = await client.chat.completions.create(
      { model, messages: [{ role: 'user', content: PROMPT }], max_tokens: 8000, temperature: 0, stream: true },
      { signal: controller.signal },
    );
    const reading = (async () => {
      for await (const chunk of first) void chunk;
    })().catch(() => undefined);
    await server.streams.until(() => server.streams.runs === 1, 'the first run to start');
    const res = await fetch(`${baseURL}/completions`, { method: 'POST', body: JSON.stringify({ model, prompt: 'x', max_tokens: 1 }) });
    expect(res.status).to.equal(429);
    expect(res.headers.get('retry-after')).to.equal('1');
    expect(((await res.json()) as { error: { code: string } }).error.code).to.equal('busy');
    controller.abort();
    await reading;
  });
});
