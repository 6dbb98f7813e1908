/**
 * Crash isolation of the RKLLM engine on the ABI twin: a segfault, an abort() or a hang inside the
 * runtime ends only its worker; the runs it served end with an error; the engine restarts the
 * worker with backoff, reloads the model and replays its configuration; status() shows it all.
 */
import { expect } from 'chai';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { RkllmEngine, type RkllmEngineOptions } from '../../src/engine/rkllm/rkllm-engine.js';
import {
  LLMCallState,
  createDefaultParam,
  type EngineStatus,
  type LLMCallState as State,
  type RunRequest,
} from '../../src/engine/types.js';
import { TWIN_MODELS, buildTwin } from '../helpers/rkllm-twin.js';

function request(prompt: string, maxNew = 50): RunRequest {
  return {
    input: { role: 'user', enable_thinking: false, input_type: 0, prompt_input: prompt },
    infer: { mode: 0, keep_history: 0, max_new_tokens: maxNew },
  };
}

/** Polls `status()` until `done` holds (at most 200 times, 25 ms apart). */
async function until(engine: RkllmEngine, done: (status: EngineStatus) => boolean): Promise<EngineStatus> {
  for (let i = 0; i < 200; i++) {
    const status = engine.status();
    if (done(status)) return status;
    await sleep(25);
  }
  throw new Error(`engine status never matched: ${JSON.stringify(engine.status())}`);
}

