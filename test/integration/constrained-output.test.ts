// Constrained output ends when the JSON value ends (issue 24): LangChain's structured output, the
// official openai and ollama clients, a forced tool call; and openai.model_aliases.
import { ChatOpenAI } from '@langchain/openai';
import { expect } from 'chai';
import { Ollama } from 'ollama';
import OpenAI from 'openai';
import { z } from 'zod';
import { TINY_MODEL_PROMPTS } from '../../src/gguf/builtin.js';
import { liveFixture } from '../helpers/fixture.js';

const PROMPT = TINY_MODEL_PROMPTS.long;
const LIMIT = 500;

const SCHEMA = {
  type: 'object',
  properties: { answer: { enum: ['yes', 'no'] }, ok: { type: 'boolean' } },
  required: ['answer', 'ok'],
  additionalProperties: false,
};

describe('constrained output ends when the value ends', function () {
  this.timeout(120_000);
  const fixture = liveFixture({ settings: { openai: { model_aliases: { 'gpt-4o-mini': 'rkllm-tiny' } } } });
  let base: string;
  let openai: OpenAI;

  before(() => {
    base = `http://${fixture.server.addresses.http}`;
    openai = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 0 });
  });

  it("LangChain's withStructuredOutput (jsonSchema) gets the parsed value, under an alias", async () => {
    const chat = new ChatOpenAI({ model: 'gpt-4o-mini', apiKey: 'unused', configuration: { baseURL: `${base}/v1` }, maxRetries: 0 });
    const zodSchema = z.object({ answer: z.enum(['yes', 'no']), ok: z.boolean() });
    const structured = chat.withStructuredOutput(zodSchema, { method: 'jsonSchema', name: 'verdict' });
    const value = await structured.invoke(PROMPT);
    expect(['yes', 'no']).to.include(value.answer);
    expect(value.ok).to.be.a('boolean');
    const raw = chat.withStructuredOutput(SCHEMA, { method: 'jsonSchema', name: 'verdict', includeRaw: true });
    const both = await raw.invoke(PROMPT);
    expect(both.parsed).to.have.keys('answer', 'ok');
  });

  it('response_format json_schema: finish_reason "stop", completion_tokens well under max_tokens, streamed or not', async () => {
    const request = {
      model: 'gpt-4o-mini',
      messages: [{ role: 'user' as const, content: PROMPT }],
      max_tokens: LIMIT,
      temperature: 0,
      response_format: { type: 'json_schema' as const, json_schema: { name: 'verdict', schema: SCHEMA } },
    };
    const whole = await openai.chat.completions.create(request);
    const choice = whole.choices[0]!;
    expect(choice.finish_reason).to.equal('stop');
    expect(JSON.parse(choice.message.content!)).to.have.keys('answer', 'ok');
    expect(choice.message.content).to.match(/\}$/);
    expect(whole.usage!.completion_tokens)
      .to.be.above(0)
      .and.below(LIMIT / 5);
    expect(whole.usage!.completion_tokens).to.be.at.most(choice.message.content!.length);
    let text = '';
    let finish: string | null = null;
    let completion = 0;
    for await (const chunk of await openai.chat.completions.create({ ...request, stream: true, stream_options: { include_usage: true } })) {
      text += chunk.choices[0]?.delta.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
      completion = chunk.usage?.completion_tokens ?? completion;
    }
    expect(finish).to.equal('stop');
    expect(JSON.parse(text)).to.have.keys('answer', 'ok');
    expect(completion)
      .to.be.above(0)
      .and.below(LIMIT / 5);
  });

  it('usage counts exactly the tokens the value took: one fewer is "length", that many is "stop"', async () => {
    const ask = (max: number) =>
      openai.chat.completions.create({
        model: 'rkllm-tiny',
        messages: [{ role: 'user', content: PROMPT }],
        max_tokens: max,
        temperature: 0,
        response_format: { type: 'json_schema', json_schema: { name: 'verdict', schema: SCHEMA } },
      });
    const made = (await ask(LIMIT)).usage!.completion_tokens;
    const exact = await ask(made);
    expect([exact.choices[0]!.finish_reason, exact.usage!.completion_tokens]).to.deep.equal(['stop', made]);
    const short = await ask(made - 1);
    expect([short.choices[0]!.finish_reason, short.usage!.completion_tokens]).to.deep.equal(['length', made - 1]);
  });

  it('a forced tool call ends with its arguments: finish_reason "tool_calls", completion_tokens well under max_tokens', async () => {
    const tool = { type: 'function' as const, function: { name: 'verdict', parameters: SCHEMA } };
    const res = await openai.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: PROMPT }],
      tools: [tool],
      tool_choice: { type: 'function', function: { name: 'verdict' } },
      max_tokens: LIMIT,
    });
    const choice = res.choices[0]!;
    expect(choice.finish_reason).to.equal('tool_calls');
    const call = choice.message.tool_calls![0]!;
    if (call.type !== 'function') throw new Error('not a function call');
    expect(call.function.name).to.equal('verdict');
    expect(JSON.parse(call.function.arguments)).to.have.keys('answer', 'ok');
    expect(res.usage!.completion_tokens)
      .to.be.above(0)
      .and.below(LIMIT / 5);
  });

  it('Ollama format: done_reason "stop", eval_count well under num_predict', async () => {
    const ollama = new Ollama({ host: base });
    const res = await ollama.generate({
      model: 'rkllm-tiny',
      prompt: PROMPT,
      format: SCHEMA,
      stream: false,
      options: { num_predict: LIMIT, temperature: 0 },
    });
    expect(res.done_reason).to.equal('stop');
    expect(JSON.parse(res.response ?? '')).to.have.keys('answer', 'ok');
    expect(res.eval_count)
      .to.be.above(0)
      .and.below(LIMIT / 5);
    const chat = await ollama.chat({
      model: 'rkllm-tiny',
      messages: [{ role: 'user', content: PROMPT }],
      format: SCHEMA,
      stream: false,
      options: { num_predict: LIMIT, temperature: 0 },
    });
    expect(chat.done_reason).to.equal('stop');
    expect(JSON.parse(chat.message.content)).to.have.keys('answer', 'ok');
    expect(chat.eval_count).to.be.below(LIMIT / 5);
  });

  it('model aliases: the alias is listed and served; a name without an alias is still 404', async () => {
    const ids = (await openai.models.list()).data.map((m) => m.id);
    expect(ids).to.include.members(['rkllm-tiny', 'gpt-4o-mini']);
    expect((await openai.models.retrieve('gpt-4o-mini')).id).to.equal('gpt-4o-mini');
    const res = await openai.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: PROMPT }],
      max_tokens: 5,
    });
    expect(res.usage!.completion_tokens).to.equal(5);
    for (const err of [
      await openai.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e),
      await openai.models.retrieve('gpt-4o').catch((e: unknown) => e),
    ])
      expect(err).to.be.instanceOf(OpenAI.NotFoundError);
  });
});
