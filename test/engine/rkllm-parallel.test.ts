/**
 * Parallel slots on the RKLLM engine (`instances`, engine.parallel): N runtime instances of the
 * model, a worker each, on the ABI twin slowed down per token ("[slow:US]"). Runs overlap, each
 * with its own text; a crash ends only its instance's run; kept conversations stay on their
 * instance; changes reach every instance. Ordering is asserted, never speed (the bench measures it).
 */
import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { LAYOUT_VERSIONS } from '../../src/engine/rkllm/abi.js';
import { RkllmEngine } from '../../src/engine/rkllm/rkllm-engine.js';
import { LLMCallState, createDefaultParam, type RunOutcome, type RunRequest } from '../../src/engine/types.js';
import { TWIN_MODELS, buildTwin, modelOfMostMemory } from '../helpers/rkllm-twin.js';

const TOKENS = 12;

function request(prompt: string, options: { keep?: boolean; owner?: string } = {}): RunRequest {
  return {
    input: { role: 'user', enable_thinking: false, input_type: 0, prompt_input: prompt },
    infer: { mode: 0, keep_history: options.keep ? 1 : 0, max_new_tokens: TOKENS },
    ...(options.owner === undefined ? {} : { owner: options.owner }),
  };
}

/** Runs `prompts` at once, recording when each delivered its first token and when each ended. */
async function together(engine: RkllmEngine, prompts: string[]): Promise<{ events: string[]; texts: string[]; outcomes: RunOutcome[] }> {
  const events: string[] = [];
  const texts = prompts.map(() => '');
  const outcomes = await Promise.all(
    prompts.map(async (prompt, i) => {
      const outcome = await engine.run(request(prompt), (result, state) => {
        if (state !== LLMCallState.RKLLM_RUN_NORMAL) return 0;
        if (texts[i] === '') events.push(`start ${i}`);
        texts[i] += result.text;
        return 0;
      });
      events.push(`end ${i}`);
      return outcome;
    }),
  );
  return { events, texts, outcomes };
}

function pids(engine: RkllmEngine): Array<number | null> {
  const instances = engine.status().runtime?.instances as Array<{ pid: number | null }>;
  return instances.map((i) => i.pid);
}

for (const layout of LAYOUT_VERSIONS) {
  describe(`RKLLM engine with 3 instances (ABI twin ${layout})`, function () {
    this.timeout(60_000);
    let engine: RkllmEngine | undefined;

    afterEach(async () => {
      await engine?.dispose();
      engine = undefined;
    });

    async function start(model: string = TWIN_MODELS.story): Promise<RkllmEngine> {
      const restart = { initialDelayMs: 50, maxDelayMs: 200, maxAttempts: 3 };
      engine = await RkllmEngine.load(
        { library: await buildTwin(layout), layout, restart, instances: 3 },
        { ...createDefaultParam(), model_path: model, max_context_len: 512 },
      );
      return engine;
    }

    it('three runs go to three instances and overlap: all start before any ends, each with its own text', async () => {
      const e = await start();
      expect(e.slots).to.equal(3);
      expect(new Set(pids(e)).size).to.equal(3);
      const prompts = ['A tale of ships [slow:30000]', 'A tale of trees [slow:30000]', 'A tale of stars [slow:30000]'];
      const { events, texts, outcomes } = await together(e, prompts);
      expect(events.slice(0, 3).every((event) => event.startsWith('start'))).to.equal(true, events.join(', '));
      expect(outcomes.map((o) => o.finish_reason)).to.deep.equal(['length', 'length', 'length']);
      expect(outcomes.map((o) => o.perf.generate_tokens)).to.deep.equal([TOKENS, TOKENS, TOKENS]);
      expect(new Set(texts).size).to.equal(3);
      // The same prompt alone gives the same text: each instance has its own callback state.
      const { texts: alone } = await together(e, [prompts[1]!]);
      expect(alone[0]).to.equal(texts[1]);
    });

    it("a crash in one instance ends only its run (-32006's text); the other two finish, and only it restarts", async () => {
      const e = await start();
      const before = pids(e);
      const prompts = ['Long one [slow:30000]', 'Crashing [crash:3] [slow:30000]', 'Long two [slow:30000]'];
      const { events, texts, outcomes } = await together(e, prompts);
      expect(outcomes[1]!.finish_reason).to.equal('error');
      expect(outcomes[1]!.error)
        .to.match(/killed by SIGSEGV/)
        .and.match(/instance \d; the others keep running/);
      expect(events.indexOf('end 1')).to.be.lessThan(events.indexOf('end 0'));
      expect(events.indexOf('end 1')).to.be.lessThan(events.indexOf('end 2'));
      for (const i of [0, 2]) {
        expect(outcomes[i]!.finish_reason).to.equal('length');
        expect(outcomes[i]!.perf.generate_tokens).to.equal(TOKENS);
        expect(texts[i]).to.not.equal('');
      }
      for (let i = 0; i < 200 && e.status().restarts < 1; i++) await sleep(25);
      const status = e.status();
      expect(status).to.include({ state: 'ready', restarts: 1 });
      const after = pids(e);
      expect(after.filter((pid, i) => pid === before[i])).to.have.lengthOf(2);
      const again = await together(
        e,
        prompts.map((p) => p.replace('[crash:3] ', '')),
      );
      expect(again.outcomes.map((o) => o.finish_reason)).to.deep.equal(['length', 'length', 'length']);
    });

    it('a kept conversation stays on its instance; KV cache sizes answer per instance and per owner; changes reach every instance', async () => {
      const e = await start(TWIN_MODELS.echo);
      await e.setChatTemplate({ system_prompt: 'Twins.', prompt_prefix: '<u>', prompt_postfix: '</u>' });
      const owners = ['a', 'b', 'c'];
      const echoes = await Promise.all(
        owners.map(async (owner) => {
          let text = '';
          await e.run(request(`hello ${owner}`, { keep: true, owner }), (result, state) => {
            if (state === LLMCallState.RKLLM_RUN_NORMAL) text += result.text;
            return 0;
          });
          return JSON.parse(text) as { chat_template: Record<string, unknown> };
        }),
      );
      for (const echo of echoes) expect(echo.chat_template).to.include({ system_prompt: 'Twins.', prompt_prefix: '<u>' });
      const all = (await e.getKvCacheSize()).cache_sizes;
      expect(all).to.have.lengthOf(3);
      expect(all.every((size) => size > 0)).to.equal(true);
      const slotOf = async (owner: string): Promise<number> => {
        const sizes = (await e.getKvCacheSize(owner)).cache_sizes;
        expect(sizes.filter((size) => size > 0)).to.have.lengthOf(1);
        return sizes.findIndex((size) => size > 0);
      };
      const slots = await Promise.all(owners.map(slotOf));
      expect(new Set(slots).size).to.equal(3);
      const held = (await e.getKvCacheSize()).cache_sizes[slots[1]!]!;
      await e.run(request('b again', { keep: true, owner: 'b' }), () => 0);
      expect(await slotOf('b')).to.equal(slots[1]);
      expect((await e.getKvCacheSize()).cache_sizes[slots[1]!]).to.be.greaterThan(held);
      await e.clearKvCache({ keep_system_prompt: false });
      expect((await e.getKvCacheSize()).cache_sizes).to.deep.equal([0, 0, 0]);
    });

    it('rkllm_clear_kv_cache positions go one per slot, instance after instance', async () => {
      const e = await start(TWIN_MODELS.echo);
      await e.clearKvCache({ keep_system_prompt: true, start_pos: [0, 1], end_pos: [0, 2] });
      // Three runs started together take instances 0, 1 and 2 in order; each echoes its last clear.
      const echoes = await Promise.all(
        [0, 1, 2].map(async (i) => {
          let text = '';
          await e.run(request(`which ${i}`), (result, state) => {
            if (state === LLMCallState.RKLLM_RUN_NORMAL) text += result.text;
            return 0;
          });
          return (JSON.parse(text) as { last_clear_kv_cache: unknown }).last_clear_kv_cache;
        }),
      );
      expect(echoes).to.deep.equal([
        { keep_system_prompt: 1, start_pos: [0], end_pos: [0] },
        { keep_system_prompt: 1, start_pos: [1], end_pos: [2] },
        null,
      ]);
      let error: unknown;
      await e
        .clearKvCache({ keep_system_prompt: true, start_pos: [0, 0, 0, 0], end_pos: [1, 1, 1, 1] })
        .catch((err: unknown) => (error = err));
      expect(String(error)).to.match(/one position per batch slot \(at most 3: n_batch 1 for each of 3 instances\)/);
    });
  });
}

