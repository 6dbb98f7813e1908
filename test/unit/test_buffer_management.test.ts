// The seed plan's tests/unit/test_buffer_management.js, ported to TypeScript. As in the seed,
// these go through a real server process over HTTP.
import { expect } from 'chai';
import { RKLLMTestClient } from '../client.js';

describe('HTTP Buffer Management', function () {
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

  // Phase 3 success criterion 2: the buffer manager initialises and manages buffers.
  it('should initialize HTTP buffer manager', async () => {
    const response = await client.httpRequest('http_buffer_manager_status', {});
    expect(response.error).to.be.undefined;
    expect(response.result.initialized).to.be.true;
    expect(response.result.active_buffers).to.be.a('number');
    expect(response.result).to.include({ max_buffers: 256, cleanup_interval: 30, buffer_timeout: 60, buffered_bytes: 0 });
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

    const status = await client.httpRequest('http_buffer_manager_status', {});
    expect(status.result.active_buffers).to.equal(1);
    expect(status.result.buffered_bytes).to.be.greaterThan(0);
  });
});
