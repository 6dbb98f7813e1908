/**
 * The engine contract, as one suite that every engine must pass. `factory` returns an
 * initialised engine serving the built-in tiny model (or a runtime that behaves like it).
 */
import { expect } from 'chai';
import { TINY_MODEL_PROMPTS } from '../../src/gguf/builtin.js';
import { ServerError } from '../../src/errors.js';
import { LLMCallState, type Engine, type LLMCallState as State, type RKLLMResult, type RunRequest } from '../../src/engine/types.js';

interface Recorded {
  states: State[];
  texts: string[];
  results: RKLLMResult[];
}

function recorder(stopAfter?: number): { record: Recorded; callback: (r: RKLLMResult, s: State) => number } {
  const record: Recorded = { states: [], texts: [], results: [] };
  return {
    record,
    callback: (result, state) => {
      record.states.push(state);
      record.results.push(result);
      if (state === LLMCallState.RKLLM_RUN_NORMAL) record.texts.push(result.text);
      return stopAfter !== undefined && record.texts.length >= stopAfter ? 1 : 0;
    },
  };
}

export function request(prompt: string, maxNew: number, extra: Partial<RunRequest> = {}): RunRequest {
  return {
    input: { role: 'user', enable_thinking: false, input_type: 0, prompt_input: prompt },
    infer: { mode: 0, keep_history: 0, max_new_tokens: maxNew, sampling_params: { top_k: 1, temperature: 0, repeat_penalty: 1 } },
    ...extra,
  };
}

/** The prompts the suite runs, each with the greedy behaviour `TINY_MODEL_PROMPTS` documents. */
export type SuitePrompts = Record<keyof typeof TINY_MODEL_PROMPTS, string>;

/** What differs between engines: the model's prompts, and whether the engine can count tokens ahead. */
export interface SuiteOptions {
  prompts: SuitePrompts;
  /**
   * Whether `validate` refuses an input longer than the context. An engine that cannot tokenize
   * (the RKLLM runtime has no tokenizer API) must instead end such a run with an error.
   */
  validatesContext: boolean;
}

