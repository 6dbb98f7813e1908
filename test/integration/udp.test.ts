// UDP: replies to the sender, one chunk per datagram, gaps repaired with poll, a datagram limit.
import { expect } from 'chai';
import { TINY_MODEL_PROMPTS } from '../../src/gguf/builtin.js';
import { liveFixture } from '../helpers/fixture.js';
import { UdpRpc, type LiveChunk } from '../helpers/live-rpc.js';
import { greedy } from '../helpers/prompts.js';

const LIMIT = 2048;

describe('UDP', function () {
  this.timeout(120_000);
  const fixture = liveFixture({ settings: { udp: { max_datagram_bytes: LIMIT } } });
  const open = async (): Promise<UdpRpc> => fixture.track(await fixture.server.udp());

  it('a client detects lost chunks from gaps in seq and repairs them with poll and after_seq', async () => {
    const params = { prompt_input: TINY_MODEL_PROMPTS.long, max_new_tokens: 300, ...greedy };
    const expected = (await fixture.http.result('rkllm_run', params)).text as string;
    const client = await open();
    const lost = new Set<number>();
    // Lose seq 10 to 19 and every 37th chunk, as a bad network would.
    client.drop = (message) => {
      const seq = (message.result?.chunk as LiveChunk | undefined)?.seq;
      if (seq === undefined || !((seq >= 10 && seq < 20) || seq % 37 === 0)) return false;
      lost.add(seq);
      return true;
    };
    const drained = await client.stream(params);
    expect(lost.size).to.be.greaterThan(10);
    expect(drained.repairs).to.be.greaterThan(0);
    expect(drained.chunks.map((c) => c.seq)).to.not.include.members([...lost]);
    expect(drained.text).to.equal(expected);
    expect(drained.last.finish_reason).to.equal('length');
  });

  it('sends every chunk in its own datagram, to the address it came from', async () => {
    const [a, b] = [await open(), await open()];
    // Its greedy text is ASCII: every token is a chunk of its own (a split UTF-8 character would be one chunk).
    const params = { prompt_input: 'Once upon a time', max_new_tokens: 50, ...greedy };
    // Both clients use the same request id: each receives only its own stream.
    const [da, db] = await Promise.all([a.stream(params, 7), b.stream(params, 7)]);
    expect(da.last.stream_id).to.not.equal(db.last.stream_id);
    for (const d of [da, db]) expect(new Set(d.chunks.map((c) => c.stream_id)).size).to.equal(1);
    expect(da.text).to.equal(db.text);
    expect(da.chunks.length).to.equal(51);
  });

  it('answers a datagram over the limit with an error that names the limit', async () => {
    const client = await open();
    client.sendRaw(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'rkllm_is_running', params: {}, pad: 'x'.repeat(LIMIT) }));
    const res = await client.next(null);
    expect(res.error!.code).to.equal(-32600);
    expect(res.error!.message).to.include(`over the limit of ${LIMIT} bytes (setting udp.max_datagram_bytes)`);
    // A reply that would not fit in a datagram becomes an error for that request, naming the limit.
    const big = await client.call('rkllm_list_functions', {});
    expect(big.error!.code).to.equal(-32600);
    expect(big.error!.message).to.match(new RegExp(`datagram limit of ${LIMIT} bytes \\(setting udp.max_datagram_bytes\\)`));
  });

  it('answers a datagram that is not JSON with -32700 and goes on serving', async () => {
    const client = await open();
    client.sendRaw(Buffer.from([0xff, 0xfe, 0x00, 0x7b, 0x0a]));
    expect((await client.next(null)).error!.code).to.equal(-32700);
    client.sendRaw('{"jsonrpc":"2.0","id":');
    expect((await client.next(null)).error!.code).to.equal(-32700);
    expect(await client.result('rkllm_is_running', {})).to.deep.equal({ running: false, active: 0, queued: 0 });
  });
});
