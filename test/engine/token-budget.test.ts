import { expect } from 'chai';
import { tokenBudget } from '../../src/engine/token-budget.js';

describe('tokenBudget (the max_new_tokens rule of both engines)', () => {
  it("takes the run's own value when it is above 0", () => {
    expect(tokenBudget(7, 100)).to.deep.equal({ requested: 7, max: 7 });
    expect(tokenBudget(7, -1)).to.deep.equal({ requested: 7, max: 7 });
  });

  it("falls back to rkllm_init's value when the run gives none", () => {
    expect(tokenBudget(undefined, 100)).to.deep.equal({ requested: null, max: 100 });
  });

  it("lets a run's -1 or 0 fill the context, whatever rkllm_init says", () => {
    for (const own of [-1, 0]) expect(tokenBudget(own, 100)).to.deep.equal({ requested: null, max: null });
  });

  it('is unbounded (until the context is full) when neither gives a value above 0', () => {
    for (const init of [-1, 0]) expect(tokenBudget(undefined, init)).to.deep.equal({ requested: null, max: null });
    expect(tokenBudget(-1, -1)).to.deep.equal({ requested: null, max: null });
  });
});
