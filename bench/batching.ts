/**
 * `node dist/bench/batching.js [reps]`: the batching gain alone, repeated: bench model, 4 streams
 * over TCP ÷ 1 stream over TCP, and the tiny model's 8 streams ÷ 1 stream. Prints one line per
 * repetition, so two builds can be run alternately on a noisy machine.
 */
import { ensureBuiltinModel } from '../src/gguf/builtin.js';
import { delivery } from './measure.js';

const reps = Number(process.argv[2] ?? 1);
const bench = await ensureBuiltinModel('bench');
const tiny = await ensureBuiltinModel('tiny');
for (let i = 0; i < reps; i++) {
  const b1 = (await delivery('tcp', bench, 1, 1, 200)).tokensPerSecond;
  const b4 = (await delivery('tcp', bench, 1, 4, 200)).tokensPerSecond;
  const t1 = (await delivery('tcp', tiny, 1, 1, 1000)).tokensPerSecond;
  const t8 = (await delivery('tcp', tiny, 1, 8, 1000)).tokensPerSecond;
  process.stdout.write(
    `bench 4/1 ${(b4 / b1).toFixed(2)} (${b4.toFixed(0)} / ${b1.toFixed(0)} t/s); tiny 8/1 ${(t8 / t1).toFixed(2)} (${t8.toFixed(0)} / ${t1.toFixed(0)} t/s)\n`,
  );
}
