import { parseArgs } from 'node:util';
import type { RunParams } from '../client/index.js';

/** What `chat` and `run` get from the command line's caller: no settings, plain values and streams. */
export interface CommandContext {
  /** The server's URL when `--url` is not given: the local HTTP port of the settings. */
  defaultUrl: string;
  /** RKLLM_MCP_API_KEY, when set. */
  apiKey: string | undefined;
  stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  /** Calls `listener` on each SIGINT (Ctrl-C), instead of exiting; returns the unsubscribe. */
  onInterrupt(listener: () => void): () => void;
}

/** A usage error: the command prints it and exits 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** The flags both commands share, parsed. */
export interface ClientFlags {
  url: string;
  sampling: RunParams;
  positionals: string[];
}

/** The sampling flags, with the run parameter each one sets. */
const SAMPLING = {
  'max-new-tokens': 'max_new_tokens',
  temperature: 'temperature',
  'top-k': 'top_k',
  'top-p': 'top_p',
  seed: 'seed',
} as const;

export const CLIENT_FLAGS_HELP = `  --url URL             the server: http://HOST:PORT/, ws://HOST:PORT or tcp://HOST:PORT
                        (default: the HTTP port of the settings on this machine)
  --max-new-tokens N    tokens to generate at most per reply
  --temperature T, --top-k K, --top-p P, --seed S
                        sampling (default: the server's; --top-k 1 is greedy and reproducible)

The API key, when the server needs one, is read from RKLLM_MCP_API_KEY.`;

/** The flags of `argv`; with `--help`, prints `help` and returns undefined. Throws a UsageError on a bad flag. */
export function parseClientFlags(argv: string[], context: CommandContext, help: string): ClientFlags | undefined {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: true,
      options: {
        url: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        ...Object.fromEntries(Object.keys(SAMPLING).map((flag) => [flag, { type: 'string' as const }])),
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  const sampling: RunParams = {};
  for (const [flag, field] of Object.entries(SAMPLING)) {
    const value = values[flag];
    if (typeof value !== 'string') continue;
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n)) throw new UsageError(`--${flag} expects a number, got "${value}"`);
    sampling[field] = n;
  }
  if (values.help === true) {
    context.stdout.write(`${help}\n`);
    return undefined;
  }
  const url = typeof values.url === 'string' ? values.url : context.defaultUrl;
  return { url, sampling, positionals: parsed.positionals };
}
