import { expect } from 'chai';
import { FOREVER, MAX_TIMER_MS, expiresAt, parseKeepAlive } from '../../src/models/keep-alive.js';

describe('keep_alive', () => {
  it('reads durations, numbers of seconds, 0 and negative values', () => {
    expect(parseKeepAlive('1h30m')).to.equal(5_400_000);
    expect(parseKeepAlive('250ms')).to.equal(250);
    expect(parseKeepAlive(30)).to.equal(30_000);
    expect(parseKeepAlive('0')).to.equal(0);
    expect(parseKeepAlive(-1)).to.equal(FOREVER);
    expect(parseKeepAlive('-5m')).to.equal(FOREVER);
    expect(parseKeepAlive('soon')).to.equal(undefined);
    expect(parseKeepAlive(Number.NaN)).to.equal(undefined);
  });

  it('keeps loaded for good what no timer can wait for ("1000h", 1e300), instead of a timer that fires at once', () => {
    expect(parseKeepAlive('1000h')).to.equal(FOREVER);
    expect(parseKeepAlive(1e300)).to.equal(FOREVER);
    expect(parseKeepAlive('1e300')).to.equal(undefined);
    expect(parseKeepAlive(MAX_TIMER_MS / 1000)).to.equal(MAX_TIMER_MS);
    expect(parseKeepAlive('596h')).to.equal(596 * 3_600_000);
    expect(parseKeepAlive('597h')).to.equal(FOREVER);
    expect(expiresAt(0, FOREVER)).to.equal('2318-01-01T00:00:00.000Z');
  });
});
