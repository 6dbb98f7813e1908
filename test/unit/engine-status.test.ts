import { expect } from 'chai';
import type { Engine, EngineStatus } from '../../src/engine/types.js';
import type { MethodContext } from '../../src/jsonrpc/dispatcher.js';
import { engineStatusMethod } from '../../src/methods/engine-status.js';

const failed: EngineStatus = {
  engine: 'rkllm',
  state: 'failed',
  model_path: '/models/secret/a.rkllm',
  restarts: 3,
  last_error: { message: 'restart 3 failed: /models/secret/a.rkllm does not exist', at: '2026-01-01T00:00:00.000Z' },
};

/** engine_status over an engine that reports `status`, as an admin or a user key calls it. */
async function call(status: EngineStatus, admin: boolean, fleet?: () => Promise<object>): Promise<unknown> {
  const [, method] = engineStatusMethod({ name: status.engine, status: () => status } as unknown as Engine, fleet);
  const ctx = { client: { admin } } as unknown as MethodContext;
  return method.handler({} as never, ctx);
}

describe('engine_status', () => {
  it("reports the engine's own status to an admin key, whole", async () => {
    expect(await call(failed, true)).to.deep.equal(failed);
  });

  it("shows a user key the model's file name and when the runtime failed, not where it lives nor why", async () => {
    expect(await call(failed, false)).to.deep.equal({
      engine: 'rkllm',
      state: 'failed',
      restarts: 3,
      model_path: 'a.rkllm',
      last_error: { message: 'the runtime failed (an admin key sees why)', at: '2026-01-01T00:00:00.000Z' },
    });
  });

  it('adds the fleet when there is one', async () => {
    expect(await call({ ...failed, state: 'ready', last_error: null }, true, async () => ({ instances: 2 })))
      .to.include({
        state: 'ready',
      })
      .and.to.deep.include({ fleet: { instances: 2 } });
  });
});
