/**
 * The seed plan's test methods (Step 4), registered only with `--diagnostics`. They act on the
 * server's real buffer store: chunks injected here can be read back with `poll`.
 */
import type { Method } from '../jsonrpc/dispatcher.js';
import { fault } from '../errors.js';
import { requestKey, type BufferStore } from '../streams/buffer-store.js';
import { newStreamId, type Chunk } from '../streams/stream.js';
import { method, requestIdSchema } from './core.js';
import { bool, int, object, str } from '../request-schema.js';

/** Creates a buffer under `requestId` and appends the chunks, checking they are numbered 0, 1, 2... */
async function inject(store: BufferStore, requestId: string | number | null, chunks: Chunk[], idleMs = 0): Promise<string> {
  chunks.forEach((chunk, index) => {
    if (chunk.seq !== index)
      throw fault('INVALID_PARAMS', 'detail', { detail: `chunk ${index} has seq ${chunk.seq}; seqs must count 0, 1, 2, ...` });
  });
  const streamId = newStreamId();
  await store.create(streamId, { requestKey: requestKey(requestId), idleMs });
  for (const chunk of chunks) await store.append(streamId, chunk);
  return streamId;
}

/** `sweep` is the server's own sweep, so expired streams that still generate are aborted too. */
export function diagnosticMethods(store: BufferStore, sweep: () => Promise<string[]>): Array<[string, Method]> {
  const chunkSchema = object({ seq: int(0, Number.MAX_SAFE_INTEGER), delta: str(), end: bool() }, ['seq', 'delta', 'end']);
  return [
    method<{ request_id: string | number | null; mock_chunks: Array<{ seq: number; delta: string; end: boolean }> }>(
      'test_http_buffer_manager',
      'Diagnostics: buffers mock chunks under a request id; read them back with poll.',
      object({ request_id: requestIdSchema, mock_chunks: { type: 'array', items: chunkSchema, maxItems: 10_000 } }, [
        'request_id',
        'mock_chunks',
      ]),
      async (params) => {
        const streamId = await inject(store, params.request_id, params.mock_chunks);
        const buffered = await store.peek(streamId);
        return {
          request_id: params.request_id,
          stream_id: streamId,
          chunks_buffered: buffered.length,
          buffer_size: buffered.reduce((n, c) => n + Buffer.byteLength(JSON.stringify(c)), 0),
        };
      },
    ),
    method<{ create_expired_buffers: number; timeout_seconds: number }>(
      'test_buffer_cleanup',
      'Diagnostics: creates buffers idle for longer than the buffer timeout, runs the sweep, and counts what it removed.',
      object({ create_expired_buffers: int(0, 1000), timeout_seconds: int(0, 86_400) }, ['create_expired_buffers', 'timeout_seconds']),
      async (params) => {
        const idleMs = store.limits.bufferTimeoutMs + (params.timeout_seconds + 1) * 1000;
        const created = new Set<string>();
        for (let i = 0; i < params.create_expired_buffers; i++) {
          created.add(await inject(store, `expired_test_${i}`, [], idleMs));
        }
        const initial = (await store.status()).active_buffers;
        const swept = await sweep();
        const final = (await store.status()).active_buffers;
        return {
          buffers_created: created.size,
          buffers_cleaned: swept.filter((id) => created.has(id)).length,
          initial_count: initial,
          final_count: final,
        };
      },
    ),
    method<{ operation: 'create_and_retrieve'; request_id: string | number | null; chunks: string[] }>(
      'test_buffer_operations',
      'Diagnostics: creates a buffer from plain strings and reads the chunks back without acknowledging them.',
      object(
        {
          operation: { type: 'string', enum: ['create_and_retrieve'] },
          request_id: requestIdSchema,
          chunks: { type: 'array', items: str(), maxItems: 10_000 },
        },
        ['operation', 'request_id', 'chunks'],
      ),
      async (params) => {
        const chunks = params.chunks.map((delta, seq) => ({ seq, delta, end: false }));
        const streamId = await inject(store, params.request_id, chunks);
        return { created: true, stream_id: streamId, retrieved_chunks: await store.peek(streamId) };
      },
    ),
  ];
}
