// A client that does not read never makes the server's memory grow: each connection has a cap on
// the bytes waiting to be sent, and past it the connection's streams stop with an explicit error.
import { expect } from 'chai';
import { liveFixture } from '../helpers/fixture.js';
import { TcpRpc, WsRpc, type LiveChunk, type LiveRpc } from '../helpers/live-rpc.js';
import { greedy } from '../helpers/prompts.js';
import { startTestServer } from '../helpers/server.js';
import { until } from '../helpers/until.js';

const CAP = 65_536;
/** rkllm_list_functions answers with about 20 KB: this many replies overflow the kernel's socket buffers (about 4 MB on loopback). */
const FLOOD = 400;
/** A prompt whose prefill keeps a stream alive, without output, long enough to be seen starting. */
const PROMPT = 'Alice was beginning to get very tired of sitting by her sister on the bank. '.repeat(60);

/** Everything answering `id`, in order, up to and including an error or the final chunk. */
async function readAll(
  client: LiveRpc,
  id: string | number,
): Promise<{ chunks: LiveChunk[]; error?: { code: number; message: string; data?: any } }> {
  const chunks: LiveChunk[] = [];
  for (;;) {
    const res = await client.next(id);
    if (res.error) return { chunks, error: res.error };
    chunks.push(res.result.chunk);
    if (res.result.chunk.end) return { chunks };
  }
}

/** Asks for FLOOD large replies on a connection that does not read (over TCP, all in one write). */
function flood(client: LiveRpc): void {
  const lines: string[] = [];
  for (let id = 1; id <= FLOOD; id++) lines.push(JSON.stringify({ jsonrpc: '2.0', id, method: 'rkllm_list_functions' }));
  if (client instanceof TcpRpc) client.socket.write(`${lines.join('\n')}\n`);
  else for (const line of lines) client.sendRaw(line);
}

/** Stops reading from the server: what it sends piles up in the kernel's buffers, then in the server's. */
function pause(client: LiveRpc): void {
  if (client instanceof TcpRpc) client.socket.pause();
  else (client as WsRpc).ws.pause();
}

function resume(client: LiveRpc): void {
  if (client instanceof TcpRpc) client.socket.resume();
  else (client as WsRpc).ws.resume();
}

