// Bursts of `parallel` requests on `parallel` slots: every stream starts at once, none waits for another's whole answer.
import { expect } from 'chai';
import { TINY_MODEL_PROMPTS } from '../../src/gguf/builtin.js';
import { liveFixture } from '../helpers/fixture.js';
import type { LiveChunk, LiveRpc } from '../helpers/live-rpc.js';
import { greedy } from '../helpers/prompts.js';

const SLOTS = 8;
const TOKENS = 400;

/** Each stream's first and final chunk, in arrival order. */
class Arrivals {
  readonly events: Array<{ client: number; kind: 'first' | 'end' }> = [];
  #firstSeen = new Set<number>();
  #waiters = new Set<() => void>();

  watch(client: LiveRpc, i: number): void {
    client.onMessage = (message) => {
      const chunk = (message.result as { chunk?: LiveChunk } | undefined)?.chunk;
      if (!chunk) return;
      if (!this.#firstSeen.has(i)) {
        this.#firstSeen.add(i);
        this.events.push({ client: i, kind: 'first' });
      }
      if (chunk.end) this.events.push({ client: i, kind: 'end' });
      for (const waiter of [...this.#waiters]) waiter();
    };
  }

  /** Resolves once the clients in `which` have all received a first chunk. */
  untilFirst(which: number[]): Promise<void> {
    return new Promise((resolve) => {
      const check = (): void => {
        if (!which.every((i) => this.#firstSeen.has(i))) return;
        this.#waiters.delete(check);
        resolve();
      };
      this.#waiters.add(check);
      check();
    });
  }

  /** Fails unless every client's first chunk came before any client's final chunk. */
  expectAllStartedBeforeAnyEnded(what: string): void {
    const firsts = this.events.filter((e) => e.kind === 'first');
    expect(firsts, `${what}: a first chunk per stream`).to.have.length(SLOTS);
    const lastFirst = this.events.indexOf(firsts.at(-1)!);
    const firstEnd = this.events.findIndex((e) => e.kind === 'end');
    expect(lastFirst, `${what}: every first chunk before the first end; arrivals: ${JSON.stringify(this.events)}`).to.be.lessThan(firstEnd);
  }
}

function start(client: LiveRpc): string | number | null {
  return client.send('rkllm_run_async', { prompt_input: TINY_MODEL_PROMPTS.long, max_new_tokens: TOKENS, ...greedy });
}

async function finish(clients: LiveRpc[], ids: Array<string | number | null>): Promise<void> {
  const drained = await Promise.all(clients.map((client, i) => client.collect(ids[i]!, 120_000)));
  for (const d of drained) expect(d.last.finish_reason).to.equal('length');
}

for (const transport of ['tcp', 'ws'] as const) {
  describe(`Bursts of ${SLOTS} requests on ${SLOTS} slots (${transport})`, function () {
    this.timeout(240_000);
    const fixture = liveFixture({ settings: { engine: { parallel: SLOTS } } });

    it('sent at once: every stream gets its first chunk before any stream ends, in each of 3 rounds', async () => {
      const clients = await Promise.all(Array.from({ length: SLOTS }, () => fixture.open(transport)));
      for (let round = 0; round < 3; round++) {
        const arrivals = new Arrivals();
        clients.forEach((client, i) => arrivals.watch(client, i));
        await finish(clients, clients.map(start));
        arrivals.expectAllStartedBeforeAnyEnded(`round ${round}`);
      }
    });

    it('arriving while others already generate (slots that hold old tokens): the late half starts before the early half ends', async () => {
      const clients = await Promise.all(Array.from({ length: SLOTS }, () => fixture.open(transport)));
      // Every slot now holds the tokens of an earlier answer, which a new run must erase first.
      await finish(clients, clients.map(start));
      const arrivals = new Arrivals();
      clients.forEach((client, i) => arrivals.watch(client, i));
      const half = SLOTS / 2;
      const early = clients.slice(0, half).map(start);
      await arrivals.untilFirst([...Array(half).keys()]);
      const late = clients.slice(half).map(start);
      await finish(clients, [...early, ...late]);
      arrivals.expectAllStartedBeforeAnyEnded('early half then late half');
    });
  });
}
