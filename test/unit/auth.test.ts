// API keys, stream ownership and the client gate, without a server.
import { expect } from 'chai';
import { ApiKeys, exposesBeyondLoopback, type ClientEnd } from '../../src/auth.js';
import { ClientGate } from '../../src/clients.js';
import { ServerError } from '../../src/errors.js';
import type { JsonRpcRequest } from '../../src/jsonrpc/message.js';
import { ClientLimits } from '../../src/limits.js';
import { thrown } from '../helpers/thrown.js';

const A = 'key-a-0123456789abcdef';
const B = 'key-b-0123456789abcdef';
const request = (method: string, extra: Record<string, unknown> = {}): JsonRpcRequest => ({ jsonrpc: '2.0', id: 1, method, ...extra });
const peer = (key?: ReturnType<ApiKeys['find']>): ClientEnd => ({ address: '10.0.0.7', key });

function gate(
  secrets: string[],
  limits = new ClientLimits({ requestsPerSecond: 0, requestBurst: 1, maxStreams: 0, maxConnections: 0 }),
): ClientGate {
  return new ClientGate({ keys: new ApiKeys(secrets), limits });
}

const refusal = (fn: () => unknown): string => thrown(fn, ServerError).name;

describe('API keys', () => {
  const keys = new ApiKeys([A, B]);

  it('finds a key by its secret, and by an Authorization: Bearer header', () => {
    expect(keys.find(A)?.id).to.match(/^key_[0-9a-f]{12}$/);
    expect(keys.find('nope')).to.equal(undefined);
    expect(keys.find(42)).to.equal(undefined);
    expect(keys.fromAuthorization(`Bearer ${A}`)).to.equal(keys.find(A));
    expect(keys.fromAuthorization(`bearer  ${A}`)).to.equal(keys.find(A));
    for (const header of [undefined, '', A, `Basic ${A}`, `Bearer ${A} extra`, 'Bearer wrong-key-0123456789']) {
      expect(keys.fromAuthorization(header), String(header)).to.equal(undefined);
    }
  });

  it('ids do not reveal the key', () => {
    expect(keys.find(A)!.id).not.to.include(A.slice(0, 6));
    expect(keys.find(A)!.id).not.to.equal(keys.find(B)!.id);
  });

  it('a stream id signed by one key is recognised by that key only', () => {
    const a = keys.find(A)!;
    const b = keys.find(B)!;
    const id = a.sign('st_abc');
    expect(a.signed(id)).to.equal(true);
    expect(b.signed(id)).to.equal(false);
    expect(a.signed('st_abc')).to.equal(false);
    expect(a.signed(`${id}x`)).to.equal(false);
    expect(a.signed(id.replace('st_abc', 'st_abd'))).to.equal(false);
  });

  it('tells which hosts expose the server beyond this machine', () => {
    for (const host of ['127.0.0.1', '127.1.2.3', '::1', 'localhost']) expect(exposesBeyondLoopback(host), host).to.equal(false);
    for (const host of ['0.0.0.0', '::', '192.168.1.5', 'example.org']) expect(exposesBeyondLoopback(host), host).to.equal(true);
  });
});

describe('ClientGate', () => {
  it('without keys admits everyone, known by address, owning every stream', () => {
    const client = gate([]).admit(request('poll'), peer());
    expect(client.id).to.equal('10.0.0.7');
    expect(client.owns('st_anything')).to.equal(true);
    expect(client.streamId('st_x')).to.equal('st_x');
  });

  it('with keys refuses requests without a valid key, except authenticate', () => {
    const g = gate([A]);
    expect(refusal(() => g.admit(request('poll'), peer()))).to.equal('UNAUTHORIZED');
    expect(refusal(() => g.admit(request('poll', { api_key: 'wrong' }), peer()))).to.equal('UNAUTHORIZED');
    expect(g.admit(request('authenticate'), peer()).owns('st_x')).to.equal(false);
    const client = g.admit(request('poll', { api_key: A }), peer());
    expect(client.id).to.match(/^key_/);
    expect(client.owns(client.streamId('st_x'))).to.equal(true);
  });

  it('a wrong api_key member is refused even on a connection that authenticated', () => {
    const g = gate([A]);
    const keys = new ApiKeys([A]);
    expect(refusal(() => g.admit(request('poll', { api_key: 'wrong' }), peer(keys.find(A))))).to.equal('UNAUTHORIZED');
  });

  it('charges attempts without a valid key to the address, so guessing is rate-limited', () => {
    const limits = new ClientLimits({ requestsPerSecond: 1, requestBurst: 2, maxStreams: 0, maxConnections: 0 }, () => 0);
    const g = gate([A], limits);
    expect(refusal(() => g.admit(request('poll', { api_key: 'guess-1' }), peer()))).to.equal('UNAUTHORIZED');
    expect(refusal(() => g.admit(request('poll', { api_key: 'guess-2' }), peer()))).to.equal('UNAUTHORIZED');
    expect(refusal(() => g.admit(request('poll', { api_key: 'guess-3' }), peer()))).to.equal('RATE_LIMITED');
  });

  it('header checks: a wrong key is refused; a missing one is refused on HTTP and allowed for a WebSocket handshake', () => {
    const g = gate([A]);
    expect(refusal(() => g.keyFromHeader(undefined, 'refuse'))).to.equal('UNAUTHORIZED');
    expect(refusal(() => g.keyFromHeader('Bearer wrong', 'allow'))).to.equal('UNAUTHORIZED');
    expect(g.keyFromHeader(undefined, 'allow')).to.equal(undefined);
    expect(g.keyFromHeader(`Bearer ${A}`, 'refuse')?.id).to.match(/^key_/);
    expect(gate([]).keyFromHeader('Bearer whatever', 'refuse')).to.equal(undefined);
  });
});
