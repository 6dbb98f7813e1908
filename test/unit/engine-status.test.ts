import { expect } from 'chai';
import { engineStatus } from '../../src/engine/status.js';
import type { Engine } from '../../src/engine/types.js';

describe('engineStatus', () => {
  it('reports an engine that supervises no runtime by whether it holds a model', () => {
    const loaded = { name: 'stub', param: { model_path: '/models/a.gguf' } } as unknown as Engine;
    expect(engineStatus(loaded)).to.deep.equal({
      engine: 'stub',
      state: 'ready',
      model_path: '/models/a.gguf',
      restarts: 0,
      last_error: null,
    });
    const empty = {
      name: 'stub',
      get param(): never {
        throw new Error('No model is loaded');
      },
    } as unknown as Engine;
    expect(engineStatus(empty)).to.include({ state: 'unloaded', model_path: null });
  });

  it("prefers the engine's own status", () => {
    const own = { engine: 'own', state: 'restarting', model_path: '/m', restarts: 2, last_error: null } as const;
    expect(engineStatus({ name: 'own', status: () => own } as unknown as Engine)).to.equal(own);
  });
});
