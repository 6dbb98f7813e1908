import { expect } from 'chai';
import { StopFilter } from '../../src/faces/text-filters.js';
import { LoadGate } from '../../src/load-gate.js';

/** Feeds `pieces` to a scanner; returns what it released, piece by piece, then the flush. */
function scan(stops: string[], pieces: string[]): { released: string[]; stopped: boolean } {
  const scanner = new StopFilter(stops);
  const released = pieces.map((p) => scanner.push(p));
  if (!scanner.stopped) released.push(scanner.flush());
  return { released, stopped: scanner.stopped };
}

describe('StopFilter, as MCP uses it', () => {
  it('releases everything at once when no stop sequence can begin', () => {
    expect(scan(['END'], ['abc', 'def'])).to.deep.equal({ released: ['abc', 'def', ''], stopped: false });
  });

  it('holds back what may begin a stop sequence, and cuts before it, across pieces', () => {
    expect(scan(['END'], ['abcE', 'N', 'Dxyz'])).to.deep.equal({ released: ['abc', '', ''], stopped: true });
  });

  it('releases held text once it turns out not to be a stop sequence, and on flush', () => {
    expect(scan(['END'], ['abE', 'Nx', 'yE'])).to.deep.equal({ released: ['ab', 'ENx', 'y', 'E'], stopped: false });
  });

  it('cuts at the earliest of several stop sequences', () => {
    const { released } = scan(['\n\n', 'Bob:'], ['Hi Bob: there\n\nmore']);
    expect(released.join('')).to.equal('Hi ');
  });
});

describe('LoadGate', () => {
  it('hands the value to waiters once open, and at once afterwards', async () => {
    const gate = new LoadGate<number>(60_000);
    const waiting = gate.wait();
    gate.open(7);
    expect(await waiting).to.equal(7);
    expect(await gate.wait()).to.equal(7);
  });

  it('refuses with ENGINE_UNAVAILABLE at once with a wait of 0, when the signal aborts, and when the load fails', async () => {
    const refused = (p: Promise<unknown>): Promise<unknown> =>
      p.then(
        () => 'resolved',
        (err: Error) => err.name,
      );
    expect(await refused(new LoadGate(0).wait())).to.equal('ENGINE_UNAVAILABLE');
    const gate = new LoadGate(60_000);
    const abort = new AbortController();
    const waiting = refused(gate.wait(abort.signal));
    abort.abort();
    expect(await waiting).to.equal('ENGINE_UNAVAILABLE');
    const failing = refused(gate.wait());
    gate.fail();
    expect(await failing).to.equal('ENGINE_UNAVAILABLE');
  });
});
