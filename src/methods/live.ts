import { notOwned } from '../auth.js';
import { fault } from '../errors.js';
import { PUSHED, type Method } from '../jsonrpc/dispatcher.js';
import type { StreamHub } from '../streams/hub.js';
import { chunkOutlet, method } from './core.js';
import { int, object, str } from '../request-schema.js';

/** Methods that only make sense on a live connection (TCP, UDP, WebSocket, stdio). */
export function liveMethods(hub: StreamHub): Array<[string, Method]> {
  return [
    method<{ stream_id: string; after_seq: number }>(
      'rkllm_stream_attach',
      'Resumes a buffered stream (detached, or started over HTTP or UDP) on this connection: pushes every chunk after after_seq, ' +
        'then each new chunk as it comes, as responses to this request. The stream stops being pushed to any other connection. ' +
        'Answers {"chunk": null} when the stream has ended and after_seq is its last seq (which releases its buffer).',
      object(
        {
          stream_id: str('The stream_id carried by every chunk', 64),
          after_seq: int(-1, Number.MAX_SAFE_INTEGER, 'The last seq received; -1 for none'),
        },
        ['stream_id', 'after_seq'],
      ),
      async (params, ctx) => {
        if (!ctx.connection || ctx.id === undefined) {
          throw fault('INVALID_REQUEST', 'attach_not_live');
        }
        if (!ctx.client.owns(params.stream_id)) throw notOwned(params.stream_id);
        const sending = await hub.attach(params.stream_id, params.after_seq, chunkOutlet(ctx.connection, ctx.id));
        return sending ? PUSHED : { chunk: null };
      },
      { streams: true },
    ),
  ];
}
