/** The three inference modes on llama.cpp: GENERATE, GET_LOGITS and GET_LAST_HIDDEN_LAYER. */
import { setImmediate as nextTurn } from 'node:timers/promises';
import { LlamaGrammarEvaluationState, type LlamaContextSequence, type Token } from 'node-llama-cpp';
import { fault } from '../../errors.js';
import type { RunReporter } from '../run-reporter.js';
import { tokenBudget } from '../token-budget.js';
import { LLMCallState, type FinishReason, type RunOutputs, type RunRequest, type SamplingParams } from '../types.js';
import { LLAMA, type LoadedModel } from './model.js';
import type { PerfMeter } from './perf-meter.js';
import type { RunPlan } from './planning.js';
import { align } from './prompt-cache.js';

/** Prompts are evaluated in slices this long, so an abort during a long prefill takes effect quickly. */
const PREFILL_SLICE = 128;

/** Recent tokens the repeat penalties look at. */
const REPEAT_WINDOW = 64;

/** The longest byte sequence of one UTF-8 character: a partial character never spans more tokens. */
const MAX_UTF8_TOKENS = 4;

/** ln of the smallest positive float32: log-probabilities that underflow to 0 are reported as this. */
const LOG_PROB_FLOOR = Math.log(1.4e-45);

/** One run: what the modes work with. */
export interface Run {
  loaded: LoadedModel;
  plan: RunPlan;
  request: RunRequest;
  reporter: RunReporter;
  meter: PerfMeter;
}

/** A run on a slot: GENERATE and GET_LOGITS evaluate on a sequence of their own. */
export interface SlotRun extends Run {
  sequence: LlamaContextSequence;
  signal: AbortSignal;
}

/**
 * The last `n` tokens of `before` followed by `after`, without copying the whole history: this runs
 * once per generated token.
 */
function lastTokens(before: Token[], after: Token[], n: number): Token[] {
  if (after.length >= n) return after.slice(after.length - n);
  return [...before.slice(Math.max(0, before.length - (n - after.length))), ...after];
}

function deliverOutput(run: Run, outputs: RunOutputs): void {
  run.reporter.deliver({ text: '', token_id: -1, perf: run.meter.live, ...outputs }, LLMCallState.RKLLM_RUN_NORMAL);
}

function keepHistory(loaded: LoadedModel, request: RunRequest, tokens: Token[]): void {
  loaded.conversations.set(request.owner ?? '', request.infer.keep_history ? tokens : []);
}

/**
 * Hands a token's result to the reporter once node-llama-cpp has dispatched the next decode, so
 * that the result's way to the clients (envelope, sinks, socket writes) runs while the engine
 * decodes, not between two decodes. node-llama-cpp dispatches a queued decode in a `setImmediate`
 * ("nextCycle"), scheduled while the generator resumes after `next()`: a callback scheduled before
 * that by one `setImmediate` runs ahead of the dispatch in the same turn, so the delivery waits one
 * turn more. Results keep their order: once the last one's promise resolves, all have been handed over.
 */
async function handOff(deliver: () => void): Promise<void> {
  await nextTurn();
  await nextTurn();
  deliver();
}

/** GENERATE: prefill, then sample token by token, holding back split UTF-8 characters (WAITING). */
export async function generate(run: SlotRun): Promise<FinishReason> {
  const { loaded, sequence, plan, request, reporter, meter, signal } = run;
  const model = loaded.model;
  const tokens = plan.tokens;
  const steps = plan.pool.steps;
  const rest = await prefill(run);
  if (!rest) return 'abort';
  const { max } = tokenBudget(request.infer.max_new_tokens, loaded.param.max_new_tokens);
  const room = loaded.param.max_context_len - tokens.length;
  const maxNew = max === null ? room : Math.min(max, room);
  const s: SamplingParams = { ...loaded.param, ...request.infer.sampling_params };
  const generated: Token[] = [];
  const pending: Token[] = [];
  let context: Token[] = tokens.slice(-8);
  let reason: FinishReason = 'stop';
  const greedy = s.temperature <= 0 || s.top_k === 1;
  const options = {
    temperature: greedy ? 0 : s.temperature,
    topK: s.top_k,
    topP: s.top_p,
    ...(s.seed === undefined ? {} : { seed: s.seed }),
    ...(plan.grammar ? { grammarEvaluationState: new LlamaGrammarEvaluationState({ model, grammar: plan.grammar }) } : {}),
    repeatPenalty: {
      punishTokens: () => lastTokens(tokens, generated, REPEAT_WINDOW),
      penalty: s.repeat_penalty,
      frequencyPenalty: s.frequency_penalty,
      presencePenalty: s.presence_penalty,
    },
  };
  const iterator = sequence.evaluate(rest, options)[Symbol.asyncIterator]();
  let handed = Promise.resolve();
  try {
    const first = steps.arrive();
    if (first) await first;
    let next = iterator.next();
    for (;;) {
      const { done, value: token } = await next;
      if (done) break;
      // A result delivered earlier asked to stop: this token, decoded meanwhile, is not delivered.
      if (reporter.stopRequested) {
        reason = 'abort';
        break;
      }
      generated.push(token);
      pending.push(token);
      const text = model.detokenize(pending, !loaded.param.skip_special_token, context);
      const waiting = text.endsWith('\uFFFD') && pending.length < MAX_UTF8_TOKENS;
      const result = { text: waiting ? '' : text, token_id: token, perf: meter.token() };
      const state = waiting ? LLMCallState.RKLLM_RUN_WAITING : LLMCallState.RKLLM_RUN_NORMAL;
      if (!waiting) {
        context = [...context, ...pending].slice(-8);
        pending.length = 0;
      }
      if (signal.aborted || generated.length >= maxNew) {
        await handed;
        reporter.deliver(result, state);
        reason = signal.aborted ? 'abort' : 'length';
        break;
      }
      const step = steps.arrive();
      if (step) await step;
      next = iterator.next();
      handed = handOff(() => reporter.deliver(result, state));
    }
  } finally {
    await handed;
    await iterator.return?.();
  }
  if (pending.length > 0) {
    // The run ended inside a character (its limit, or a stop): its bytes so far cannot be shown, and are dropped,
    // as the RKLLM runtime drops them. The held-back tokens were counted as they came: flushing generates nothing new.
    const text = model.detokenize(pending, false, context).replace(/\uFFFD+$/u, '');
    reporter.deliver({ text, token_id: pending.at(-1)!, perf: meter.live }, LLMCallState.RKLLM_RUN_NORMAL);
  }
  keepHistory(loaded, request, [...tokens, ...generated]);
  return reason;
}

