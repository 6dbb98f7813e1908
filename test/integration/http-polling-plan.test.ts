// The seed plan's Phase 3 tests (shared/seed/phase3-http-polling.md), in one file: its
// tests/integration/test_http_polling.js and tests/unit/test_buffer_management.js, ported with the
// plan's client, method names, parameters and result fields. Each test gets a fresh server (in this
// process, with the diagnostics methods on) and talks to it over real HTTP. Where the plan only
// checked that a field is present, the tests check its value, so that a broken server fails them.
import { expect } from 'chai';
import { RKLLMTestClient } from '../client.js';
import type { Chunk } from '../helpers/rpc.js';

const greedy = { top_k: 1, temperature: 0, repeat_penalty: 1 };

describe('Phase 3: HTTP polling and buffer management (the seed plan)', function () {
  this.timeout(60_000);
  let client: RKLLMTestClient;

  beforeEach(async () => {
    client = new RKLLMTestClient();
    await client.startServer();
    await client.waitForServer();
  });

  afterEach(async () => {
    await client.stopServer();
  });

  /** Long-polls by request id until the final chunk; every chunk must belong to `streamId`. */
  async function pollToEnd(requestId: string | number | null, streamId: string): Promise<{ text: string; last: Chunk }> {
    let text = '';
    for (const deadline = Date.now() + 30_000; Date.now() < deadline;) {
      const res = await client.httpRequest<{ chunk: Chunk | null }>('poll', { request_id: requestId, wait_ms: 2000 });
      expect(res.error).to.equal(undefined);
      const chunk = res.result!.chunk;
      if (chunk === null) continue;
      expect(chunk.stream_id).to.equal(streamId);
      text += chunk.delta;
      if (chunk.end) return { text, last: chunk };
    }
    throw new Error('the stream did not end within 30 s');
  }

  /** What one poll for a stream just started may answer: nothing yet, or chunks of that very stream. */
  function expectChunkOrNothing(chunk: Chunk | null | undefined, streamId: string): void {
    expect(chunk, 'poll answers { chunk }').to.not.equal(undefined);
    if (chunk !== null) {
      expect(chunk!.stream_id).to.equal(streamId);
      expect(chunk!.seq).to.be.a('number').at.least(0);
      expect(chunk!.delta).to.be.a('string');
    }
  }

  describe('HTTP Polling Stream Management', () => {
    // Success criterion 1: poll works for HTTP streaming (no more "NOT IMPLEMENTED").
    it('should implement poll method for HTTP streaming', async () => {
      const startResponse = await client.httpRequest('rkllm_run_async', {
        input_type: 0,
        prompt_input: 'Test HTTP polling',
        stream: true,
      });

      expect(startResponse.error).to.be.undefined;
      const requestId = startResponse.id;
      expect(startResponse.result).to.deep.include({ request_id: requestId });
      const streamId = startResponse.result.stream_id as string;
      expect(streamId).to.match(/^st_/);

      const pollResponse = await client.httpRequest('poll', { request_id: requestId });
      expect(pollResponse.error).to.be.undefined;
      expectChunkOrNothing(pollResponse.result.chunk, streamId);

      // Polling on reaches the final chunk.
      const { last } = await pollToEnd(requestId, streamId);
      expect(last.finish_reason).to.be.oneOf(['length', 'stop']);
      expect(last.perf!.generate_tokens).to.be.greaterThan(0);
    });

    // Success criterion 3: chunks are buffered and retrieved through polling.
    it('should buffer chunks properly for HTTP polling', async () => {
      const response = await client.httpRequest('test_http_buffer_manager', {
        request_id: 'test_123',
        mock_chunks: [
          { seq: 0, delta: 'Hello', end: false },
          { seq: 1, delta: ' world', end: false },
          { seq: 2, delta: '!', end: true },
        ],
      });

      expect(response.error).to.be.undefined;
      expect(response.result.chunks_buffered).to.equal(3);
      expect(response.result.buffer_size).to.be.greaterThan(0);
      expect(response.result.request_id).to.equal('test_123');

      // Beyond the seed: the injected chunks come back, joined, through the real poll method.
      const poll = await client.httpRequest('poll', { request_id: 'test_123' });
      expect(poll.result.chunk).to.include({ seq: 2, delta: 'Hello world!', end: true, stream_id: response.result.stream_id });
    });

    // Success criterion 4: expired buffers are cleaned up automatically.
    it('should clean up expired buffers automatically', async () => {
      const response = await client.httpRequest('test_buffer_cleanup', {
        create_expired_buffers: 3,
        timeout_seconds: 1,
      });

      expect(response.error).to.be.undefined;
      expect(response.result.buffers_created).to.equal(3);
      expect(response.result.buffers_cleaned).to.equal(3);
      expect(response.result.initial_count - response.result.final_count).to.equal(3);
      const status = await client.httpRequest('http_buffer_manager_status', {});
      expect(status.result.active_buffers).to.equal(response.result.final_count);
    });

    // Success criterion 5: concurrent HTTP polling sessions work.
    it('should handle concurrent HTTP polling sessions', async () => {
      const sessions: Array<{ requestId: string | number | null; streamId: string }> = [];
      for (let i = 0; i < 3; i++) {
        const response = await client.httpRequest('rkllm_run_async', {
          input_type: 0,
          prompt_input: `Test session ${i}`,
          stream: true,
        });
        expect(response.error).to.be.undefined;
        sessions.push({ requestId: response.id, streamId: response.result.stream_id });
      }
      expect(new Set(sessions.map((s) => s.streamId)).size).to.equal(3);

      for (const { requestId, streamId } of sessions) {
        const pollResponse = await client.httpRequest('poll', { request_id: requestId });
        expect(pollResponse.error).to.be.undefined;
        expectChunkOrNothing(pollResponse.result.chunk, streamId);
      }
      // Each session streams its own chunks: stopped (they would run to the context's end), each is polled to its own final chunk.
      const aborted: number[] = [];
      for (const { requestId, streamId } of sessions) {
        const abort = await client.httpRequest('rkllm_abort', { request_id: requestId });
        expect(abort.result.stream_id).to.equal(streamId);
        aborted.push(abort.result.aborted);
      }
      const ends = await Promise.all(sessions.map(({ requestId, streamId }) => pollToEnd(requestId, streamId)));
      // A session that had already finished on its own is not aborted, and says how it ended.
      ends.forEach(({ last }, i) => expect(last.finish_reason).to.be.oneOf(aborted[i] === 1 ? ['abort'] : ['length', 'stop']));
    });

    // Success criterion 6: HTTP polling carries the real engine's stream, token for token.
    it('should yield by polling exactly the text the engine generates', async () => {
      const params = { input_type: 0, prompt_input: 'Test HTTP polling', max_new_tokens: 60, ...greedy };
      const run = await client.httpRequest('rkllm_run', params);
      expect(run.error).to.be.undefined;
      const start = await client.httpRequest('rkllm_run_async', { ...params, stream: true });
      const { text, last } = await pollToEnd(start.id, start.result.stream_id);
      expect(text).to.equal(run.result.text);
      expect(last.perf!.generate_tokens).to.equal(60);
    });
  });

  describe('HTTP Buffer Management', () => {
    // Success criterion 2: the buffer manager initialises and manages buffers.
    it('should initialize HTTP buffer manager', async () => {
      const response = await client.httpRequest('http_buffer_manager_status', {});
      expect(response.error).to.be.undefined;
      expect(response.result.initialized).to.be.true;
      expect(response.result.active_buffers).to.be.a('number');
      expect(response.result).to.include({
        active_buffers: 0,
        max_buffers: 256,
        cleanup_interval: 30,
        buffer_timeout: 60,
        buffered_bytes: 0,
      });

      // "initialized" is always true: what shows the manager works is that it counts what it holds.
      const made = await client.httpRequest('test_http_buffer_manager', {
        request_id: 'managed',
        mock_chunks: [{ seq: 0, delta: 'held', end: true }],
      });
      const holding = await client.httpRequest('http_buffer_manager_status', {});
      expect(holding.result.active_buffers).to.equal(1);
      expect(holding.result.buffered_bytes).to.be.greaterThan(0);
      const read = await client.httpRequest('poll', { stream_id: made.result.stream_id });
      expect(read.result.chunk).to.include({ delta: 'held', end: true });
      const released = await client.httpRequest('http_buffer_manager_status', {});
      expect(released.result).to.include({ active_buffers: 0, buffered_bytes: 0 });
    });

    it('should create and retrieve buffer chunks', async () => {
      const response = await client.httpRequest('test_buffer_operations', {
        operation: 'create_and_retrieve',
        request_id: 'test_456',
        chunks: ['chunk1', 'chunk2', 'chunk3'],
      });

      expect(response.error).to.be.undefined;
      expect(response.result.created).to.be.true;
      expect(response.result.retrieved_chunks).to.have.lengthOf(3);
      expect(response.result.retrieved_chunks.map((c: { delta: string }) => c.delta)).to.deep.equal(['chunk1', 'chunk2', 'chunk3']);
      expect(response.result.retrieved_chunks.map((c: { seq: number }) => c.seq)).to.deep.equal([0, 1, 2]);

      const status = await client.httpRequest('http_buffer_manager_status', {});
      expect(status.result.active_buffers).to.equal(1);
      expect(status.result.buffered_bytes).to.be.greaterThan(0);
    });
  });
});
