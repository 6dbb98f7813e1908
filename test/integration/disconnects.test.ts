// Disconnects free the engine; detached streams survive and resume on another connection.
import { expect } from 'chai';
import { once } from 'node:events';
import { connect } from 'node:net';
import { TINY_MODEL_PROMPTS } from '../../src/gguf/builtin.js';
import { liveFixture } from '../helpers/fixture.js';
import { type LiveChunk } from '../helpers/live-rpc.js';
import { msUntilIdle } from '../helpers/idle.js';
import { greedy } from '../helpers/prompts.js';

/** About 6000 tokens for the character-level model: its prefill takes well over 100 ms. */
const LONG_PROMPT = 'Alice was beginning to get very tired of sitting by her sister on the bank. '.repeat(80);

describe('Disconnects and resuming', function () {
  this.timeout(120_000);
  const fixture = liveFixture({ settings: { engine: { parallel: 2, max_context_len: 8192 } } });
  const { open } = fixture;

  for (const transport of ['tcp', 'ws'] as const) {
    it(`${transport}: a disconnect in the middle of a stream frees the engine within 100 ms`, async () => {
      const client = await open(transport);
      const id = client.send('rkllm_run_async', { prompt_input: TINY_MODEL_PROMPTS.long, max_new_tokens: 8000, ...greedy });
      for (let i = 0; i < 5; i++) expect((await client.next(id)).result.chunk.end).to.equal(false);
      const disconnected = performance.now();
      await client.close();
      expect(await msUntilIdle(fixture.http, disconnected)).to.be.below(100);
    });

    it(`${transport}: a disconnect during prompt prefill frees the engine within 100 ms`, async () => {
      const client = await open(transport);
      let id: string | number | null = null;
      await fixture.server.streams.untilNextRun(
        () => (id = client.send('rkllm_run_async', { prompt_input: LONG_PROMPT, max_new_tokens: 100 })),
      );
      expect((await fixture.http.result('rkllm_is_running', {})).running).to.equal(true);
      expect(client.pending(id), 'no chunk yet: the prompt is still being evaluated').to.deep.equal([]);
      const disconnected = performance.now();
      await client.close();
      expect(await msUntilIdle(fixture.http, disconnected)).to.be.below(100);
    });
  }

  it('a blocking rkllm_run is aborted when its TCP connection closes', async () => {
    const client = await open('tcp');
    await fixture.server.streams.untilNextRun(() =>
      client.send('rkllm_run', { prompt_input: TINY_MODEL_PROMPTS.long, max_new_tokens: 8000, ...greedy }),
    );
    const disconnected = performance.now();
    await client.close();
    expect(await msUntilIdle(fixture.http, disconnected)).to.be.below(100);
  });

  it('a blocking rkllm_run read after its TCP client ended its input answers finish_reason "abort", not an internal error', async () => {
    const [host, port] = fixture.server.addresses.tcp!.split(':');
    const socket = connect(Number(port), host);
    await once(socket, 'connect');
    let answer = '';
    socket.setEncoding('utf8').on('data', (text: string) => (answer += text));
    // The request's line has no newline: it is read only when the input ends, with its client gone.
    socket.end(JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'rkllm_run', params: { prompt_input: 'The fox', max_new_tokens: 50 } }));
    await once(socket, 'close');
    const reply = JSON.parse(answer.trim()) as { id: number; result?: { finish_reason: string; text: string }; error?: unknown };
    expect(reply).to.deep.include({ id: 7 });
    expect(reply.result).to.include({ finish_reason: 'abort', text: '' });
    expect(fixture.server.log.lines.filter((line) => line.level >= 50).map((line) => line.msg)).to.deep.equal([]);
  });

  for (const [from, to] of [
    ['tcp', 'tcp'],
    ['ws', 'tcp'],
    ['tcp', 'ws'],
  ] as const) {
    it(`a detached stream survives its ${from} connection and resumes on ${to} with no token lost or repeated`, async () => {
      const params = { prompt_input: TINY_MODEL_PROMPTS.long, max_new_tokens: 3000, ...greedy };
      const expected = (await fixture.http.result('rkllm_run', params)).text as string;
      const first = await open(from);
      const id = first.send('rkllm_run_async', { ...params, detach: true });
      const seen: LiveChunk[] = [];
      while (seen.length < 50) seen.push((await first.next(id)).result.chunk);
      await first.close();
      const lastSeen = seen.at(-1)!;
      // The stream keeps running without a connection: once it has produced more, part of what follows is replayed from its buffer.
      await fixture.server.streams.untilChunks(lastSeen.stream_id, lastSeen.seq + 10);
      const second = await open(to);
      const resumed = await second.collect(second.send('rkllm_stream_attach', { stream_id: lastSeen.stream_id, after_seq: lastSeen.seq }));
      expect(resumed.chunks[0]!.seq).to.equal(lastSeen.seq + 1);
      expect(resumed.chunks.map((c) => c.seq)).to.deep.equal(resumed.chunks.map((_, i) => lastSeen.seq + 1 + i));
      expect(seen.map((c) => c.delta).join('') + resumed.text).to.equal(expected);
      expect(resumed.last).to.include({ end: true, finish_reason: 'length', stream_id: lastSeen.stream_id });
    });
  }

  it('attaching after a detached stream ended replays the rest; acknowledging the final chunk releases it', async () => {
    const params = { prompt_input: 'The Queen said', max_new_tokens: 100, ...greedy };
    const expected = (await fixture.http.result('rkllm_run', params)).text as string;
    const first = await open('tcp');
    const id = first.send('rkllm_run_async', { ...params, detach: true });
    const head = (await first.next(id)).result.chunk as LiveChunk;
    await first.close();
    await msUntilIdle(fixture.http, performance.now());
    const second = await open('ws');
    const rest = await second.collect(second.send('rkllm_stream_attach', { stream_id: head.stream_id, after_seq: head.seq }));
    expect(head.delta + rest.text).to.equal(expected);
    // Everything is received: acknowledging the last seq releases the buffer.
    expect(await second.result('rkllm_stream_attach', { stream_id: head.stream_id, after_seq: rest.last.seq })).to.deep.equal({
      chunk: null,
    });
    const gone = await second.call('poll', { stream_id: head.stream_id });
    expect(gone.error!.code).to.equal(-32001);
    expect(gone.error!.message).to.match(/released/);
  });

  it('a stream that is not detached cannot be attached, and is aborted with its connection', async () => {
    const owner = await open('tcp');
    const id = owner.send('rkllm_run_async', { prompt_input: TINY_MODEL_PROMPTS.long, max_new_tokens: 8000, ...greedy });
    const { stream_id } = (await owner.next(id)).result.chunk as LiveChunk;
    const other = await open('ws');
    const refused = await other.call('rkllm_stream_attach', { stream_id, after_seq: 0 });
    expect(refused.error!.code).to.equal(-32602);
    expect(refused.error!.message).to.match(/not buffered.*"detach": true/);
    // poll has nothing to read for it either: it is not buffered.
    expect((await other.call('poll', { stream_id })).error!.code).to.equal(-32001);
    await owner.close();
    await msUntilIdle(fixture.http, performance.now());
  });

  it('a failed attach leaves the stream with the connection that receives it', async () => {
    const params = { prompt_input: TINY_MODEL_PROMPTS.long, max_new_tokens: 2000, ...greedy };
    const owner = await open('tcp');
    const id = owner.send('rkllm_run_async', { ...params, detach: true });
    const { stream_id } = (await owner.next(id)).result.chunk as LiveChunk;
    const other = await open('ws');
    const refused = await other.call('rkllm_stream_attach', { stream_id, after_seq: 1_000_000 });
    expect(refused.error!.message).to.match(/after_seq 1000000 is beyond the last chunk sent/);
    const rest = await owner.collect(id);
    expect(rest.last).to.include({ end: true, finish_reason: 'length' });
  });

  it('rkllm_stream_attach needs a live transport', async () => {
    const res = await fixture.http.call('rkllm_stream_attach', { stream_id: 'st_x', after_seq: -1 });
    expect(res.error!.code).to.equal(-32600);
    expect(res.error!.message).to.match(/live transport.*over HTTP use poll/);
  });

  it('attaching an unknown stream, or after_seq beyond what was sent, is refused clearly', async () => {
    const client = await open('tcp');
    const unknown = await client.call('rkllm_stream_attach', { stream_id: 'st_nope', after_seq: -1 });
    expect(unknown.error).to.include({ code: -32001, message: 'Unknown stream st_nope' });
    const { stream_id } = await fixture.http.start({ prompt_input: 'The fox', max_new_tokens: 5, ...greedy });
    await msUntilIdle(fixture.http, performance.now());
    const beyond = await client.call('rkllm_stream_attach', { stream_id, after_seq: 1000 });
    expect(beyond.error!.code).to.equal(-32602);
    expect(beyond.error!.message).to.match(/after_seq 1000 is beyond the last chunk sent/);
  });
});