/**
 * GET_LOGITS: the next-token distribution after the input, as log-probabilities. llama.cpp's
 * raw logits are not reachable through node-llama-cpp; its probabilities (a softmax of them)
 * are, so the result says `normalization: "log_softmax"`.
 */
export async function logits(run: SlotRun): Promise<FinishReason> {
  const { loaded, sequence, plan, request } = run;
  const rest = await prefill(run);
  if (!rest) return 'abort';
  const last = rest.at(-1)!;
  const outputs = await sequence.controlledEvaluate([
    ...rest.slice(0, -1),
    [last, { generateNext: { probabilities: true, options: { temperature: 0 } } }],
  ]);
  const probabilities = outputs.at(-1)?.next.probabilities;
  if (!probabilities) throw fault('ENGINE_ERROR', 'no_probabilities', {}, { engine: LLAMA });
  const values = new Array<number>(loaded.vocabSize).fill(LOG_PROB_FLOOR);
  for (const [token, probability] of probabilities) values[token] = Math.max(Math.log(probability), LOG_PROB_FLOOR);
  deliverOutput(run, { logits: { logits: values, vocab_size: loaded.vocabSize, num_tokens: 1, normalization: 'log_softmax' } });
  keepHistory(loaded, request, plan.tokens);
  return 'stop';
}

/**
 * GET_LAST_HIDDEN_LAYER: the final hidden state (after the output norm) of the last input
 * token, from an embedding context. node-llama-cpp gives one vector per evaluation, so
 * `num_tokens` is 1.
 */
export async function hiddenLayer(run: Run): Promise<FinishReason> {
  const { loaded, plan, request, meter } = run;
  const context = await (loaded.embedding ??= loaded.model.createEmbeddingContext({
    contextSize: loaded.param.max_context_len,
    threads: loaded.threads,
    batchSize: Math.min(512, loaded.param.max_context_len),
  }));
  meter.startPrefill(plan.tokens.length);
  const { vector } = await context.getEmbeddingFor([...plan.tokens]);
  deliverOutput(run, { last_hidden_layer: { hidden_states: [...vector], embd_size: vector.length, num_tokens: 1 } });
  keepHistory(loaded, request, plan.tokens);
  return 'stop';
}

/**
 * Evaluates the input up to what `sequence.evaluate` should take with generation: at most one
 * slice, or only the last token when the run saves a prompt cache (the cache then holds
 * everything before it). Each slice is one step of the pool's runs, so a long prompt shares the
 * decodes with the streams already running. Returns undefined when aborted.
 */
async function prefill(run: SlotRun): Promise<Token[] | undefined> {
  const { loaded, sequence, plan, request, meter, signal } = run;
  let rest = await align(loaded, plan.pool, sequence, plan.tokens);
  meter.startPrefill(rest.length);
  const cache = request.infer.prompt_cache_params;
  const keep = cache?.save_prompt_cache ? 1 : PREFILL_SLICE;
  while (rest.length > keep && !signal.aborted) {
    const step = plan.pool.steps.arrive();
    if (step) await step;
    if (signal.aborted) break;
    const n = Math.min(PREFILL_SLICE, rest.length - 1);
    await sequence.evaluateWithoutGeneratingNewTokens(rest.slice(0, n));
    rest = rest.slice(n);
  }
  if (signal.aborted) return undefined;
  if (cache?.save_prompt_cache) await sequence.saveStateToFile(cache.prompt_cache_path);
  return rest;
}
