// The drain sequence of a graceful shutdown, against a stand-in server.
import { expect } from 'chai';
import { pino } from 'pino';
import { drain, type Drainable } from '../../src/shutdown.js';

const log = pino({ level: 'silent' });

/**
 * A stand-in whose pending work is set by the test (or by `onLook`, called with the number of each
 * look at it); records the calls made to it, and resolves `streamsEnded` when it is told to end them.
 */
function server(
  pending: { streams: number; buffers: number },
  onLook: (looks: number) => void = () => {},
): Drainable & { calls: string[]; streamsEnded: Promise<void> } {
  const calls: string[] = [];
  let looks = 0;
  let ended!: () => void;
  const streamsEnded = new Promise<void>((resolve) => (ended = resolve));
  return {
    calls,
    streamsEnded,
    stopAccepting: () => calls.push('stopAccepting'),
    pending: async () => {
      onLook(++looks);
      return { ...pending };
    },
    endStreams: async () => {
      calls.push('endStreams');
      pending.streams = 0;
      ended();
    },
    close: async () => void calls.push('close'),
  };
}

describe('drain', () => {
  it('closes at once when nothing is pending', async () => {
    const s = server({ streams: 0, buffers: 0 });
    await drain(s, { drainMs: 60_000, finalPollMs: 60_000 }, log);
    expect(s.calls).to.deep.equal(['stopAccepting', 'close']);
  });

  it('closes as soon as the streams have finished and their buffers are read, without ending any', async () => {
    const pending = { streams: 2, buffers: 2 };
    // The streams finish before the second look, and their buffers are read before the third.
    const s = server(pending, (looks) => {
      if (looks === 2) pending.streams = 0;
      if (looks === 3) pending.buffers = 0;
    });
    await drain(s, { drainMs: 60_000, finalPollMs: 60_000 }, log);
    expect(s.calls).to.deep.equal(['stopAccepting', 'close']);
  });

  it('ends the streams still running at the drain timeout, then closes once their final chunks are read', async () => {
    const pending = { streams: 1, buffers: 1 };
    const s = server(pending);
    const draining = drain(s, { drainMs: 10, finalPollMs: 60_000 }, log);
    await s.streamsEnded;
    expect(s.calls).to.deep.equal(['stopAccepting', 'endStreams']);
    pending.buffers = 0;
    await draining;
    expect(s.calls).to.deep.equal(['stopAccepting', 'endStreams', 'close']);
  });

  it('closes after the final poll timeout even if nobody reads the final chunks', async () => {
    const s = server({ streams: 1, buffers: 1 });
    await drain(s, { drainMs: 0, finalPollMs: 10 }, log);
    expect(s.calls).to.deep.equal(['stopAccepting', 'endStreams', 'close']);
  });

  it('with a shared store, buffers outlive the process: only its streams are waited for', async () => {
    const s = server({ streams: 0, buffers: 5 });
    await drain(s, { drainMs: 60_000, finalPollMs: 60_000 }, log, true);
    expect(s.calls).to.deep.equal(['stopAccepting', 'close']);
  });
});