export function engineSuite(name: string, factory: () => Promise<Engine>, options: Partial<SuiteOptions> = {}): void {
  const { prompts, validatesContext }: SuiteOptions = { prompts: TINY_MODEL_PROMPTS, validatesContext: true, ...options };
  describe(`engine contract: ${name}`, function () {
    this.timeout(60_000);
    let engine: Engine;

    before(async () => {
      engine = await factory();
    });

    after(async () => {
      await engine.dispose();
    });

    it('run calls back once per token, then exactly once with FINISH, and resolves with perf', async () => {
      const { record, callback } = recorder();
      const outcome = await engine.run(request(prompts.long, 50), callback);
      expect(outcome.finish_reason).to.equal('length');
      expect(record.states.at(-1)).to.equal(LLMCallState.RKLLM_RUN_FINISH);
      expect(record.states.filter((s) => s === LLMCallState.RKLLM_RUN_FINISH)).to.have.lengthOf(1);
      expect(record.states.slice(0, -1).every((s) => s === LLMCallState.RKLLM_RUN_NORMAL || s === LLMCallState.RKLLM_RUN_WAITING)).to.equal(
        true,
      );
      expect(outcome.perf.generate_tokens).to.equal(50);
      expect(record.states.length - 1).to.equal(50);
      expect(outcome.perf.prefill_tokens).to.be.greaterThan(0);
      expect(record.texts.join('')).to.have.length.greaterThan(10);
    });

    it('greedy runs are reproducible', async () => {
      const a = recorder();
      const b = recorder();
      await engine.run(request('The Queen said', 80), a.callback);
      await engine.run(request('The Queen said', 80), b.callback);
      expect(b.record.texts.join('')).to.equal(a.record.texts.join(''));
    });

    it('ends with "stop" at end of sequence', async () => {
      const outcome = await engine.run(request(prompts.endsWithEos, 500), () => 0);
      expect(outcome.finish_reason).to.equal('stop');
      expect(outcome.perf.generate_tokens).to.be.below(500);
    });

    it('holds a split UTF-8 character back (WAITING) and delivers it whole', async () => {
      const { record, callback } = recorder();
      await engine.run(request(prompts.multiByte, 100), callback);
      expect(record.states).to.include(LLMCallState.RKLLM_RUN_WAITING);
      const text = record.texts.join('');
      expect(text).to.match(/[^\p{ASCII}]/u);
      for (const piece of record.texts) {
        expect(piece).not.to.include('\uFFFD');
        expect(Buffer.from(piece, 'utf8').toString('utf8')).to.equal(piece);
      }
    });

    it('a run that ends inside a multi-byte character (its limit, or a stop) delivers no part of it', async () => {
      const full = recorder();
      await engine.run(request(prompts.multiByte, 100), full.callback);
      const split = full.record.states.indexOf(LLMCallState.RKLLM_RUN_WAITING);
      expect(split).to.be.at.least(0);
      const limited = recorder();
      await engine.run(request(prompts.multiByte, split + 1), limited.callback);
      const stopped: string[] = [];
      await engine.run(request(prompts.multiByte, 100), (result, state) => {
        if (state === LLMCallState.RKLLM_RUN_NORMAL) stopped.push(result.text);
        return state === LLMCallState.RKLLM_RUN_WAITING ? 1 : 0;
      });
      for (const text of [limited.record.texts.join(''), stopped.join('')]) {
        expect(text).not.to.include('\uFFFD');
        expect(full.record.texts.join('').startsWith(text)).to.equal(true);
      }
    });

    it('runAsync returns at once; isRunning is true until the run ends', async () => {
      const handle = engine.runAsync(request(prompts.long, 400), () => 0);
      expect(engine.isRunning()).to.equal(true);
      const outcome = await handle.done;
      expect(outcome.finish_reason).to.equal('length');
      expect(engine.isRunning()).to.equal(false);
    });

    it('abort stops every running generation', async () => {
      let first!: () => void;
      const started = new Promise<void>((resolve) => (first = resolve));
      const handle = engine.runAsync(request(prompts.long, 2000), () => {
        first();
        return 0;
      });
      await started;
      engine.abort();
      const outcome = await handle.done;
      expect(outcome.finish_reason).to.equal('abort');
      expect(outcome.perf.generate_tokens).to.be.below(2000);
    });

    it("a run's own signal aborts only that run", async () => {
      const controller = new AbortController();
      const a = engine.runAsync(request(prompts.long, 2000, { signal: controller.signal }), () => 0);
      controller.abort();
      expect((await a.done).finish_reason).to.equal('abort');
    });

    it('a non-zero callback return stops the run', async () => {
      const { record, callback } = recorder(5);
      const outcome = await engine.run(request(prompts.long, 200), callback);
      expect(outcome.finish_reason).to.equal('abort');
      expect(record.texts).to.have.lengthOf(5);
    });

    const tooLong = (): RunRequest => request('word '.repeat(engine.param.max_context_len), 10);
    if (validatesContext) {
      it('validate refuses a prompt longer than the context, with -32602', async () => {
        const error = await engine.validate(tooLong()).then(
          () => undefined,
          (err: unknown) => err,
        );
        expect(error).to.be.instanceOf(ServerError).with.property('name', 'INVALID_PARAMS');
      });
    } else {
      it('a run whose prompt is longer than the context ends with an error, and the engine keeps serving', async () => {
        const { record, callback } = recorder();
        const outcome = await engine.run(tooLong(), callback);
        expect(outcome.finish_reason).to.equal('error');
        expect(outcome.error).to.match(/context/);
        expect(record.states).to.deep.equal([LLMCallState.RKLLM_RUN_ERROR]);
        expect((await engine.run(request(prompts.long, 5), () => 0)).finish_reason).to.equal('length');
      });
    }

    it('reports itself ready with its model; dispose twice, then Symbol.asyncDispose: each resolves, and it holds no model', async () => {
      expect(engine.status()).to.include({ engine: engine.name, state: 'ready', model_path: engine.param.model_path });
      await engine.dispose();
      await engine.dispose();
      await engine[Symbol.asyncDispose]();
      expect(() => engine.param)
        .to.throw(ServerError)
        .with.property('name', 'ENGINE_UNAVAILABLE');
      expect(engine.status()).to.include({ state: 'unloaded', model_path: null });
    });
  });
}
