import { RkllmClient } from '../client/index.js';
import { CLIENT_FLAGS_HELP, parseClientFlags, UsageError, type CommandContext } from './options.js';

const HELP = `Usage: rkllm-mcp run [flags] "prompt"

Prints one completion of the prompt, as it is generated, from a running server, and exits.

${CLIENT_FLAGS_HELP}`;

/** The exit code of a run stopped by Ctrl-C (128 + SIGINT), as a shell reports it. */
const INTERRUPTED = 130;

/** `rkllm-mcp run "prompt"`: one completion on stdout. Resolves to the exit code. */
export async function runCommand(argv: string[], context: CommandContext): Promise<number> {
  const flags = parseClientFlags(argv, context, HELP);
  if (!flags) return 0;
  if (flags.positionals.length !== 1) throw new UsageError('run expects one prompt, e.g. rkllm-mcp run "Once upon a time"');
  await using client = new RkllmClient({ url: flags.url, ...(context.apiKey === undefined ? {} : { apiKey: context.apiKey }) });
  // Ctrl-C aborts the run on the server (over HTTP it would otherwise go on until its buffer expires); a second one kills.
  let interrupted = false;
  const unsubscribe = context.onInterrupt(() => {
    interrupted = true;
    unsubscribe();
  });
  try {
    for await (const chunk of client.runStream({ ...flags.sampling, prompt_input: flags.positionals[0] })) {
      if (interrupted) return INTERRUPTED;
      context.stdout.write(chunk.delta);
      if (chunk.error) {
        context.stderr.write(`\nrkllm-mcp run: the server ended the run: ${chunk.error.message}`);
        return 1;
      }
    }
    return 0;
  } finally {
    unsubscribe();
    context.stdout.write('\n');
  }
}
