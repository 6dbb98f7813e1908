// Loss-free streaming by polling, against a real server (in this process) running the built-in model.
import { expect } from 'chai';
import { request } from 'node:http';
import { ensureBuiltinModel, TINY_MODEL_PROMPTS } from '../../src/gguf/builtin.js';
import { greedy, PROMPTS as TEN_PROMPTS } from '../helpers/prompts.js';
import { HttpRpc, type Chunk } from '../helpers/rpc.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { builtinTokenizer } from '../helpers/tiny-model.js';

const PROMPTS = TEN_PROMPTS.slice(0, 8);

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function waitUntilIdle(rpc: HttpRpc): Promise<void> {
  for (;;) {
    const { running, queued } = await rpc.result('rkllm_is_running', {});
    if (!running && queued === 0) return;
    await sleep(5);
  }
}

describe('Streaming by polling', function () {
  this.timeout(120_000);
  let server: TestServer;
  let rpc: HttpRpc;

  before(async () => {
    server = await startTestServer({ settings: { engine: { parallel: 8 }, diagnostics: true } });
    rpc = new HttpRpc(server.url);
  });

  after(async () => {
    await server.close();
  });

  it('rkllm_run returns text, finish_reason and perf', async () => {
    const res = await rpc.result('rkllm_run', { prompt_input: TINY_MODEL_PROMPTS.long, max_new_tokens: 40, ...greedy });
    expect(res.text).to.be.a('string').with.length.greaterThan(10);
    expect(res.finish_reason).to.equal('length');
    expect(res.perf).to.have.keys(['prefill_time_ms', 'prefill_tokens', 'generate_time_ms', 'generate_tokens', 'memory_usage_mb']);
    expect(res.perf.generate_tokens).to.equal(40);
    expect(res.perf.prefill_tokens).to.equal(1 + builtinTokenizer()(TINY_MODEL_PROMPTS.long).length);
    expect(res.perf.memory_usage_mb).to.be.greaterThan(0);
  });

  it('ends with finish_reason "stop" when the model emits end of sequence', async () => {
    const res = await rpc.result('rkllm_run', { prompt_input: TINY_MODEL_PROMPTS.endsWithEos, max_new_tokens: 200, ...greedy });
    expect(res.finish_reason).to.equal('stop');
    expect(res.perf.generate_tokens).to.be.below(200);
  });

  it('greedy text is reproducible, flat or nested, with top_k 1 or temperature 0', async () => {
    const flat = await rpc.result('rkllm_run', { prompt_input: 'The Queen said', max_new_tokens: 60, top_k: 1 });
    const nested = await rpc.result('rkllm_run', {
      input: { input_type: 0, prompt_input: 'The Queen said', role: 'user' },
      infer_params: { mode: 0, keep_history: 0, max_new_tokens: 60, sampling_params: { temperature: 0 } },
    });
    expect(nested.text).to.equal(flat.text);
  });

  it('polling until end yields exactly the text rkllm_run returns', async () => {
    const params = { prompt_input: TINY_MODEL_PROMPTS.long, max_new_tokens: 300, ...greedy };
    const expected = await rpc.result('rkllm_run', params);
    const { stream_id } = await rpc.start(params);
    const { text, chunks, last } = await rpc.drain(stream_id);
    expect(text).to.equal(expected.text);
    expect(last.finish_reason).to.equal('length');
    expect(last.perf!.generate_tokens).to.equal(300);
    // seq only grows, and the last chunk's seq counts every chunk before it.
    const seqs = chunks.map((c) => c.seq);
    expect(seqs).to.deep.equal([...seqs].sort((a, b) => a - b));
    expect(new Set(seqs).size).to.equal(seqs.length);
  });

  it('a client whose poll replies are lost recovers every token exactly once with after_seq', async () => {
    const params = { prompt_input: TINY_MODEL_PROMPTS.long, max_new_tokens: 200, ...greedy };
    const expected = await rpc.result('rkllm_run', params);
    const { stream_id } = await rpc.start(params);
    // Every third reply never reaches the client.
    const { text } = await rpc.drain(stream_id, { afterSeq: true, waitMs: 50, drop: (n) => n % 3 === 0 });
    expect(text).to.equal(expected.text);
  });

  it('8 streams at once each yield the text of their solo run', async () => {
    const solo: string[] = [];
    for (const prompt of PROMPTS) solo.push((await rpc.result('rkllm_run', { prompt_input: prompt, max_new_tokens: 250, ...greedy })).text);
    const streams = await Promise.all(PROMPTS.map((prompt) => rpc.start({ prompt_input: prompt, max_new_tokens: 250, ...greedy })));
    const texts = await Promise.all(streams.map(({ stream_id }) => rpc.drain(stream_id).then((r) => r.text)));
    expect(texts).to.deep.equal(solo);
  });

  it('never sends a broken UTF-8 character: a split character arrives whole', async () => {
    const params = { prompt_input: TINY_MODEL_PROMPTS.multiByte, max_new_tokens: 100, ...greedy };
    const { stream_id } = await rpc.start(params);
    // Poll eagerly so that chunks are as small as possible.
    const { chunks } = await rpc.drain(stream_id, { waitMs: 1 });
    const text = chunks.map((c) => c.delta).join('');
    expect(text).to.match(/[^\p{ASCII}]/u);
    for (const c of chunks) expect(c.delta).not.to.include('\uFFFD');
    expect(text).to.equal((await rpc.result('rkllm_run', params)).text);
  });

  it('a long poll answers as soon as a chunk arrives, and chunk:null at the deadline', async () => {
    const { stream_id } = await rpc.start({ prompt_input: 'The fox', max_new_tokens: 5, ...greedy });
    const first = await rpc.result('poll', { stream_id, wait_ms: 5000 });
    expect(first.chunk).to.include({ stream_id });
    expect(first.chunk.seq).to.be.a('number').at.least(0);
    // A poll with data lingers a moment for more, so a 5-token stream may come whole in the first answer.
    if (!first.chunk.end) await rpc.drain(stream_id);

    // A stream that stays silent: injected through diagnostics, never ended.
    const injected = await rpc.result('test_http_buffer_manager', {
      request_id: 'silent',
      mock_chunks: [{ seq: 0, delta: 'a', end: false }],
    });
    expect((await rpc.result('poll', { stream_id: injected.stream_id })).chunk.delta).to.equal('a');
    const started = performance.now();
    const waited = await rpc.result('poll', { stream_id: injected.stream_id, wait_ms: 300 });
    expect(waited).to.deep.equal({ chunk: null });
    expect(performance.now() - started).to.be.at.least(250);
  });

  it('poll by request_id works, and refuses when two live streams share it', async () => {
    const a = await rpc.start({ prompt_input: 'The fox', max_new_tokens: 50 }, 'shared');
    const b = await rpc.start({ prompt_input: 'The fox', max_new_tokens: 50 }, 'shared');
    const res = await rpc.call('poll', { request_id: 'shared' });
    expect(res.error!.code).to.equal(-32003);
    expect(res.error!.message).to.match(/poll by "stream_id" instead/);
    expect(res.error!.data.stream_ids).to.have.members([a.stream_id, b.stream_id]);
    await rpc.drain(a.stream_id);
    // One left: request_id works again.
    const rest: Chunk[] = [];
    for (;;) {
      const { chunk } = await rpc.result('poll', { request_id: 'shared', wait_ms: 1000 });
      if (chunk) rest.push(chunk);
      if (chunk?.end) break;
    }
    expect(rest.at(-1)!.stream_id).to.equal(b.stream_id);
  });

  it('rkllm_abort stops a running stream by stream_id, and by request_id', async () => {
    for (const by of ['stream_id', 'request_id'] as const) {
      const started = await rpc.start({ prompt_input: TINY_MODEL_PROMPTS.long, max_new_tokens: 2000, ...greedy });
      await rpc.result('poll', { stream_id: started.stream_id, wait_ms: 5000 });
      const res = await rpc.result('rkllm_abort', { [by]: started[by] });
      expect(res.aborted).to.equal(1);
      const { last } = await rpc.drain(started.stream_id);
      expect(last.finish_reason).to.equal('abort');
      expect(last.perf!.generate_tokens).to.be.below(2000);
    }
  });

  it('rkllm_abort without parameters stops whatever is running', async () => {
    const streams = await Promise.all(
      [1, 2].map(() => rpc.start({ prompt_input: TINY_MODEL_PROMPTS.long, max_new_tokens: 2000, ...greedy })),
    );
    for (const s of streams) await rpc.result('poll', { stream_id: s.stream_id, wait_ms: 5000, after_seq: -1 });
    expect((await rpc.result('rkllm_is_running', {})).running).to.equal(true);
    const res = await rpc.result('rkllm_abort', {});
    expect(res.aborted).to.equal(2);
    for (const s of streams) expect((await rpc.drain(s.stream_id)).last.finish_reason).to.equal('abort');
    await waitUntilIdle(rpc);
    expect((await rpc.result('rkllm_is_running', {})).running).to.equal(false);
  });
});

