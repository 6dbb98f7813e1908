// What the OpenAI and Ollama faces share: stop strings, tool calls in text, the answer while the model loads.
import { expect } from 'chai';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { loadingRoute } from '../../src/faces/routes.js';
import { readOptions } from '../../src/faces/ollama/request.js';
import { readCommon } from '../../src/faces/openai/request.js';
import { runParamsSchema, toRunParams } from '../../src/methods/run-params.js';
import { compileParams, zodShape } from '../../src/request-schema.js';
import type { ServerError } from '../../src/errors.js';
import { StopFilter, ToolCallCatcher, forcedCallSchema, parseCall } from '../../src/faces/text-filters.js';
import { JsonEnd } from '../../src/streams/json-end.js';

/** Feeds `pieces` through a filter and returns what came out, piece by piece, then the flush. */
function through(filter: StopFilter, pieces: string[]): string[] {
  return [...pieces.map((p) => filter.push(p)), filter.flush()];
}

describe('Faces: stop strings', () => {
  it('passes text through at once when nothing could start a stop string', () => {
    expect(through(new StopFilter(['END']), ['Alice ', 'was ', 'here'])).to.deep.equal(['Alice ', 'was ', 'here', '']);
  });

  it('holds back a possible start of a stop string, and never passes the stop string on', () => {
    const filter = new StopFilter(['END']);
    expect(through(filter, ['Alice E', 'N', 'D and more'])).to.deep.equal(['Alice ', '', '', '']);
    expect(filter.stopped).to.equal(true);
  });

  it('gives back held text that turned out not to be a stop string', () => {
    const filter = new StopFilter(['END']);
    expect(through(filter, ['Alice E', 'NT', 'ERS', ' E'])).to.deep.equal(['Alice ', 'ENT', 'ERS', ' ', 'E']);
    expect(filter.stopped).to.equal(false);
  });

  it('stops at the earliest of several stop strings, also inside one piece', () => {
    const filter = new StopFilter(['\n\n', 'rabbit', '']);
    expect(filter.push('the white rabbit ran\n\naway')).to.equal('the white ');
    expect(filter.push('more')).to.equal('');
  });
});

describe('Faces: tool calls in text', () => {
  it('passes text until <tool_call>, holding a partial tag, and reads the calls at the end', () => {
    const catcher = new ToolCallCatcher();
    const out = ['Let me look. <tool', '_call>\n{"name": "get_weather", ', '"arguments": {"city": "Rome"}}\n</tool_call>'].map((p) =>
      catcher.push(p),
    );
    expect(out).to.deep.equal(['Let me look. ', '', '']);
    expect(catcher.finish()).to.deep.equal({ text: '', calls: [{ name: 'get_weather', arguments: '{"city":"Rome"}' }] });
  });

  it('gives the captured text back when it holds no valid call', () => {
    const catcher = new ToolCallCatcher();
    expect(catcher.push('a <tool_call> not json')).to.equal('a ');
    expect(catcher.finish()).to.deep.equal({ text: '<tool_call> not json', calls: [] });
    const partial = new ToolCallCatcher();
    expect(partial.push('a <tool')).to.equal('a ');
    expect(partial.finish()).to.deep.equal({ text: '<tool', calls: [] });
  });

  it('a forced call is one of the tools, or the named one, with its parameters', () => {
    const tool = (name: string) => ({
      type: 'function' as const,
      function: { name, parameters: { type: 'object', properties: { x: { type: 'string' } } } },
    });
    expect(forcedCallSchema([tool('a')])).to.deep.include({ required: ['name', 'arguments'] });
    expect(forcedCallSchema([tool('a'), tool('b')]))
      .to.have.property('oneOf')
      .with.length(2);
    expect(forcedCallSchema([tool('a'), tool('b')], 'b')).to.deep.nested.include({ 'properties.name.const': 'b' });
    expect(parseCall('{"name":"a","arguments":{"x":"1"}}')).to.deep.equal({ name: 'a', arguments: '{"x":"1"}' });
    expect(parseCall('{"arguments":{}}')).to.equal(undefined);
  });
});

describe('Faces: constrained output ends with its JSON value', () => {
  /** Feeds `pieces` to a scanner: what of each belongs to the value, and whether it ended. */
  function scan(pieces: string[]): [string, boolean] {
    const end = new JsonEnd();
    return [pieces.map((p) => p.slice(0, end.push(p))).join(''), end.done];
  }

  it('ends at the closing bracket, in the piece that closes it, whatever strings and escapes hold', () => {
    expect(scan(['{"a": "}]\\\\', '\\"{", "b"', ': [1, {"c": tr', 'ue}]}  \n', '{}'])).to.deep.equal([
      '{"a": "}]\\\\\\"{", "b": [1, {"c": true}]}',
      true,
    ]);
    expect(scan([' [ ', '"x\\"]"', ']\n'])).to.deep.equal([' [ "x\\"]"]', true]);
    expect(scan(['{"a": ', '"open'])).to.deep.equal(['{"a": "open', false]);
  });

  it('a string ends at its quote; a number or literal at the whitespace after it', () => {
    expect(scan(['"a\\"b"', ' '])).to.deep.equal(['"a\\"b"', true]);
    expect(scan(['12', '.5', ' \n'])).to.deep.equal(['12.5', true]);
    expect(scan(['tr', 'ue'])).to.deep.equal(['true', false]);
  });
});

