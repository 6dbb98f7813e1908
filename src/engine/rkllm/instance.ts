import { readFileSync, statSync } from 'node:fs';
import { fault } from '../../errors.js';
import type { EngineStatus, FinishReason, InitParam, RKLLMResult } from '../types.js';
import type { Call, ResultMessage, RunEnd } from './protocol.js';
import { explain } from '../worker-process.js';
import { RKLLM } from './runtime-process.js';
import type { RuntimeSupervisor } from './supervisor.js';

/**
 * One runtime instance of the model (a slot): a worker with its own handle, callback state and KV
 * cache, kept by its own supervisor, so a crash ends only its runs and restarts only it. Its runs
 * and the calls that change its handle take turns on it.
 */
export class Instance {
  /** Runs and changes waiting for it or on it. */
  pending = 0;
  /** Whose conversation the last run routed here keeps (`RunRequest.owner`): later runs of it come here. */
  claimed: string | undefined;
  /** Whose conversation the runtime's history holds now; undefined when the last run kept none. */
  held: string | undefined;
  #turn: Promise<void> = Promise.resolve();

  constructor(
    readonly index: number,
    readonly supervisor: RuntimeSupervisor,
  ) {}

  /** Waits for its turn on the instance; the returned function ends it. */
  async take(): Promise<() => void> {
    this.pending++;
    const previous = this.#turn;
    let release!: () => void;
    this.#turn = new Promise((resolve) => (release = resolve));
    await previous;
    return () => {
      this.pending--;
      release();
    };
  }

  /** Resolves when every turn taken so far has ended. */
  idle(): Promise<void> {
    return this.#turn;
  }

  /** The runtime lost its history (a crash, a restart). */
  forget(): void {
    this.held = undefined;
    this.claimed = undefined;
  }
}

/** A failed instance serves nothing until the model is loaded again: it is taken only when all have failed. */
const FAILED = 1e6;
const HEALTH = { ready: 0, restarting: 2, loading: 2, failed: FAILED, unloaded: FAILED } as const;

/**
 * The instance a run goes to: the one that holds the owner's kept conversation; else a free one,
 * ready first, one that holds no conversation first; else the least busy; a failed one last.
 */
export function pick(instances: Instance[], owner: string, keepHistory: boolean): Instance {
  const holder = keepHistory ? instances.find((i) => i.claimed === owner && HEALTH[i.supervisor.state] < FAILED) : undefined;
  if (holder) return holder;
  const rank = (i: Instance): number =>
    i.pending * 4 + HEALTH[i.supervisor.state] + (i.claimed === undefined || i.claimed === owner ? 0 : 1);
  return instances.reduce((best, i) => (rank(i) < rank(best) ? i : best));
}

/** One callback of the worker as the consumer's RKLLMResult: the runtime's typed arrays become plain arrays, its logits raw. */
export function resultOf(message: ResultMessage): RKLLMResult {
  const result: RKLLMResult = { text: message.text, token_id: message.token_id, perf: message.perf };
  if (message.last_hidden_layer) {
    const { hidden_states, embd_size, num_tokens } = message.last_hidden_layer;
    result.last_hidden_layer = { hidden_states: [...hidden_states], embd_size, num_tokens };
  }
  if (message.logits) {
    const { logits, vocab_size, num_tokens } = message.logits;
    result.logits = { logits: [...logits], vocab_size, num_tokens, normalization: 'none' };
  }
  return result;
}

/** What the engine knows about a run when judging how it ended. */
export interface RunVerdictContext {
  /** Aborted (rkllm_abort or the run's signal) or stopped by its consumer. */
  stopped: boolean;
  /** The most tokens it could generate, when bounded. */
  maxNewTokens: number | null;
  maxContextLen: number;
  /** The runtime's output lines that explain a refusal. */
  log: string[];
}

/** Why a run ended, from the worker's account of it, or the error to report. */
export function judge(end: RunEnd, context: RunVerdictContext): { reason: FinishReason; error?: string } {
  const why = explain(context.log);
  if (end.code !== 0) return { reason: 'error', error: `rkllm_run failed with code ${end.code}: ${why}` };
  if (end.final === 'error') return { reason: 'error', error: `the RKLLM runtime reported RKLLM_RUN_ERROR: ${why}` };
  if (context.stopped) return { reason: 'abort' };
  const generated = end.perf?.generate_tokens ?? 0;
  const filled = (end.perf?.prefill_tokens ?? 0) + generated >= context.maxContextLen;
  if (end.limited || filled || (context.maxNewTokens !== null && generated >= context.maxNewTokens)) return { reason: 'length' };
  return { reason: 'stop' };
}

