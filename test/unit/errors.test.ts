// The error table: every template builds the message the server sends, and the factories not yet
// built on the table say word for word what the table says.
import { expect } from 'chai';
import { ERROR_NAMES, ERRORS, fault, fill, ServerError } from '../../src/errors.js';
import { notSupported } from '../../src/engine/capabilities.js';
import { toNativeParam } from '../../src/engine/rkllm/marshal.js';
import { createDefaultParam } from '../../src/engine/types.js';
import { ErrorCodes, RpcError, toErrorObject } from '../../src/jsonrpc/errors.js';
import { afterSeqBeyond, afterSeqReleased, streamNotFound } from '../../src/streams/buffer-store.js';
import { tooManyConnections } from '../../src/transports/tracked-connections.js';
import { thrown } from '../helpers/thrown.js';

describe('The error table', () => {
  it('gives every error its own code, in the JSON-RPC ranges', () => {
    const codes = ERROR_NAMES.map((name) => ERRORS[name].code);
    expect(new Set(codes).size).to.equal(codes.length);
    for (const code of codes) expect(code >= -32768 && code <= -32000, String(code)).to.equal(true);
    expect(ErrorCodes.STREAM_NOT_FOUND).to.equal(-32001);
  });

  it('builds an error from a template, with its data, and the wire object from it', () => {
    const error = fault('STREAM_NOT_FOUND', 'unknown', { stream_id: 'st_1' }, { stream_id: 'st_1', reason: 'unknown' });
    expect(error).to.be.instanceOf(ServerError).and.instanceOf(RpcError);
    expect(error.name).to.equal('STREAM_NOT_FOUND');
    expect(toErrorObject(error)).to.deep.equal({
      code: -32001,
      message: 'Unknown stream st_1',
      data: { stream_id: 'st_1', reason: 'unknown' },
    });
    expect(toErrorObject(fault('UNAUTHORIZED', 'key'))).to.deep.equal({
      code: -32015,
      message: 'Unauthorized: a valid API key is required',
    });
    expect(JSON.stringify(error)).to.equal(JSON.stringify(toErrorObject(error)));
  });

  it('fills only the placeholders it is given', () => {
    expect(fill('a {x} b {y}', { x: 1 })).to.equal('a 1 b {y}');
    expect(fill('Parse error: {reason}', { reason: 'bad {reason}' })).to.equal('Parse error: bad {reason}');
  });

  it('says word for word what the factories elsewhere say', () => {
    const same = (error: ServerError, built: ServerError): void => {
      expect(toErrorObject(error)).to.deep.equal(toErrorObject(built));
    };
    same(
      streamNotFound('st_1', 'unknown', 60_000),
      fault('STREAM_NOT_FOUND', 'unknown', { stream_id: 'st_1' }, { stream_id: 'st_1', reason: 'unknown' }),
    );
    same(
      streamNotFound('st_1', 'expired', 60_000),
      fault('STREAM_NOT_FOUND', 'expired', { stream_id: 'st_1', seconds: 60 }, { stream_id: 'st_1', reason: 'expired' }),
    );
    same(
      streamNotFound('st_1', 'released', 60_000),
      fault('STREAM_NOT_FOUND', 'released', { stream_id: 'st_1' }, { stream_id: 'st_1', reason: 'released' }),
    );
    same(afterSeqBeyond(9, 3), fault('INVALID_PARAMS', 'after_seq_beyond', { after_seq: 9, last_seq: 3 }, { last_seq: 3 }));
    same(afterSeqReleased(1, 4), fault('INVALID_PARAMS', 'after_seq_released', { after_seq: 1, acked_seq: 4 }, { acked_seq: 4 }));
    same(
      notSupported('llama.cpp', 'mirostat'),
      fault(
        'NOT_SUPPORTED',
        'feature',
        { feature: 'mirostat sampling (mirostat 1 or 2)', engine: 'llama.cpp' },
        { engine: 'llama.cpp', feature: 'mirostat' },
      ),
    );
    same(
      notSupported('llama.cpp', 'mirostat', 'why'),
      fault(
        'NOT_SUPPORTED',
        'feature_because',
        { feature: 'mirostat sampling (mirostat 1 or 2)', engine: 'llama.cpp', reason: 'why' },
        { engine: 'llama.cpp', feature: 'mirostat', reason: 'why' },
      ),
    );
    same(
      tooManyConnections('TCP', 5),
      fault('TOO_MANY_CONNECTIONS', 'transport', { max_connections: 5, transport: 'TCP' }, { max_connections: 5, retry_after: 1 }),
    );
    const reason = 'RKLLMParam has no ignore_eos_token before runtime 1.3';
    same(
      thrown(() => toNativeParam({ ...createDefaultParam(), ignore_eos_token: true }, '1.2'), ServerError),
      fault(
        'NOT_SUPPORTED',
        'feature_because',
        { feature: 'ignore_eos_token', engine: 'rkllm', reason },
        { engine: 'rkllm', feature: 'ignore_eos_token', reason },
      ),
    );
  });
});
