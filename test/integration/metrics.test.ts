// GET /metrics after real traffic: every metric moves as the traffic says it should.
import { expect } from 'chai';
import { liveFixture } from '../helpers/fixture.js';
import { greedy } from '../helpers/prompts.js';
import { TINY_MODEL_PROMPTS } from '../../src/gguf/builtin.js';

type Samples = Map<string, number>;

/** Scrapes and parses the text format: `name{labels} value` by its series. */
async function scrape(url: string): Promise<Samples> {
  const res = await fetch(`${url}metrics`);
  expect(res.headers.get('content-type')).to.match(/^text\/plain; version=0\.0\.4/);
  const samples: Samples = new Map();
  for (const line of (await res.text()).split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    samples.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return samples;
}

/** How much each series grew between two scrapes (0 for series absent from both). */
function growth(before: Samples, after: Samples): (series: string) => number {
  return (series) => (after.get(series) ?? 0) - (before.get(series) ?? 0);
}

describe('GET /metrics', function () {
  this.timeout(120_000);
  const fixture = liveFixture({ settings: { engine: { parallel: 1, max_context_len: 8192 } } });

  it('serves every metric the issue lists, in the Prometheus text format', async () => {
    const samples = await scrape(fixture.server.url);
    for (const name of [
      'rkllm_streams_active',
      'rkllm_streams_queued',
      'rkllm_tokens_generated_total',
      'rkllm_time_to_first_token_seconds_count',
      'rkllm_inter_token_delay_seconds_count',
      'rkllm_queue_wait_seconds_count',
      'rkllm_buffer_bytes',
      'rkllm_connections{transport="tcp"}',
      'process_cpu_seconds_total',
    ]) {
      expect(samples.has(name), name).to.equal(true);
    }
  });

  it('a stream polled to its end moves tokens, time to first token, inter-token delays, queue wait, poll latency and buffer bytes', async () => {
    const { url } = fixture.server;
    const before = await scrape(url);
    const { stream_id } = await fixture.http.start({ prompt_input: 'The Queen said', max_new_tokens: 30, ...greedy });
    await fixture.server.streams.untilChunks(stream_id, 1);
    expect((await scrape(url)).get('rkllm_buffer_bytes'), 'the unpolled stream holds bytes').to.be.greaterThan(0);
    const drained = await fixture.http.drain(stream_id);
    const grew = growth(before, await scrape(url));
    const tokens = drained.last.seq;
    expect(grew('rkllm_tokens_generated_total')).to.equal(tokens);
    expect(grew('rkllm_time_to_first_token_seconds_count')).to.equal(1);
    expect(grew('rkllm_inter_token_delay_seconds_count')).to.equal(tokens - 1);
    expect(grew('rkllm_queue_wait_seconds_count')).to.equal(1);
    expect(grew('rkllm_streams_ended_total{finish_reason="length"}')).to.equal(1);
    expect(grew('rkllm_request_duration_seconds_count{method="poll",transport="http"}')).to.equal(drained.polls);
    expect(grew('rkllm_request_duration_seconds_count{method="rkllm_run_async",transport="http"}')).to.equal(1);
    expect((await scrape(url)).get('rkllm_buffer_bytes'), 'released once the final chunk is acknowledged').to.equal(0);
  });

  it('streams active and queued follow the scheduler', async () => {
    const { url } = fixture.server;
    const long = { prompt_input: TINY_MODEL_PROMPTS.long, max_new_tokens: 8000, ...greedy };
    const first = await fixture.http.start(long);
    const second = await fixture.http.start(long);
    const samples = await scrape(url);
    expect(samples.get('rkllm_streams_active')).to.equal(1);
    expect(samples.get('rkllm_streams_queued')).to.equal(1);
    for (const { stream_id } of [second, first]) await fixture.http.result('rkllm_abort', { stream_id });
    await fixture.http.drain(first.stream_id);
    await fixture.http.drain(second.stream_id);
    const after = await scrape(url);
    expect([after.get('rkllm_streams_active'), after.get('rkllm_streams_queued')]).to.deep.equal([0, 0]);
  });

  it('connections by transport', async () => {
    await fixture.open('tcp');
    await fixture.open('ws');
    await fixture.open('ws');
    const samples = await scrape(fixture.server.url);
    expect(samples.get('rkllm_connections{transport="tcp"}')).to.equal(1);
    expect(samples.get('rkllm_connections{transport="ws"}')).to.equal(2);
    expect(samples.get('rkllm_connections{transport="udp"}')).to.equal(0);
    expect(samples.get('rkllm_connections{transport="http"}')).to.be.at.least(1);
  });

  it('errors by code, and unknown methods under one label', async () => {
    const { url } = fixture.server;
    const before = await scrape(url);
    await fixture.http.call('poll', { stream_id: 'st_nothing_here' });
    await fixture.http.call('poll', { stream_id: 'st_nothing_here_either' });
    await fixture.http.call('no_such_method_1', {});
    await fixture.http.call('no_such_method_2', {});
    await fixture.http.raw('{ not json');
    const tcp = await fixture.open('tcp');
    await tcp.call('rkllm_run_async', { prompt_input: 'x', max_new_tokens: 1_000_000 });
    const grew = growth(before, await scrape(url));
    expect(grew('rkllm_errors_total{code="-32001",name="STREAM_NOT_FOUND"}')).to.equal(2);
    expect(grew('rkllm_errors_total{code="-32601",name="METHOD_NOT_FOUND"}')).to.equal(2);
    expect(grew('rkllm_errors_total{code="-32700",name="PARSE_ERROR"}')).to.equal(1);
    expect(grew('rkllm_errors_total{code="-32602",name="INVALID_PARAMS"}')).to.equal(1);
    expect(grew('rkllm_request_duration_seconds_count{method="unknown",transport="http"}')).to.equal(2);
  });
});