describe('RKLLM engine instances: bad settings and refusals', function () {
  this.timeout(30_000);

  it('a change one instance refuses is undone on those that took it: none is left half-set', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'rkllm-refuse-'));
    process.env.RKLLM_TWIN_REFUSE_SECOND = join(dir, 'taken');
    const engine = await RkllmEngine.load(
      { library: await buildTwin('1.3'), layout: '1.3', instances: 3 },
      { ...createDefaultParam(), model_path: TWIN_MODELS.echo, max_context_len: 512 },
    );
    try {
      await engine.setChatTemplate({ system_prompt: 'Old.', prompt_prefix: '<u>', prompt_postfix: '</u>' });
      const before = pids(engine);
      let error: unknown;
      await engine
        .setChatTemplate({ system_prompt: 'New [refuse-second]', prompt_prefix: '<n>', prompt_postfix: '</n>' })
        .catch((err: unknown) => (error = err));
      expect(String(error))
        .to.match(/rkllm_set_chat_template failed/)
        .and.match(/simulated refusal/);
      const after = pids(engine);
      expect(after[0]).to.not.equal(before[0]); // instance 0 took it: reloaded with its recorded template
      expect(after.slice(1)).to.deep.equal(before.slice(1));
      const templates = await Promise.all(
        [0, 1, 2].map(async (i) => {
          let text = '';
          await engine.run(request(`which ${i}`), (result, state) => {
            if (state === LLMCallState.RKLLM_RUN_NORMAL) text += result.text;
            return 0;
          });
          return (JSON.parse(text) as { chat_template: { system_prompt: string } }).chat_template.system_prompt;
        }),
      );
      expect(templates).to.deep.equal(['Old.', 'Old.', 'Old.']);
      expect(engine.status().state).to.equal('ready');
    } finally {
      delete process.env.RKLLM_TWIN_REFUSE_SECOND;
      await engine.dispose();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses 0 instances, and more instances than the available memory holds, before any runtime starts', async () => {
    const library = await buildTwin('1.3');
    const param = { ...createDefaultParam(), model_path: TWIN_MODELS.story, max_context_len: 512 };
    let error: unknown;
    await RkllmEngine.load({ library, layout: '1.3', instances: 0 }, param).catch((err: unknown) => (error = err));
    expect(String(error)).to.match(/engine.parallel must be an integer from 1 to 256 \(got 0\)/);
    const { path: big, remove } = modelOfMostMemory();
    try {
      error = undefined;
      await RkllmEngine.load({ library, layout: '1.3', instances: 3 }, { ...param, model_path: big }).catch(
        (err: unknown) => (error = err),
      );
      expect(String(error))
        .to.match(/the model does not fit 3 times in memory \(engine.parallel 3\)/)
        .and.match(/run at most 1 instance \(--parallel 1\)/);
    } finally {
      remove();
    }
  });
});
