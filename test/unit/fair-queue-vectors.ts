// The fair-queue rule's test vectors, shared by the two places the rule is written: in process
// (src/streams/scheduler.ts, run by scheduler.test.ts) and inside Redis for the fleet's shared
// queue (ENQUEUE and CLAIM in src/streams/fleet/scripts.ts, run by redis-store.test.ts).

/**
 * Events for one slot: a run arrives for a client ('A1' is a run of client A), or the run holding
 * the slot ends ('-'). `served` is the order in which the runs get the slot.
 */
export interface FairQueueVector {
  name: string;
  events: string[];
  served: string[];
}

export const FAIR_QUEUE_VECTORS: FairQueueVector[] = [
  {
    name: 'a newcomer is served at the next free slot, before the runs another client queued first',
    events: ['A0', 'A1', 'A2', 'A3', 'B1', '-', '-', '-', '-'],
    served: ['A0', 'B1', 'A1', 'A2', 'A3'],
  },
  {
    name: 'two clients with many runs take turns, each in its own order (a tie goes to the earlier)',
    events: ['A0', 'A1', 'A2', 'A3', 'B1', 'B2', 'B3', '-', '-', '-', '-', '-', '-'],
    served: ['A0', 'B1', 'A1', 'B2', 'A2', 'B3', 'A3'],
  },
  {
    name: 'a run arriving later starts from the turn in service, not from zero',
    events: ['A0', 'A1', '-', 'B1', 'A2', '-', '-', '-'],
    served: ['A0', 'A1', 'B1', 'A2'],
  },
];
