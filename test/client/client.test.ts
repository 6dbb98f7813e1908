// The typed client, imported by the package's own name (a self-reference through package.json
// "exports"), on WebSocket, TCP and HTTP against a real server in this process.
import { expect } from 'chai';
import { RkllmClient, RkllmError, type Chunk } from 'rkllm-mcp/client';
import { greedy } from '../helpers/prompts.js';
import { liveFixture } from '../helpers/fixture.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const SHORT = { prompt_input: 'Alice was beginning', max_new_tokens: 40, ...greedy };
const LONG = { prompt_input: 'Down, down, down', max_new_tokens: 2000, ...greedy };
const KEY = 'client-key-0123456789abcdef';

async function collect(stream: AsyncIterable<Chunk>): Promise<Chunk[]> {
  const chunks: Chunk[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return chunks;
}

describe('RkllmClient', function () {
  this.timeout(120_000);
  let server: TestServer;
  let expected: { text: string; finish_reason: string };
  const urls: Record<string, () => string> = {
    ws: () => `ws://${server.addresses.ws}`,
    tcp: () => `tcp://${server.addresses.tcp}`,
    http: () => server.url,
  };

  before(async () => {
    server = await startTestServer({ settings: { engine: { parallel: 2 } } });
    expected = await server.http.result('rkllm_run', SHORT);
    expect(expected.text.length).to.be.greaterThan(10);
  });
  after(async () => {
    await server?.close();
  });

  for (const [name, url] of Object.entries(urls)) {
    describe(`over ${name}`, () => {
      let client: RkllmClient;
      beforeEach(() => {
        client = new RkllmClient({ url: url() });
      });
      afterEach(async () => {
        await client.close();
      });

      it('run resolves to the rkllm_run result', async () => {
        const result = await client.run(SHORT);
        expect(result.text).to.equal(expected.text);
        expect(result.finish_reason).to.equal('length');
        expect(result.perf).to.be.an('object');
      });

      it('runStream yields chunks in order whose text is the rkllm_run text, ending once', async () => {
        const chunks = await collect(client.runStream(SHORT));
        expect(chunks.map((c) => c.delta).join('')).to.equal(expected.text);
        expect(chunks.filter((c) => c.end)).to.have.length(1);
        expect(chunks.at(-1)).to.include({ end: true, finish_reason: 'length' });
        const seqs = chunks.map((c) => c.seq);
        expect(seqs).to.deep.equal([...seqs].sort((a, b) => a - b));
        if (name !== 'http') expect(chunks.length).to.be.greaterThan(2);
      });

      it('breaking out of the loop aborts the stream and frees the engine', async () => {
        let streamId = '';
        for await (const chunk of client.runStream(LONG)) {
          streamId = chunk.stream_id;
          if (chunk.delta !== '') break;
        }
        expect(streamId).to.match(/^st_/);
        await server.streams.untilEnded(streamId);
        expect(await client.call('rkllm_is_running', {})).to.deep.include({ running: false, active: 0 });
      });

      it('abort(streamId) stops a stream another loop is reading', async () => {
        const chunks: Chunk[] = [];
        for await (const chunk of client.runStream(LONG)) {
          chunks.push(chunk);
          if (chunks.length === 1) expect(await client.abort(chunk.stream_id)).to.include({ aborted: 1 });
        }
        expect(chunks.at(-1)).to.include({ end: true, finish_reason: 'abort' });
      });

      it('call reaches any method, and a JSON-RPC error rejects with its code', async () => {
        const list = await client.call<{ functions: unknown[] }>('rkllm_list_functions', {});
        expect(list).to.be.an('object');
        const err = await client.call('no_such_method', {}).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).to.be.instanceOf(RkllmError);
        expect((err as RkllmError).code).to.equal(-32601);
      });

      it('close is idempotent, and a closed client refuses calls', async () => {
        await client.run({ ...SHORT, max_new_tokens: 2 });
        await client.close();
        await client.close();
        await client.call('rkllm_is_running', {}).then(
          () => expect.fail('a closed client answered'),
          (err: Error) => expect(err.message).to.match(/closed/),
        );
      });
    });
  }

  it('over HTTP, a poll reply lost on the network is polled again: no chunk lost or repeated', async () => {
    let polls = 0;
    /** Replies dropped that carried text. */
    let dropped = 0;
    const lossy: typeof fetch = async (input, init) => {
      const res = await fetch(input, init);
      const isPoll = typeof init?.body === 'string' && init.body.includes('"method":"poll"');
      if (isPoll && ++polls % 2 === 0) {
        const reply = JSON.parse(await res.text()) as { result?: { chunk: unknown } };
        if (reply.result?.chunk) dropped++;
        throw new TypeError('fetch failed (reply dropped by the test)');
      }
      return res;
    };
    await using client = new RkllmClient({ url: server.url, fetch: lossy, pollWaitMs: 50 });
    const chunks = await collect(client.runStream({ ...SHORT, max_new_tokens: 200 }));
    const full = await server.http.result('rkllm_run', { ...SHORT, max_new_tokens: 200 });
    expect(dropped).to.be.greaterThan(0);
    expect(chunks.map((c) => c.delta).join('')).to.equal(full.text);
  });

  it('an unsupported URL scheme is refused at once', () => {
    expect(() => new RkllmClient({ url: 'ftp://127.0.0.1:1' })).to.throw(/unsupported URL scheme/);
  });

  describe('with API keys', () => {
    const fixture = liveFixture({ settings: { auth: { api_keys: [KEY] } } });

    for (const name of ['ws', 'tcp', 'http']) {
      it(`over ${name}, apiKey authenticates and a missing key is refused`, async () => {
        const url = name === 'http' ? fixture.server.url : `${name}://${fixture.server.addresses[name]}`;
        await using good = new RkllmClient({ url, apiKey: KEY });
        expect(await good.call('rkllm_is_running', {})).to.include({ running: false });
        await using bad = new RkllmClient({ url });
        const err = await bad.call('rkllm_is_running', {}).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err, `${name} without a key`).to.be.instanceOf(Error);
      });
    }
  });
});