/** Refuses, before any runtime starts, `instances` copies of the model that do not fit in the available memory (the doctor's check). */
export function checkMemory(param: InitParam, instances: number): void {
  const size = statSync(param.model_path, { throwIfNoEntry: false })?.size;
  const available = availableMemory(readFileSync('/proc/meminfo', 'utf8'));
  if (size === undefined || available === undefined) return;
  const memory = memoryFit(size, instances, available, param.max_context_len ?? 0);
  if (memory.status !== 'fail') return;
  const detail = `the model does not fit ${instances} times in memory (engine.parallel ${instances}): ${memory.found}. Fix: ${memory.fix}`;
  throw fault('ENGINE_ERROR', 'detail', { detail }, { engine: RKLLM, reason: 'memory' });
}

/** The memory available to new processes, in bytes, from the text of /proc/meminfo (`MemAvailable`); undefined when it does not say. */
export function availableMemory(meminfo: string): number | undefined {
  const kb = /^MemAvailable:\s+(\d+)\s*kB/m.exec(meminfo)?.[1];
  return kb === undefined ? undefined : Number(kb) * 1024;
}

export function gigabytes(bytes: number): string {
  return bytes >= 1024 ** 3 ? `${(bytes / 1024 ** 3).toFixed(1)} GB` : `${Math.ceil(bytes / 1024 ** 2)} MB`;
}

/** How `instances` copies of a model of `modelBytes` fit in `available` bytes (the doctor's memory check, and the engine's at start). */
export function memoryFit(
  modelBytes: number,
  instances: number,
  available: number,
  context: number,
): { status: 'ok' | 'warn' | 'fail'; found: string; fix: string } {
  const need = modelBytes * instances;
  const plural = instances === 1 ? 'instance' : 'instances';
  const found = `${gigabytes(modelBytes)} model x ${instances} ${plural} = ${gigabytes(need)}, ${gigabytes(available)} available; context ${context} tokens adds each instance's KV cache`;
  const fits = Math.floor(available / modelBytes);
  const fix =
    fits >= 1 && fits < instances
      ? `run at most ${fits} ${fits === 1 ? 'instance' : 'instances'} (--parallel ${fits}), or free memory`
      : 'use a smaller (or more quantized) model, a smaller --context, or free memory (stop other processes)';
  if (need > available) return { status: 'fail', found, fix };
  if (need > available * 0.8) return { status: 'warn', found: `${found}: little room is left`, fix };
  return { status: 'ok', found, fix };
}

/** The best state among the instances': the engine serves while any instance does. */
const STATE_ORDER: EngineStatus['state'][] = ['ready', 'restarting', 'loading', 'failed', 'unloaded'];

/** One instance's status as it is; with several, the best state, all restarts, the last error, and each instance's under `runtime.instances`. */
export function combinedStatus(all: EngineStatus[]): EngineStatus {
  const first = all[0]!;
  if (all.length === 1) return first;
  const state = STATE_ORDER.find((s) => all.some((status) => status.state === s)) ?? first.state;
  const errors = all.flatMap((s) => (s.last_error ? [s.last_error] : [])).sort((a, b) => a.at.localeCompare(b.at));
  const instances = all.map(({ state, restarts, last_error, runtime }) => ({ state, restarts, last_error, pid: runtime?.pid ?? null }));
  return {
    ...first,
    state,
    restarts: all.reduce((sum, s) => sum + s.restarts, 0),
    last_error: errors.at(-1) ?? null,
    runtime: { ...first.runtime, instances },
  };
}

/** Loads the model in each instance, one after the other (each load peaks in memory); on a failure stops those started. */
export async function startAll(instances: Instance[], param: InitParam): Promise<void> {
  const started: Instance[] = [];
  try {
    for (const instance of instances) {
      await instance.supervisor.start(param);
      started.push(instance);
    }
  } catch (err) {
    await Promise.all(started.map((i) => i.supervisor.stop(async () => {})));
    throw err;
  }
}

/** Replaces the replayed call to `fn`, or appends it: setters keep only their last value. */
export function replacing(replay: Call[], call: Call): Call[] {
  return [...replay.filter((c) => c.fn !== call.fn), call];
}