describe('Backpressure', function () {
  this.timeout(180_000);

  describe('on TCP', () => {
    const fixture = liveFixture({
      settings: { engine: { parallel: 2, max_context_len: 8192 }, connections: { max_send_buffer_bytes: CAP } },
    });
    const tcp = async (): Promise<TcpRpc> => fixture.track(await fixture.server.tcp());

    it('a reader that does not drain ends its streams with an error chunk; other clients are not affected', async () => {
      const params = { prompt_input: 'The Queen said', max_new_tokens: 200, ...greedy };
      const expected = (await fixture.http.result('rkllm_run', params)).text as string;
      const slow = await tcp();
      const other = await tcp();
      slow.socket.pause();
      slow.send('rkllm_run_async', { prompt_input: PROMPT, max_new_tokens: 2000, ...greedy }, 'stream');
      await fixture.server.streams.until(() => fixture.server.streams.live > 0, 'the stream to start');
      flood(slow);
      expect((await other.stream(params)).text).to.equal(expected);
      await fixture.server.streams.until(() => fixture.server.streams.live === 0, 'every stream to end');

      slow.socket.resume();
      const { chunks } = await readAll(slow, 'stream');
      for (let n = 1; n <= FLOOD; n++) expect((await slow.next(n)).result.functions).to.be.an('array').that.is.not.empty;
      const last = chunks.at(-1)!;
      expect(chunks.map((c) => c.seq)).to.deep.equal(chunks.map((_, i) => i));
      expect(last).to.include({ end: true, finish_reason: 'error' });
      expect(last.error!.code).to.equal(-32010);
      expect(last.error!.message).to.match(new RegExp(`cap of ${CAP} bytes \\(setting connections.max_send_buffer_bytes\\).*stopped`));
      expect(last.perf!.generate_tokens).to.be.below(2000);
      // What was sent before the stop is exactly the start of the text.
      const head = await fixture.http.result('rkllm_run', { prompt_input: PROMPT, max_new_tokens: last.perf!.generate_tokens, ...greedy });
      expect(chunks.map((c) => c.delta).join('')).to.equal(head.text);
    });

    it('a detached stream whose reader falls behind stops being pushed, keeps buffering, and resumes elsewhere', async () => {
      const params = { prompt_input: PROMPT, max_new_tokens: 2000, ...greedy };
      const expected = (await fixture.http.result('rkllm_run', params)).text as string;
      const slow = await tcp();
      slow.socket.pause();
      slow.send('rkllm_run_async', { ...params, detach: true }, 'stream');
      await fixture.server.streams.until(() => fixture.server.streams.live > 0, 'the stream to start');
      flood(slow);
      await fixture.server.streams.until(() => fixture.server.streams.live === 0, 'every stream to end');

      slow.socket.resume();
      const { chunks, error } = await readAll(slow, 'stream');
      expect(error!.code).to.equal(-32010);
      expect(error!.message).to.match(/live delivery stopped after seq \d+\. The stream goes on buffering/);
      expect(error!.data.last_seq).to.equal(chunks.length - 1);
      const fresh = await tcp();
      const rest = await fresh.collect(
        fresh.send('rkllm_stream_attach', { stream_id: error!.data.stream_id, after_seq: error!.data.last_seq }),
      );
      expect(chunks.map((c) => c.delta).join('') + rest.text).to.equal(expected);
      expect(rest.last.finish_reason).to.equal('length');
    });
  });

  for (const transport of ['tcp', 'ws'] as const) {
    it(`${transport}: a server that closes while a client is behind sends it everything already written, the final chunks included`, async () => {
      // The cap is far above what the flood leaves waiting in the server, so nothing stops for it.
      const server = await startTestServer({
        settings: { engine: { max_context_len: 8192 }, connections: { max_send_buffer_bytes: 64 << 20 } },
      });
      try {
        const slow = await server.connect(transport);
        try {
          pause(slow);
          slow.send('rkllm_run_async', { prompt_input: PROMPT, max_new_tokens: 2000, ...greedy }, 'stream');
          await server.streams.until(() => server.streams.live > 0, 'the stream to start');
          const id = server.streams.startedIds[0]!;
          flood(slow);
          // The flood is answered within a few turns of the event loop; the stream's steps take many more.
          await server.streams.untilChunks(id, server.streams.chunks(id) + 50);
          const closing = server.close();
          // The stream has ended and its final chunk is written: a closing server waits 2 s for a slow reader.
          await server.streams.untilEnded(id);
          resume(slow);
          const { chunks } = await readAll(slow, 'stream');
          for (let n = 1; n <= FLOOD; n++) expect((await slow.next(n)).result.functions).to.be.an('array').that.is.not.empty;
          expect(chunks.map((c) => c.seq)).to.deep.equal(chunks.map((_, i) => i));
          expect(chunks.at(-1)).to.include({ end: true, finish_reason: 'shutdown' });
          await closing;
        } finally {
          await slow.close();
        }
      } finally {
        await server.close();
      }
    });
  }

  it('http: a long poll waiting when the server closes gets its answer, the final chunk included', async () => {
    // One HTTP request in progress per client: while the long poll waits, another request is refused.
    const server = await startTestServer({ settings: { engine: { parallel: 1, max_context_len: 8192 }, limits: { max_connections: 1 } } });
    try {
      // The only slot is busy, so the second stream waits in the queue with no chunk: the drain's
      // first poll is still waiting when the server closes.
      const busy = await server.http.start({ prompt_input: PROMPT, max_new_tokens: 2000, ...greedy });
      await server.http.firstChunk(busy.stream_id);
      const queued = await server.http.start({ prompt_input: 'The Queen said', max_new_tokens: 20, ...greedy });
      const drained = server.http.drain(queued.stream_id, { afterSeq: true, waitMs: 10_000 });
      const pollWaits = async (): Promise<boolean> =>
        (await server.http.call('rkllm_is_running', {})).error?.data?.limit === 'limits.max_connections';
      await until(pollWaits, 'the long poll to wait');
      // Closing at once aborts both streams: the waiting poll's answer, the queued stream's final
      // chunk, is written while the server closes its connections.
      await server.server.close();
      const { chunks, last } = await drained;
      expect(chunks).to.have.lengthOf(1);
      expect(last).to.include({ seq: 0, end: true, finish_reason: 'abort' });
    } finally {
      await server.close();
    }
  });
});
