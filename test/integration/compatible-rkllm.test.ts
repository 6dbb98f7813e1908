// The OpenAI and Ollama faces on the RKLLM engine (the ABI twin as librkllmrt.so): what it cannot do is a clear 400 naming the engine.
import { expect } from 'chai';
import { Ollama } from 'ollama';
import OpenAI from 'openai';
import { TWIN_MODELS, buildTwin } from '../helpers/rkllm-twin.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

describe('OpenAI and Ollama faces on the RKLLM engine (ABI twin 1.3)', function () {
  this.timeout(60_000);
  let server: TestServer | undefined;
  let openai: OpenAI;
  let model: string;

  before(async () => {
    const library = await buildTwin('1.3');
    server = await startTestServer({
      settings: { engine: { kind: 'rkllm', model_path: TWIN_MODELS.story, max_context_len: 1024, rkllm: { library } } },
    });
    openai = new OpenAI({ baseURL: `http://${server.addresses.http}/v1`, apiKey: 'unused', maxRetries: 0 });
    model = (await openai.models.list()).data[0]!.id;
  });

  after(async () => {
    await server?.close();
  });

  it('chat (a conversation flattened into one prompt) streams the same text as it answers whole; a seed is ignored', async () => {
    const request = {
      model,
      messages: [
        { role: 'system' as const, content: 'Tell stories.' },
        { role: 'user' as const, content: 'Once upon a time' },
      ],
      max_tokens: 20,
      seed: 1,
    };
    const whole = await openai.chat.completions.create(request);
    expect(whole.choices[0]!.message.content).to.have.length.above(0);
    expect(whole.usage!.completion_tokens).to.be.above(0);
    let streamed = '';
    for await (const chunk of await openai.chat.completions.create({ ...request, stream: true }))
      streamed += chunk.choices[0]?.delta.content ?? '';
    expect(streamed).to.equal(whole.choices[0]!.message.content);
  });

  it('JSON-schema output and tools in a request are 400s that name the engine', async () => {
    const json = await openai.chat.completions
      .create({ model, messages: [{ role: 'user', content: 'x' }], response_format: { type: 'json_object' } })
      .catch((e: unknown) => e);
    expect(json).to.be.instanceOf(OpenAI.BadRequestError);
    expect((json as Error).message).to.match(/JSON-schema.*not supported by the rkllm engine/);
    const tool = { type: 'function' as const, function: { name: 'f', parameters: { type: 'object' } } };
    const tools = await openai.chat.completions
      .create({ model, messages: [{ role: 'user', content: 'x' }], tools: [tool] })
      .catch((e: unknown) => e);
    expect(tools).to.be.instanceOf(OpenAI.BadRequestError);
    expect((tools as Error).message).to.match(/rkllm engine.*rkllm_set_function_tools/);
    const ollama = new Ollama({ host: `http://${server!.addresses.http}` });
    const format = await ollama.generate({ model, prompt: 'x', format: 'json', stream: false }).catch((e: unknown) => e);
    expect(format).to.have.property('status_code', 400);
    expect((format as Error).message).to.match(/rkllm engine/);
  });
});
