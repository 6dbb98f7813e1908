import type { HttpRpc } from './rpc.js';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `rkllm_is_running` every 5 ms; resolves with the ms from `since` to the first idle observation. */
export async function msUntilIdle(http: HttpRpc, since: number): Promise<number> {
  for (let polls = 0; polls < 2000; polls++) {
    const { running, active, queued } = await http.result('rkllm_is_running', {});
    if (!running && active === 0 && queued === 0) return performance.now() - since;
    await sleep(5);
  }
  throw new Error('the engine never became idle');
}
