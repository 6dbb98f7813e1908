/** `node dist/bench/fleet-only.js [--quick] [--model tiny|bench]`: only the fleet table of `npm run bench`. */
import { ensureBuiltinModel } from '../src/gguf/builtin.js';
import { fleetTable } from './fleet.js';

const quick = process.argv.includes('--quick');
const kind = process.argv.includes('tiny') ? 'tiny' : 'bench';
const tokens = kind === 'tiny' ? 200 : 32;
ensureBuiltinModel(kind)
  .then((modelPath) => fleetTable({ modelPath, runs: quick ? 6 : 12, tokens }))
  .then(
    (table) => process.stdout.write(table),
    (err: unknown) => {
      process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    },
  );
