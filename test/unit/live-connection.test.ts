import { expect } from 'chai';
import { pino } from 'pino';
import type { JsonRpcResponse } from '../../src/jsonrpc/message.js';
import { LiveConnection, type ConnectionLimits, type Wire } from '../../src/transports/live-connection.js';
import type { MessageHandler } from '../../src/transports/transport.js';

const log = pino({ level: 'silent' });
const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** A wire that records what happens to it; `pendingBytes` is set by the test. */
class FakeWire implements Wire {
  written: unknown[] = [];
  pendingBytes = 0;
  paused = false;
  ended: string | undefined;
  write(text: string): void {
    this.written.push(JSON.parse(text));
  }
  pause(): void {
    this.paused = true;
  }
  resume(): void {
    this.paused = false;
  }
  end(reason?: { name: string }): void {
    this.ended = reason?.name ?? 'end';
  }
}

/** A handler whose answers the test releases one by one. */
function gatedHandler(): { handle: MessageHandler; started: string[]; release: () => void } {
  const started: string[] = [];
  const gates: Array<() => void> = [];
  const handle: MessageHandler = async (raw) => {
    const id = (JSON.parse(raw.toString()) as { id: string }).id;
    started.push(id);
    await new Promise<void>((resolve) => gates.push(resolve));
    const reply: JsonRpcResponse = { jsonrpc: '2.0', id, result: 'ok' };
    return reply;
  };
  return { handle, started, release: () => gates.shift()!() };
}

/** A clock whose timers run only when the test advances it. */
function manualClock(): { schedule: (callback: () => void, ms: number) => () => void; advance(ms: number): void } {
  let now = 0;
  const timers = new Set<{ at: number; callback: () => void }>();
  return {
    schedule: (callback, ms) => {
      const timer = { at: now + ms, callback };
      timers.add(timer);
      return () => void timers.delete(timer);
    },
    advance: (ms) => {
      now += ms;
      for (const timer of [...timers].filter((t) => t.at <= now)) {
        timers.delete(timer);
        timer.callback();
      }
    },
  };
}

function connection(
  wire: FakeWire,
  handle: MessageHandler,
  limits: Partial<ConnectionLimits> = {},
  schedule?: (callback: () => void, ms: number) => () => void,
): LiveConnection {
  return new LiveConnection({
    ...(schedule ? { schedule } : {}),
    id: 'test#1',
    transport: 'test',
    peer: { address: '127.0.0.1', key: undefined },
    wire,
    handle,
    log,
    limits: { maxSendBufferBytes: 100, maxInflight: 2, idleTimeoutMs: 0, ...limits },
  });
}

const message = (id: string): string => JSON.stringify({ jsonrpc: '2.0', id, method: 'm' });

describe('LiveConnection', () => {
  it('runs at most maxInflight requests at once and pauses reading while more wait', async () => {
    const wire = new FakeWire();
    const { handle, started, release } = gatedHandler();
    const conn = connection(wire, handle);
    for (const id of ['a', 'b', 'c']) conn.receive(message(id));
    expect(started).to.deep.equal(['a', 'b']);
    expect(wire.paused).to.equal(true);
    release();
    await tick();
    expect(started).to.deep.equal(['a', 'b', 'c']);
    expect(wire.paused).to.equal(false);
    release();
    release();
    await tick();
    expect(wire.written.map((m) => (m as { id: string }).id)).to.deep.equal(['a', 'b', 'c']);
  });

  it('reports a send past the cap, pauses reading, and resumes once the wire drains', () => {
    const wire = new FakeWire();
    const conn = connection(wire, gatedHandler().handle);
    expect(conn.send({ jsonrpc: '2.0', id: 1, result: 1 })).to.equal(true);
    wire.pendingBytes = 101;
    expect(conn.send({ jsonrpc: '2.0', id: 2, result: 2 })).to.equal(false);
    expect(wire.paused).to.equal(true);
    wire.pendingBytes = 0;
    conn.drained();
    expect(wire.paused).to.equal(false);
  });

  it('when the input ends, aborts, lets work in progress answer, and ends the wire once nothing is held', async () => {
    const wire = new FakeWire();
    const { handle, release } = gatedHandler();
    const conn = connection(wire, handle);
    conn.receive(message('a'));
    const unhold = conn.hold();
    conn.endInput();
    expect(conn.closed.aborted).to.equal(true);
    conn.receive(message('late'));
    release();
    await tick();
    expect(wire.written).to.have.lengthOf(1);
    expect(wire.ended).to.equal(undefined);
    conn.send({ jsonrpc: '2.0', id: 'final', result: 'chunk' });
    unhold();
    expect(wire.ended).to.equal('end');
    expect(wire.written).to.have.lengthOf(2);
  });

  it('closes when idle, with the reason, but never while something is held', () => {
    const wire = new FakeWire();
    const clock = manualClock();
    const conn = connection(wire, gatedHandler().handle, { idleTimeoutMs: 20 }, clock.schedule);
    const unhold = conn.hold();
    clock.advance(60);
    expect(wire.ended).to.equal(undefined);
    unhold();
    clock.advance(19);
    expect(wire.ended).to.equal(undefined);
    clock.advance(1);
    expect(wire.ended).to.equal('CONNECTION_IDLE');
    expect(wire.written).to.deep.equal([
      {
        jsonrpc: '2.0',
        id: null,
        error: {
          code: -32012,
          message:
            'Closing the connection: nothing was received and nothing was in progress for 0.02 s (setting connections.idle_timeout_s)',
          data: { idle_timeout_s: 0.02 },
        },
      },
    ]);
    expect(conn.closed.aborted).to.equal(true);
    expect(conn.send({ jsonrpc: '2.0', id: 1, result: 1 })).to.equal(false);
    expect(wire.written).to.have.lengthOf(1);
  });
});