describe('Queueing and limits', function () {
  this.timeout(120_000);
  let server: TestServer | undefined;
  let rpc: HttpRpc;

  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  it('queues beyond the parallel limit, first in first out, and refuses when the queue is full', async () => {
    server = await startTestServer({ settings: { engine: { parallel: 1, queue_limit: 2 } } });
    rpc = new HttpRpc(server.url);
    const running = await rpc.start({ prompt_input: TINY_MODEL_PROMPTS.long, max_new_tokens: 2000, ...greedy });
    const queued1 = await rpc.start({ prompt_input: 'The fox', max_new_tokens: 5, ...greedy });
    const queued2 = await rpc.start({ prompt_input: 'The fox', max_new_tokens: 5 });
    expect((await rpc.result('poll', { stream_id: queued1.stream_id })).chunk).to.equal(null);
    const busy = await rpc.call('rkllm_run_async', { prompt_input: 'x' });
    expect(busy.error!.code).to.equal(-32000);
    expect(busy.error!.data.retry_after).to.equal(1);
    // Aborting a queued stream ends it without running it.
    await rpc.result('rkllm_abort', { stream_id: queued2.stream_id });
    const aborted = await rpc.drain(queued2.stream_id);
    expect(aborted.last).to.include({ finish_reason: 'abort', delta: '' });
    expect(aborted.last.perf!.generate_tokens).to.equal(0);
    await rpc.result('rkllm_abort', { stream_id: running.stream_id });
    const done = await rpc.drain(queued1.stream_id);
    expect(done.last.finish_reason).to.equal('length');
  });

  it('refuses new streams beyond the live-buffer limit, without evicting any', async () => {
    server = await startTestServer({ settings: { streams: { max_buffers: 2 } } });
    rpc = new HttpRpc(server.url);
    const a = await rpc.start({ prompt_input: 'The fox', max_new_tokens: 3 });
    await rpc.start({ prompt_input: 'The fox', max_new_tokens: 3 });
    const refused = await rpc.call('rkllm_run_async', { prompt_input: 'The fox', max_new_tokens: 3 });
    expect(refused.error!.code).to.equal(-32002);
    expect(refused.error!.message).to.match(/limit of 2 buffers/);
    // Both earlier streams are intact; once one is drained and released, a new one fits.
    await rpc.drain(a.stream_id);
    await rpc.start({ prompt_input: 'The fox', max_new_tokens: 3 });
  });

  it('ends a stream nobody polls with an error chunk at the byte cap, keeping what was buffered', async () => {
    server = await startTestServer({ settings: { streams: { max_buffer_bytes: 2000 } } });
    rpc = new HttpRpc(server.url);
    const { stream_id } = await rpc.start({ prompt_input: TINY_MODEL_PROMPTS.long, max_new_tokens: 2000, ...greedy });
    await server.streams.untilEnded(stream_id);
    const { chunks, last, text } = await rpc.drain(stream_id);
    expect(chunks).to.have.lengthOf(1);
    expect(last.finish_reason).to.equal('error');
    expect(last.error!.code).to.equal(-32007);
    expect(last.error!.message).to.match(/cap of 2000 bytes/);
    const expected = await rpc.result('rkllm_run', {
      prompt_input: TINY_MODEL_PROMPTS.long,
      max_new_tokens: last.perf!.generate_tokens,
      ...greedy,
    });
    expect(text).to.equal(expected.text);
    expect(last.perf!.generate_tokens).to.be.below(2000);
  });

  it('a client that disconnects during rkllm_run frees the engine', async () => {
    server = await startTestServer({ settings: { engine: { max_context_len: 4096 } } });
    rpc = new HttpRpc(server.url);
    const params = { prompt_input: TINY_MODEL_PROMPTS.long, max_new_tokens: 4000, ...greedy };
    const full = await rpc.result('rkllm_run', params);
    const url = new URL(server.url);
    const req = request({ host: url.hostname, port: url.port, method: 'POST', path: '/' });
    req.on('error', () => undefined);
    await server.streams.untilNextRun(() => req.end(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'rkllm_run', params })));
    expect((await rpc.result('rkllm_is_running', {})).running).to.equal(true);
    const gone = performance.now();
    req.destroy();
    await waitUntilIdle(rpc);
    // Far sooner than the run would have taken to finish on its own.
    expect(performance.now() - gone).to.be.below(full.perf.generate_time_ms / 2);
  });

  it('a long poll never outlasts the buffer it waits on: it answers before the buffer could expire', async () => {
    // The bench model (~8 ms/token here) keeps the 2000-token run going far longer than the long poll.
    const model = await ensureBuiltinModel('bench');
    server = await startTestServer({
      settings: {
        engine: { model_path: model, threads: 1, parallel: 1 },
        streams: { buffer_timeout_s: 1, cleanup_interval_s: 0.1, max_wait_ms: 10_000 },
      },
    });
    rpc = new HttpRpc(server.url);
    // A stream queued behind a long run produces nothing for a while: the long poll has nothing to wake it.
    // The long run streams over TCP: it has no buffer, so nothing of it expires while the test waits.
    const live = await server.tcp();
    try {
      await server.streams.untilNextRun(() =>
        live.send('rkllm_run_async', { prompt_input: TINY_MODEL_PROMPTS.long, max_new_tokens: 2000, ...greedy }),
      );
      const queued = await rpc.start({ prompt_input: 'The fox', max_new_tokens: 5, ...greedy });
      const waited = await rpc.result('poll', { stream_id: queued.stream_id, wait_ms: 5000 });
      expect(waited.chunk).to.equal(null);
      // The client polls again at once, as a long-polling client does: its buffer must still be there.
      const again = await rpc.call('poll', { stream_id: queued.stream_id });
      expect(again.error, JSON.stringify(again.error)).to.equal(undefined);
      // Closing the connection aborts the long run.
      await live.close();
      const done = await rpc.drain(queued.stream_id);
      expect(done.last).to.include({ end: true, finish_reason: 'length' });
    } finally {
      await live.close();
    }
  });

  it('reaps an abandoned stream and aborts its generation', async () => {
    // The bench model (~8 ms/token here) makes the 2000-token run last far longer than the expiry,
    // so the sweep, not the end of generation, is what stops it.
    const model = await ensureBuiltinModel('bench');
    server = await startTestServer({
      settings: { engine: { model_path: model, threads: 1 }, streams: { buffer_timeout_s: 1, cleanup_interval_s: 0.1 } },
    });
    rpc = new HttpRpc(server.url);
    // Greedy: with sampling, the word-level model may write its end-of-text token and end the run itself.
    const { stream_id } = await rpc.start({ prompt_input: TINY_MODEL_PROMPTS.long, max_new_tokens: 2000, ...greedy });
    // One poll at once (no long wait, which could outlast the expiry on a loaded machine).
    const first = await rpc.result('poll', { stream_id });
    expect(first.chunk === null || first.chunk.stream_id === stream_id).to.equal(true);
    // Nobody polls again: the sweep drops the buffer and stops the generation.
    await server.streams.untilEnded(stream_id);
    await waitUntilIdle(rpc);
    const res = await rpc.call('poll', { stream_id });
    expect(res.error!.code).to.equal(-32001);
    expect(res.error!.message).to.match(/has expired/);
    expect((await rpc.result('http_buffer_manager_status', {})).active_buffers).to.equal(0);
    const expired = await server.log.line('aborting its generation');
    expect(expired.stream_id).to.equal(stream_id);
  });
});
