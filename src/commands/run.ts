import { RkllmClient } from '../client/index.js';
import { CLIENT_FLAGS_HELP, parseClientFlags, UsageError, type CommandContext } from './options.js';

const HELP = `Usage: rkllm-mcp run [flags] "prompt"

Prints one completion of the prompt, as it is generated, from a running server, and exits.

${CLIENT_FLAGS_HELP}`;

/** `rkllm-mcp run "prompt"`: one completion on stdout. Resolves to the exit code. */
export async function runCommand(argv: string[], context: CommandContext): Promise<number> {
  const flags = parseClientFlags(argv, context);
  if (flags.help) {
    context.stdout.write(`${HELP}\n`);
    return 0;
  }
  if (flags.positionals.length !== 1) throw new UsageError('run expects one prompt, e.g. rkllm-mcp run "Once upon a time"');
  await using client = new RkllmClient({ url: flags.url, ...(context.apiKey === undefined ? {} : { apiKey: context.apiKey }) });
  for await (const chunk of client.runStream({ ...flags.sampling, prompt_input: flags.positionals[0] })) {
    context.stdout.write(chunk.delta);
    if (chunk.error) {
      context.stdout.write('\n');
      context.stderr.write(`rkllm-mcp run: the server ended the run: ${chunk.error.message}\n`);
      return 1;
    }
  }
  context.stdout.write('\n');
  return 0;
}
