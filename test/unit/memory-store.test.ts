// The in-memory buffer store passes the shared store suite.
import { MemoryBufferStore } from '../../src/streams/memory-store.js';
import { storeSuite } from './store-suite.js';

describe('MemoryBufferStore', () => {
  storeSuite(async (limits, now) => {
    const store = new MemoryBufferStore({ limits, now });
    return { store, close: () => store.close() };
  });
});
