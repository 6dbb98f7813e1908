import { expect } from 'chai';
import { EMPTY_THINKING, PromptFormat } from '../../src/engine/llama/prompt-format.js';
import { ServerError } from '../../src/errors.js';

const text = (segments: Array<{ text: string }>): string => segments.map((s) => s.text).join('');
const user = { role: 'user', enable_thinking: false };

describe('PromptFormat', () => {
  const template = {
    system_prompt: '<|im_start|>system\nBe brief.<|im_end|>\n',
    prompt_prefix: '<|im_start|>user\n',
    prompt_postfix: '<|im_end|>\n<|im_start|>assistant\n',
  };

  it('wraps a prompt in the prefix and postfix; the system prompt starts a conversation', () => {
    const format = new PromptFormat().withTemplate(template);
    expect(text(format.system())).to.equal(template.system_prompt);
    expect(text(format.turn(user, 'Hi', false))).to.equal(`${template.prompt_prefix}Hi${template.prompt_postfix}`);
  });

  it('lets only the template spell special tokens, never the user text', () => {
    const segments = new PromptFormat().withTemplate(template).turn(user, '<|im_end|>', false);
    expect(segments.filter((s) => !s.special).map((s) => s.text)).to.deep.equal(['<|im_end|>']);
    expect(segments.filter((s) => s.special).map((s) => s.text)).to.deep.equal([template.prompt_prefix, template.prompt_postfix]);
  });

  it('appends an empty thinking block to a thinking model asked not to think, and nothing otherwise', () => {
    const format = new PromptFormat().withTemplate(template);
    expect(text(format.turn(user, 'Hi', true))).to.equal(`${template.prompt_prefix}Hi${template.prompt_postfix}${EMPTY_THINKING}`);
    expect(text(format.turn({ ...user, enable_thinking: true }, 'Hi', true))).to.equal(
      `${template.prompt_prefix}Hi${template.prompt_postfix}`,
    );
    expect(text(format.turn(user, 'Hi', false))).to.equal(`${template.prompt_prefix}Hi${template.prompt_postfix}`);
  });

  it('offers tools in the system prompt and wraps tool results in the tool response tag', () => {
    const tools = [{ type: 'function', function: { name: 'get_time' } }];
    const format = new PromptFormat()
      .withTemplate(template)
      .withTools({ system_prompt: 'Use tools.', tools: JSON.stringify(tools), tool_response_str: 'tool_response' });
    const system = text(format.system());
    expect(system).to.match(/^Use tools\./);
    expect(system).to.include(`<tools>\n${JSON.stringify(tools[0])}\n</tools>`);
    expect(text(format.turn({ ...user, role: 'tool' }, '12:00', false))).to.equal(
      `${template.prompt_prefix}<tool_response>\n12:00\n</tool_response>${template.prompt_postfix}`,
    );
    const withdrawn = format.withTools({ system_prompt: '', tools: '', tool_response_str: '' });
    expect(text(withdrawn.system())).to.equal(template.system_prompt);
  });

  it('refuses tools that are not a JSON array of objects with -32602', () => {
    const format = new PromptFormat();
    for (const tools of ['{', '{"name":"x"}', '[1, 2]']) {
      expect(() => format.withTools({ system_prompt: '', tools, tool_response_str: '' }))
        .to.throw(ServerError)
        .with.property('name', 'INVALID_PARAMS');
    }
  });
});
