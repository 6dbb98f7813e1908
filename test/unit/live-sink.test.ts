import { expect } from 'chai';
import { emptyPerf } from '../../src/engine/types.js';
import type { Connection } from '../../src/jsonrpc/connection.js';
import { errorObject, type ServerError } from '../../src/errors.js';
import type { JsonRpcResponse } from '../../src/jsonrpc/message.js';
import { chunkOutlet } from '../../src/methods/core.js';
import { LiveSink } from '../../src/streams/live-sink.js';
import { Stream, type Chunk } from '../../src/streams/stream.js';

/** A connection that accepts `room` messages before reporting it is over its cap. */
function fakeConnection(room = Infinity): Connection & { sent: JsonRpcResponse[]; close: () => void; holds: number } {
  const closing = new AbortController();
  const fake = {
    id: 'fake',
    lossy: false,
    closed: closing.signal,
    sendLimit: { bytes: 10, setting: 'connections.max_send_buffer_bytes' },
    sent: [] as JsonRpcResponse[],
    holds: 0,
    send(message: JsonRpcResponse | JsonRpcResponse[]): boolean {
      fake.sent.push(message as JsonRpcResponse);
      return fake.sent.length <= room;
    },
    hold(): () => void {
      fake.holds++;
      return () => fake.holds--;
    },
    close: () => closing.abort(),
  };
  return fake;
}

const seqs = (sent: JsonRpcResponse[]): number[] => sent.map((m) => (m as { result: { chunk: Chunk } }).result.chunk.seq);

function sink(
  stream: Stream,
  connection: Connection,
  options: { buffered?: boolean; afterSeq?: number; stop?: (e: ServerError) => void } = {},
): LiveSink {
  return new LiveSink({
    stream,
    // The wire layer's outlet: each chunk a response to request 9.
    outlet: chunkOutlet(connection, 9),
    afterSeq: options.afterSeq ?? -1,
    buffered: options.buffered ?? false,
    stop: options.stop ?? (() => {}),
    onClose: () => {},
  });
}

describe('LiveSink', () => {
  it('sends each chunk as a response to the request, naming the stream, and lets go of the connection at the end', () => {
    const stream = new Stream(1);
    const connection = fakeConnection();
    sink(stream, connection);
    expect(connection.holds).to.equal(1);
    stream.push('a');
    stream.end('stop', emptyPerf());
    expect(connection.sent[0]).to.deep.equal({
      jsonrpc: '2.0',
      id: 9,
      result: { chunk: { seq: 0, delta: 'a', end: false, stream_id: stream.id } },
    });
    expect(seqs(connection.sent)).to.deep.equal([0, 1]);
    expect(connection.holds).to.equal(0);
  });

  it('replays from the buffer, then what arrived meanwhile, with no chunk lost or repeated', async () => {
    const stream = new Stream(1);
    for (const delta of ['a', 'b', 'c']) stream.push(delta);
    const connection = fakeConnection();
    const s = sink(stream, connection, { buffered: true, afterSeq: 0 });
    await s.replay(async () => {
      // While the buffer is read, the stream goes on: seq 3 and 4 arrive live.
      stream.push('d');
      stream.push('e');
      return [1, 2, 3].map((seq) => ({ seq, delta: 'bcd'[seq - 1]!, end: false }));
    });
    stream.push('f');
    expect(seqs(connection.sent)).to.deep.equal([1, 2, 3, 4, 5]);
  });

  it('stops an unbuffered stream whose client falls behind, and still delivers its final chunk', () => {
    const stream = new Stream(1);
    const connection = fakeConnection(2);
    const errors: ServerError[] = [];
    sink(stream, connection, { stop: (error) => errors.push(error) });
    for (const delta of ['a', 'b', 'c', 'd']) stream.push(delta);
    expect(errors).to.have.lengthOf(1);
    expect(errors[0]!.name).to.equal('SEND_BUFFER_FULL');
    expect(errors[0]!.message).to.match(/cap of 10 bytes \(setting connections.max_send_buffer_bytes\)/);
    stream.end('error', emptyPerf(), errorObject(errors[0]!));
    expect(seqs(connection.sent)).to.deep.equal([0, 1, 2, 3, 4]);
  });

  it('stops pushing a buffered stream to a client that falls behind, telling it where to resume', () => {
    const stream = new Stream(1);
    const connection = fakeConnection(2);
    sink(stream, connection, { buffered: true });
    for (const delta of ['a', 'b', 'c', 'd']) stream.push(delta);
    const notice = connection.sent.at(-1) as { error: { code: number; message: string; data: { last_seq: number } } };
    expect(connection.sent).to.have.lengthOf(4);
    expect(notice.error.code).to.equal(-32010);
    expect(notice.error.message).to.match(/live delivery stopped after seq 2\. .*rkllm_stream_attach/);
    expect(notice.error.data.last_seq).to.equal(2);
    expect(connection.holds).to.equal(0);
  });

  it('lets a buffered stream go when its connection closes', () => {
    const stream = new Stream(1);
    const connection = fakeConnection();
    sink(stream, connection, { buffered: true });
    stream.push('a');
    connection.close();
    stream.push('b');
    expect(seqs(connection.sent)).to.deep.equal([0]);
    expect(connection.holds).to.equal(0);
  });
});
