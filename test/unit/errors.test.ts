// The error table: every template builds the message the server sends, and the helpers built on
// it say word for word what clients have always read.
import { expect } from 'chai';
import { ERROR_NAMES, ERRORS, errorObject, fault, fill, ServerError, type ErrorObject } from '../../src/errors.js';
import { notSupported } from '../../src/engine/capabilities.js';
import { toNativeParam } from '../../src/engine/rkllm/marshal.js';
import { createDefaultParam } from '../../src/engine/types.js';
import { errorResponse } from '../../src/jsonrpc/message.js';
import { streamNotFound } from '../../src/streams/buffer-store.js';
import { thrown } from '../helpers/thrown.js';

describe('The error table', () => {
  it('gives every error its own code, in the JSON-RPC ranges', () => {
    const codes = ERROR_NAMES.map((name) => ERRORS[name].code);
    expect(new Set(codes).size).to.equal(codes.length);
    for (const code of codes) expect(code >= -32768 && code <= -32000, String(code)).to.equal(true);
    expect(ERRORS.STREAM_NOT_FOUND.code).to.equal(-32001);
  });

  it('builds an error from a template, with its data, and the wire object from it', () => {
    const error = fault('STREAM_NOT_FOUND', 'unknown', { stream_id: 'st_1' }, { stream_id: 'st_1', reason: 'unknown' });
    expect(error).to.be.instanceOf(ServerError);
    expect(error.name).to.equal('STREAM_NOT_FOUND');
    expect(errorObject(error)).to.deep.equal({
      code: -32001,
      message: 'Unknown stream st_1',
      data: { stream_id: 'st_1', reason: 'unknown' },
    });
    expect(errorObject(fault('UNAUTHORIZED', 'key'))).to.deep.equal({
      code: -32015,
      message: 'Unauthorized: a valid API key is required',
    });
    expect(errorResponse(7, error)).to.deep.equal({ jsonrpc: '2.0', id: 7, error: errorObject(error) });
  });

  it('fills only the placeholders it is given', () => {
    expect(fill('a {x} b {y}', { x: 1 })).to.equal('a 1 b {y}');
    expect(fill('Parse error: {reason}', { reason: 'bad {reason}' })).to.equal('Parse error: bad {reason}');
  });

  it('says word for word what clients have always read', () => {
    const is = (error: ServerError, expected: ErrorObject): void => {
      expect(errorObject(error)).to.deep.equal(expected);
    };
    is(streamNotFound('st_1', 'unknown', 60_000), {
      code: -32001,
      message: 'Unknown stream st_1',
      data: { stream_id: 'st_1', reason: 'unknown' },
    });
    is(streamNotFound('st_1', 'expired', 60_000), {
      code: -32001,
      message: 'Stream st_1 has expired: it was not polled for 60 s and its buffer was dropped',
      data: { stream_id: 'st_1', reason: 'expired' },
    });
    is(streamNotFound('st_1', 'released', 60_000), {
      code: -32001,
      message: 'Stream st_1 has ended and its buffer was released after the final chunk was acknowledged',
      data: { stream_id: 'st_1', reason: 'released' },
    });
    is(fault('INVALID_PARAMS', 'after_seq_beyond', { after_seq: 9, last_seq: 3 }, { last_seq: 3 }), {
      code: -32602,
      message: 'after_seq 9 is beyond the last chunk sent (seq 3)',
      data: { last_seq: 3 },
    });
    is(fault('INVALID_PARAMS', 'detail', { detail: '"x" must be a string' }), {
      code: -32602,
      message: 'Invalid params: "x" must be a string',
    });
    is(notSupported('llama.cpp', 'mirostat'), {
      code: -32005,
      message: 'mirostat sampling (mirostat 1 or 2) is not supported by the llama.cpp engine',
      data: { engine: 'llama.cpp', feature: 'mirostat' },
    });
    is(notSupported('llama.cpp', 'mirostat', 'why'), {
      code: -32005,
      message: 'mirostat sampling (mirostat 1 or 2) is not supported by the llama.cpp engine: why',
      data: { engine: 'llama.cpp', feature: 'mirostat', reason: 'why' },
    });
    is(fault('TOO_MANY_CONNECTIONS', 'transport', { max_connections: 5, transport: 'TCP' }, { max_connections: 5, retry_after: 1 }), {
      code: -32011,
      message: 'Too many connections: the limit of 5 TCP connections (setting connections.max_connections) is reached; try again later',
      data: { max_connections: 5, retry_after: 1 },
    });
    const reason = 'RKLLMParam has no ignore_eos_token before runtime 1.3';
    is(
      thrown(() => toNativeParam({ ...createDefaultParam(), ignore_eos_token: true }, '1.2'), ServerError),
      {
        code: -32005,
        message: `ignore_eos_token is not supported by the rkllm engine: ${reason}`,
        data: { engine: 'rkllm', feature: 'ignore_eos_token', reason },
      },
    );
  });
});
