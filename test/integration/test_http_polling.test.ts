// The seed plan's tests/integration/test_http_polling.js, ported to TypeScript. Each test talks
// to a real server process running the built-in model, over real HTTP.
import { expect } from 'chai';
import { RKLLMTestClient } from '../client.js';

describe('HTTP Polling Stream Management', function () {
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

  // Phase 3 success criterion 1: poll works for HTTP streaming (no more "NOT IMPLEMENTED").
  it('should implement poll method for HTTP streaming', async () => {
    const startResponse = await client.httpRequest('rkllm_run_async', {
      input_type: 0,
      prompt_input: 'Test HTTP polling',
      stream: true,
    });

    expect(startResponse.error).to.be.undefined;
    const requestId = startResponse.id;

    const pollResponse = await client.httpRequest('poll', { request_id: requestId });
    expect(pollResponse.error).to.be.undefined;
    expect(pollResponse.result).to.have.property('chunk');
  });

  // Phase 3 success criterion 3: chunks are buffered and retrieved through polling.
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

    // Beyond the seed: the injected chunks come back through the real poll method.
    const poll = await client.httpRequest('poll', { request_id: 'test_123' });
    expect(poll.result.chunk).to.include({ seq: 2, delta: 'Hello world!', end: true });
  });

  // Phase 3 success criterion 4: expired buffers are cleaned up automatically.
  it('should clean up expired buffers automatically', async () => {
    const response = await client.httpRequest('test_buffer_cleanup', {
      create_expired_buffers: 3,
      timeout_seconds: 1,
    });

    expect(response.error).to.be.undefined;
    expect(response.result.buffers_created).to.equal(3);
    expect(response.result.buffers_cleaned).to.equal(3);
  });

  // Phase 3 success criterion 5: concurrent HTTP polling sessions work.
  it('should handle concurrent HTTP polling sessions', async () => {
    const sessions: Array<string | number | null> = [];
    for (let i = 0; i < 3; i++) {
      const response = await client.httpRequest('rkllm_run_async', {
        input_type: 0,
        prompt_input: `Test session ${i}`,
        stream: true,
      });
      expect(response.error).to.be.undefined;
      sessions.push(response.id);
    }

    for (const sessionId of sessions) {
      const pollResponse = await client.httpRequest('poll', { request_id: sessionId });
      expect(pollResponse.error).to.be.undefined;
      expect(pollResponse.result).to.have.property('chunk');
    }
  });
});
