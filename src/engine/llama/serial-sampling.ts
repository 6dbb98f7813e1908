import type { LlamaContext } from 'node-llama-cpp';

type Native = (...args: unknown[]) => Promise<unknown>;

/** The private part of node-llama-cpp 3.21.1's LlamaContext that this workaround touches. */
interface NativeHolder {
  _ctx?: { sampleToken?: Native; decodeBatch?: Native };
}

/**
 * Makes the first sampling after each decode run alone; the others of that batch then run at once.
 *
 * node-llama-cpp (3.21.1, pinned) samples every sequence of a batch at once on worker threads.
 * Each sampler reads its logits through llama.cpp's `llama_get_logits_ith`, which reorders the
 * batch's output rows on first use without a lock (llama.cpp PR #14853). When a batch's outputs
 * are not in sequence order (a reused sequence, one sequence a step behind, a prompt batched with
 * ongoing generation), concurrent samplers reorder the same rows at once and a sequence can read
 * another sequence's logits: parallel streams then silently swap tokens. The reorder happens once
 * per decode (it empties its list of swaps), so once the first sampling of a batch has finished,
 * the rows are in place and only read: the rest may sample in parallel. Serialising every sampling
 * instead costs one worker round trip per sequence per step, with the decoder idle meanwhile.
 *
 * This reaches into a private member, so it checks the shape it expects and fails loudly (at model
 * load, not mid-stream) if a node-llama-cpp upgrade changed it.
 */
export function serializeSampling(context: LlamaContext): void {
  const holder = context as unknown as NativeHolder;
  const native = holder._ctx;
  const sample = native?.sampleToken;
  const decode = native?.decodeBatch;
  if (!native || typeof sample !== 'function' || typeof decode !== 'function') {
    throw new Error(
      'node-llama-cpp internals changed: LlamaContext._ctx.sampleToken or decodeBatch is missing; review src/engine/llama/serial-sampling.ts',
    );
  }
  /** The first sampling since the last decode; undefined until one starts. */
  let first: Promise<unknown> | undefined;
  let reordered = false;
  let batch = 0;
  const guardedDecode: Native = (...args) => {
    batch++;
    first = undefined;
    reordered = false;
    return decode.apply(native, args);
  };
  const guardedSample: Native = (...args) => {
    if (reordered) return sample.apply(native, args);
    if (!first) {
      const own = sample.apply(native, args);
      const mine = batch;
      const done = (): void => {
        if (batch === mine) reordered = true;
      };
      first = own.then(done, done);
      return own;
    }
    return first.then(() => sample.apply(native, args));
  };
  const bound = new Map<PropertyKey, unknown>([
    ['sampleToken', guardedSample],
    ['decodeBatch', guardedDecode],
  ]);
  holder._ctx = new Proxy(native, {
    get(target, property) {
      const known = bound.get(property);
      if (known) return known;
      const value: unknown = Reflect.get(target, property);
      if (typeof value !== 'function') return value;
      const method = (value as (...a: unknown[]) => unknown).bind(target);
      bound.set(property, method);
      return method;
    },
  });
}
