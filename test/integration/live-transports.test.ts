// Live streaming on TCP, UDP and WebSocket, against a real server (in this process) on the built-in model.
import { expect } from 'chai';
import { TINY_MODEL_PROMPTS } from '../../src/gguf/builtin.js';
import { liveFixture } from '../helpers/fixture.js';
import { LIVE_TRANSPORTS, type Drained } from '../helpers/live-rpc.js';
import { greedy, PROMPTS } from '../helpers/prompts.js';

/** A stream as a client sees it: seq counts from 0 without a gap, every chunk names the stream, and only the last ends it. */
function expectWellFormed(drained: Drained): void {
  const { chunks, last } = drained;
  expect(chunks.map((c) => c.seq)).to.deep.equal(chunks.map((_, i) => i));
  expect(new Set(chunks.map((c) => c.stream_id)).size).to.equal(1);
  expect(last.stream_id).to.match(/^st_/);
  expect(chunks.filter((c) => c.end)).to.deep.equal([last]);
  expect(last.finish_reason).to.be.oneOf(['length', 'stop']);
  expect(last.perf).to.have.keys(['prefill_time_ms', 'prefill_tokens', 'generate_time_ms', 'generate_tokens', 'memory_usage_mb']);
}

describe('Live streaming on TCP, UDP and WebSocket', function () {
  this.timeout(120_000);
  const fixture = liveFixture({ settings: { engine: { parallel: 4 } } });
  const { open } = fixture;
  const solo = new Map<string, string>();

  before(async () => {
    for (const prompt of PROMPTS)
      solo.set(prompt, (await fixture.http.result('rkllm_run', { prompt_input: prompt, max_new_tokens: 200, ...greedy })).text);
  });

  it('the readiness line names every transport with its bound address', async () => {
    const ready = (await fixture.server.log.line('listening for connections')).msg as string;
    for (const name of ['http', 'tcp', 'udp', 'ws']) {
      expect(fixture.server.addresses[name]).to.match(/^127\.0\.0\.1:\d+$/);
      expect(ready).to.include(`${name}=${fixture.server.addresses[name]}`);
    }
    expect(Object.keys(fixture.server.addresses)).to.have.members(['http', 'tcp', 'udp', 'ws']);
  });

  for (const transport of LIVE_TRANSPORTS) {
    describe(transport, () => {
      it('rkllm_list_functions answers as over HTTP, rkllm_stream_attach included', async () => {
        const client = await open(transport);
        const live = await client.result('rkllm_list_functions', {});
        expect(live).to.deep.equal(await fixture.http.result('rkllm_list_functions', {}));
        expect(live.functions.map((f: { name: string }) => f.name)).to.include.members(['rkllm_run_async', 'poll', 'rkllm_stream_attach']);
      });

      it('rkllm_is_running gives the same documented answer as over HTTP', async () => {
        const client = await open(transport);
        const live = await client.result('rkllm_is_running', {});
        expect(live).to.deep.equal({ running: false, active: 0, queued: 0 });
        expect(live).to.deep.equal(await fixture.http.result('rkllm_is_running', {}));
      });

      it('streams chunk by chunk until end: the deltas join to the text of rkllm_run', async () => {
        const client = await open(transport);
        const params = { prompt_input: TINY_MODEL_PROMPTS.long, max_new_tokens: 200, ...greedy };
        const drained = await client.stream(params);
        expect(drained.text).to.equal(solo.get(TINY_MODEL_PROMPTS.long));
        expect(drained.last.finish_reason).to.equal('length');
        expect(drained.last.perf!.generate_tokens).to.equal(200);
        if (transport !== 'udp') expectWellFormed(drained);
        // rkllm_run gives the same text on this transport too.
        expect((await client.result('rkllm_run', params)).text).to.equal(drained.text);
      });

      it('runs several streams at once on one connection; their chunks interleave and are told apart by id', async () => {
        const client = await open(transport);
        const prompts = PROMPTS.slice(0, 4);
        const ids = prompts.map((prompt) => client.send('rkllm_run_async', { prompt_input: prompt, max_new_tokens: 200, ...greedy }));
        const drained = await Promise.all(ids.map((id) => client.collect(id)));
        expect(drained.map((d) => d.text)).to.deep.equal(prompts.map((p) => solo.get(p)));
        expect(new Set(drained.map((d) => d.last.stream_id)).size).to.equal(4);
        const order = client.received.map((m) => m.id);
        const firstEnd = Math.min(...ids.map((id) => order.lastIndexOf(id)));
        expect(new Set(order.slice(0, firstEnd)).size, 'chunks of several streams arrive before the first stream ends').to.be.greaterThan(
          1,
        );
      });

      it('serves 10 concurrent connections, each streaming its own prompt', async () => {
        const connections = await Promise.all(PROMPTS.map(() => open(transport)));
        const texts = await Promise.all(
          connections.map((client, i) => client.stream({ prompt_input: PROMPTS[i], max_new_tokens: 200, ...greedy }).then((d) => d.text)),
        );
        expect(texts).to.deep.equal(PROMPTS.map((p) => solo.get(p)));
      });

      it('polls a stream started over HTTP, and HTTP polls a detached stream started here', async () => {
        const client = await open(transport);
        const params = { prompt_input: 'The Queen said', max_new_tokens: 200, ...greedy };
        const { stream_id } = await fixture.http.start(params);
        let text = '';
        for (let polls = 0; polls < 1000; polls++) {
          const { chunk } = await client.result('poll', { stream_id, wait_ms: 1000 });
          text += chunk?.delta ?? '';
          if (chunk?.end) break;
        }
        expect(text).to.equal(solo.get('The Queen said'));

        const id = client.send('rkllm_run_async', { ...params, detach: true });
        const first = (await client.next(id)).result.chunk;
        const { text: polled } = await fixture.http.drain(first.stream_id, { afterSeq: true });
        expect(polled).to.equal(solo.get('The Queen said'));
      });
    });
  }
});
