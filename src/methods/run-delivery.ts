import type { Connection } from '../jsonrpc/connection.js';
import type { MethodContext } from '../jsonrpc/dispatcher.js';
import { errorResponse, resultResponse, type JsonRpcId } from '../jsonrpc/message.js';
import type { Delivery } from '../streams/delivery.js';
import type { ChunkOutlet } from '../streams/live-sink.js';

/**
 * The replies to `requestId` on a live connection, as the outlet a stream is pushed to: each chunk
 * becomes a result `{"chunk": {..., "stream_id"}}` answering the request, naming its stream so it
 * can be resumed; an error that stops delivery answers the request too.
 */
export function chunkOutlet(connection: Connection, requestId: JsonRpcId): ChunkOutlet {
  return {
    closed: connection.closed,
    sendLimit: connection.sendLimit,
    send: (streamId, chunk) => connection.send(resultResponse(requestId, { chunk: { ...chunk, stream_id: streamId } })),
    fail: (error) => void connection.send(errorResponse(requestId, error)),
    hold: () => connection.hold(),
  };
}

/**
 * How the chunks of `rkllm_run_async` reach its caller. Over HTTP, and for a notification (which
 * cannot be answered), they are buffered for `poll`. On a live connection they are pushed; they are
 * buffered too when the connection loses messages (UDP: gaps are repaired with `poll`) or the run
 * is detached (it outlives the connection); otherwise the run ends when the connection closes.
 */
export function runDelivery(ctx: MethodContext, detach: boolean): Delivery {
  const { connection, id } = ctx;
  if (!connection || id === undefined) return { kind: 'buffer' };
  return { kind: connection.lossy || detach ? 'push+buffer' : 'push', outlet: chunkOutlet(connection, id) };
}