describe('Faces: while the model loads', () => {
  let server: Server;
  let base: string;
  before(async () => {
    const route = loadingRoute();
    server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      if (!route.matches(req.method ?? 'GET', url.pathname, req.headers)) return void res.writeHead(418).end();
      const signal = new AbortController().signal;
      void route.serve({
        req,
        res,
        url,
        address: '127.0.0.1',
        signal,
        readBody: async () => Buffer.alloc(0),
        log: pino({ level: 'silent' }),
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('answers 503 with Retry-After, in OpenAI shape under /v1 and Ollama shape under /api', async () => {
    const openai = await fetch(`${base}/v1/chat/completions`, { method: 'POST', body: '{}' });
    expect(openai.status).to.equal(503);
    expect(openai.headers.get('retry-after')).to.equal('1');
    expect(((await openai.json()) as { error: { type: string } }).error.type).to.equal('server_error');
    const ollama = await fetch(`${base}/api/tags`);
    expect(ollama.status).to.equal(503);
    expect(ollama.headers.get('retry-after')).to.equal('1');
    expect(Object.keys((await ollama.json()) as object)).to.deep.equal(['error']);
    expect((await fetch(`${base}/health`)).status).to.equal(418);
  });
});

describe('Faces: one request schema, every API', () => {
  /** The error `read` throws, or undefined. */
  const refusal = (read: () => unknown): ServerError | undefined => {
    try {
      read();
      return undefined;
    } catch (err) {
      return err as ServerError;
    }
  };
  const checkRpc = compileParams<Record<string, unknown>>(runParamsSchema);

  it('a seed means the same everywhere: any safe integer, which the sampler takes modulo 2^32', () => {
    for (const seed of [-1, 0, 2 ** 40]) {
      expect(readCommon({ seed }).sampling.seed).to.equal(seed);
      expect(readOptions({ options: { seed } }).sampling.seed).to.equal(seed);
      const params = toRunParams(checkRpc({ prompt_input: 'hi', seed }), 512);
      expect(params.infer.sampling_params?.seed).to.equal(seed >>> 0);
    }
    for (const seed of [1.5, 2 ** 60]) {
      expect(refusal(() => readCommon({ seed }))?.message).to.match(/"seed" must/);
      expect(refusal(() => readOptions({ options: { seed } }))?.message).to.match(/"options\.seed" must/);
      expect(refusal(() => checkRpc({ prompt_input: 'hi', seed }))?.message).to.match(/"seed" must/);
    }
  });

  it('a range has one value: JSON-RPC, OpenAI, Ollama and MCP refuse the same temperature', () => {
    expect(refusal(() => checkRpc({ prompt_input: 'hi', temperature: 101 }))?.message).to.match(/"temperature" must be <= 100/);
    expect(refusal(() => readCommon({ temperature: 101 }))?.data).to.deep.equal({ path: 'temperature' });
    expect(refusal(() => readOptions({ options: { temperature: 101 } }))?.data).to.deep.equal({ path: 'options.temperature' });
    const mcp = zodShape(['temperature', 'stop']);
    expect(mcp.temperature.safeParse(101).success).to.equal(false);
    expect(mcp.temperature.safeParse(100).success).to.equal(true);
    expect(mcp.stop.parse('END')).to.deep.equal(['END']);
  });

  it("each API's name map: its names, its own max tokens, null as absent, stop as an array", () => {
    expect(readCommon({ max_completion_tokens: 7, max_tokens: 5, temperature: null, stop: 'x' })).to.include({ maxTokens: 7 });
    expect(readCommon({ stop: 'x' }).stop).to.deep.equal(['x']);
    expect(readCommon({ temperature: null }).sampling).to.deep.equal({});
    expect(refusal(() => readCommon({ max_tokens: 0 }))?.message).to.match(/"max_tokens" must be a positive integer; got 0/);
    expect(readOptions({ options: { num_predict: -2, top_k: 3, stop: ['a'] } })).to.deep.equal({
      maxTokens: -1,
      sampling: { top_k: 3 },
      stop: ['a'],
    });
    expect(refusal(() => readOptions({ options: { num_predict: 0 } }))?.data).to.deep.equal({ path: 'options.num_predict' });
    expect(refusal(() => readOptions({ options: { stop: 5 } }))?.message).to.match(/"options\.stop" must be a string or an array/);
  });
});
