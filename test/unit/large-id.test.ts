// Ids beyond 2^53 keep their source text from parse to reply.
import { expect } from 'chai';
import { encodeJson, LargeId, rawIds } from '../../src/jsonrpc/large-id.js';
import { parseMessage } from '../../src/jsonrpc/message.js';

describe('Large ids', () => {
  it('finds the top-level "id" of each request, not ids nested in params or inside strings', () => {
    const text =
      '[{"params":{"id":1},"method":"a\\"id\\":5","id" : 9007199254740993}, 7, {"id":"x"}, {"x":[{"id":3}],"id":-12345678901234567890}]';
    expect([...rawIds(text)]).to.deep.equal([
      [0, '9007199254740993'],
      [3, '-12345678901234567890'],
    ]);
  });

  it('parses a lossy id into a LargeId and writes it back exactly; safe ids stay numbers', () => {
    const message = parseMessage('{"jsonrpc":"2.0","id":9007199254740993,"method":"m","params":{"n":9007199254740993}}') as {
      id: unknown;
    };
    expect(message.id).to.be.instanceOf(LargeId);
    expect(encodeJson({ id: message.id, result: { request_id: message.id } })).to.equal(
      '{"id":9007199254740993,"result":{"request_id":9007199254740993}}',
    );
    expect((parseMessage('{"id":42}') as { id: unknown }).id).to.equal(42);
    expect(JSON.stringify(new LargeId('9007199254740993'))).to.equal('9007199254740992');
  });

  it('never turns a client string into a number', () => {
    const message = parseMessage('{"id":9007199254740993,"s":"\\u0000large-id:0"}');
    expect(encodeJson(message)).to.equal('{"id":9007199254740993,"s":"\\u0000large-id:0"}');
  });
});
