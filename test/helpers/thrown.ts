import { ServerError } from '../../src/errors.js';

/** The error of type `type` that `fn` throws; fails the test when it throws nothing or something else. */
export function thrown<E extends Error>(fn: () => unknown, type: new (...args: any[]) => E): E {
  try {
    fn();
  } catch (err) {
    if (err instanceof type) return err;
    throw err;
  }
  throw new Error(`expected a ${type.name}`);
}

/** The error of type `type` that `work` (a promise, or a function run and awaited) rejects with; fails the test when it settles otherwise. */
export async function rejected<E extends Error>(work: Promise<unknown> | (() => unknown), type: new (...args: any[]) => E): Promise<E> {
  try {
    await (typeof work === 'function' ? work() : work);
  } catch (err) {
    if (err instanceof type) return err;
    throw err;
  }
  throw new Error(`expected a ${type.name}`);
}

/** The ServerError that `work` rejects with. */
export const refusal = (work: Promise<unknown> | (() => unknown)): Promise<ServerError> => rejected(work, ServerError);
