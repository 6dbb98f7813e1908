// A GGUF that carries a chat template: chats through the faces are formatted by it (node-llama-cpp's chat wrappers).
import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { buildModel } from '../../src/gguf/builtin/model.js';
import { gguf, writeGguf } from '../../src/gguf/gguf-writer.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

/** A plain Jinja template that no specialised wrapper claims, so node-llama-cpp runs it as it is. */
const TEMPLATE =
  '{% for message in messages %}[{{ message.role }}] {{ message.content }}\n{% endfor %}{% if add_generation_prompt %}[assistant] {% endif %}';

describe('Chat templates from the GGUF', function () {
  this.timeout(120_000);
  let dir: string;
  let server: TestServer | undefined;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rkllm-template-'));
    const { file } = buildModel('tiny');
    const metadata = new Map(file.metadata);
    metadata.set('tokenizer.chat_template', gguf.string(TEMPLATE));
    const path = join(dir, 'tiny-chat.gguf');
    await writeGguf(path, { ...file, metadata });
    server = await startTestServer({ settings: { engine: { model_path: path } } });
  });

  after(async () => {
    await server?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("a chat is the template's rendering of the conversation: greedy, it continues that text exactly as rkllm_run does", async () => {
    const openai = new OpenAI({ baseURL: `http://${server!.addresses.http}/v1`, apiKey: 'unused', maxRetries: 0 });
    const model = (await openai.models.list()).data[0]!.id;
    expect(model).to.equal('tiny-chat');
    const messages = [
      { role: 'system' as const, content: 'Alice was beginning' },
      { role: 'user' as const, content: 'to get very tired' },
    ];
    const chat = await openai.chat.completions.create({ model, messages, max_tokens: 40, temperature: 0 });
    const rendered = '[system] Alice was beginning\n[user] to get very tired\n[assistant] ';
    const rpc = await server!.http.result('rkllm_run', { prompt_input: rendered, max_new_tokens: 40, temperature: 0 });
    expect(chat.choices[0]!.message.content).to.equal(rpc.text);
    expect(chat.usage!.prompt_tokens).to.be.at.least(rendered.length / 2);
  });
});