describe('RKLLM engine crash isolation (ABI twin 1.3)', function () {
  this.timeout(60_000);
  let library: string;
  let engine: RkllmEngine | undefined;

  before(async () => {
    library = await buildTwin('1.3');
  });

  afterEach(async () => {
    await engine?.dispose();
    engine = undefined;
  });

  async function start(model: string = TWIN_MODELS.story, options: Partial<RkllmEngineOptions> = {}): Promise<RkllmEngine> {
    const restart = { initialDelayMs: 50, maxDelayMs: 200, maxAttempts: 3 };
    engine = await RkllmEngine.load(
      { library, layout: '1.3', restart, ...options },
      { ...createDefaultParam(), model_path: model, max_context_len: 512 },
    );
    return engine;
  }

  it('a segfault mid-run ends that run with an error; the engine restarts, reloads and serves again', async () => {
    const e = await start();
    const firstPid = e.status().runtime?.pid;
    const states: State[] = [];
    const texts: string[] = [];
    const outcome = await e.run(request('crash soon [crash:4]'), (result, state) => {
      states.push(state);
      if (state === LLMCallState.RKLLM_RUN_NORMAL) texts.push(result.text);
      return 0;
    });
    expect(outcome.finish_reason).to.equal('error');
    expect(outcome.error)
      .to.match(/killed by SIGSEGV/)
      .and.match(/simulated fault/)
      .and.match(/restarts it/);
    expect(texts.length).to.be.within(1, 4);
    expect(states.at(-1)).to.equal(LLMCallState.RKLLM_RUN_ERROR);
    expect(states.filter((s) => s === LLMCallState.RKLLM_RUN_ERROR || s === LLMCallState.RKLLM_RUN_FINISH)).to.have.lengthOf(1);

    const crashed = e.status();
    expect(crashed.state).to.be.oneOf(['restarting', 'ready']);
    expect(crashed.last_error?.message).to.match(/SIGSEGV/);
    const ready = await until(e, (s) => s.state === 'ready');
    expect(ready.restarts).to.equal(1);
    expect(ready.runtime?.pid).to.be.a('number').and.not.equal(firstPid);
    expect((await e.run(request('after the crash', 5), () => 0)).finish_reason).to.equal('length');
  });

  it('abort() inside the runtime (SIGABRT) during rkllm_run_async is survived the same way', async () => {
    const e = await start();
    const outcome = await e.runAsync(request('abort soon [abort:2]'), () => 0).done;
    expect(outcome.finish_reason).to.equal('error');
    expect(outcome.error).to.match(/SIGABRT/);
    await until(e, (s) => s.state === 'ready' && s.restarts === 1);
  });

  it('runs waiting their turn are served once the runtime is back; the configuration is replayed', async () => {
    const e = await start(TWIN_MODELS.echo);
    await e.setChatTemplate({ system_prompt: 'kept', prompt_prefix: '<', prompt_postfix: '>' });
    await e.loadLora({ lora_adapter_path: TWIN_MODELS.story, lora_adapter_name: 'kept-adapter', scale: 0.5 });
    const crashing = e.run(request('[crash]'), () => 0);
    let echo = '';
    const waiting = e.run(request('after'), (result) => {
      echo += result.text;
      return 0;
    });
    expect((await crashing).finish_reason).to.equal('error');
    expect((await waiting).finish_reason).to.equal('stop');
    const replayed = JSON.parse(echo) as { chat_template: unknown; loras: unknown[] };
    expect(replayed.chat_template).to.deep.equal({ system_prompt: 'kept', prompt_prefix: '<', prompt_postfix: '>' });
    expect(replayed.loras).to.deep.equal([{ lora_adapter_path: TWIN_MODELS.story, lora_adapter_name: 'kept-adapter', scale: 0.5 }]);
    expect(e.status().restarts).to.equal(1);
    expect(e.loraAdapters(), 'what a fleet registration publishes').to.deep.equal(['kept-adapter']);
  });

  it('a run the runtime does not end after rkllm_abort is ended by stopping the worker', async () => {
    const e = await start(TWIN_MODELS.story, { timeouts: { abortMs: 300 } });
    let first!: () => void;
    const started = new Promise<void>((resolve) => (first = resolve));
    const run = e.runAsync(request('hang [hang:1]'), () => {
      first();
      return 0;
    });
    await started;
    e.abort();
    const outcome = await run.done;
    expect(outcome.finish_reason).to.equal('error');
    expect(outcome.error).to.match(/SIGKILL/);
    await until(e, (s) => s.state === 'ready' && s.restarts === 1);
  });

  it('dispose aborts a running generation before it frees the handle, and cancels a pending restart', async () => {
    const e = await start(TWIN_MODELS.story, { restart: { initialDelayMs: 60_000, maxDelayMs: 60_000, maxAttempts: 1 } });
    let first!: () => void;
    const started = new Promise<void>((resolve) => (first = resolve));
    const running = e.runAsync(request('a long one', 2000), () => {
      first();
      return 0;
    });
    await started;
    await e.dispose();
    expect((await running.done).finish_reason).to.equal('abort');
    expect(e.status()).to.include({ state: 'unloaded', model_path: null });

    const again = await start(TWIN_MODELS.story, { restart: { initialDelayMs: 60_000, maxDelayMs: 60_000, maxAttempts: 1 } });
    expect((await again.run(request('[crash:1]'), () => 0)).finish_reason).to.equal('error');
    expect(again.status().state).to.equal('restarting');
    await again.dispose();
    expect(again.status()).to.include({ state: 'unloaded', model_path: null });
    expect(again.status().runtime).to.include({ pid: null, next_restart_in_ms: null });
  });

  it('restarts that keep failing back off and give up as "failed"; a new engine for the model recovers', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'rkllm-twin-model-'));
    const model = join(dir, 'model.rkllm');
    copyFileSync(TWIN_MODELS.story, model);
    const e = await start(model);
    rmSync(model);
    expect((await e.run(request('[crash:1]'), () => 0)).finish_reason).to.equal('error');
    const failed = await until(e, (s) => s.state === 'failed');
    expect(failed.restarts).to.equal(0);
    expect(failed.last_error?.message).to.match(/restart 3 failed: rkllm_init failed with code -1: E rkllm: model file .* does not exist/);
    const refused = await e.run(request('while failed'), () => 0);
    expect(refused.finish_reason).to.equal('error');
    expect(refused.error).to.match(/could not be restarted/);

    copyFileSync(TWIN_MODELS.story, model);
    await e.dispose();
    expect(e.status().state).to.equal('unloaded');
    const again = await start(model);
    expect((await again.run(request('recovered', 3), () => 0)).finish_reason).to.equal('length');
    rmSync(dir, { recursive: true });
  });
});
