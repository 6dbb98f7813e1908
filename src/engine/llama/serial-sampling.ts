import type { LlamaContext } from 'node-llama-cpp';

type SampleToken = (...args: unknown[]) => Promise<unknown>;

/** The private part of node-llama-cpp 3.21.1's LlamaContext that this workaround touches. */
interface NativeHolder {
  _ctx?: { sampleToken?: SampleToken };
}

/**
 * Makes the sequences of one context sample one at a time.
 *
 * node-llama-cpp (3.21.1, pinned) samples every sequence of a batch at once on worker threads.
 * Each sampler reads its logits through llama.cpp's `llama_get_logits_ith`, which reorders the
 * batch's output rows on first use without a lock (llama.cpp PR #14853). When a batch's outputs
 * are not in sequence order (a reused sequence, one sequence a step behind, a prompt batched with
 * ongoing generation), concurrent samplers reorder the same rows at once and a sequence can read
 * another sequence's logits: parallel streams then silently swap tokens. Serialising the native
 * `sampleToken` calls removes the race; sampling is cheap next to evaluation.
 *
 * This reaches into a private member, so it checks the shape it expects and fails loudly (at model
 * load, not mid-stream) if a node-llama-cpp upgrade changed it.
 */
export function serializeSampling(context: LlamaContext): void {
  const holder = context as unknown as NativeHolder;
  const native = holder._ctx;
  const sample = native?.sampleToken;
  if (!native || typeof sample !== 'function') {
    throw new Error(
      'node-llama-cpp internals changed: LlamaContext._ctx.sampleToken is missing; review src/engine/llama/serial-sampling.ts',
    );
  }
  let previous: Promise<unknown> = Promise.resolve();
  const serial: SampleToken = (...args) => {
    const result = previous.then(() => sample.apply(native, args));
    previous = result.catch(() => undefined);
    return result;
  };
  holder._ctx = new Proxy(native, {
    get(target, property) {
      if (property === 'sampleToken') return serial;
      const value: unknown = Reflect.get(target, property);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}
