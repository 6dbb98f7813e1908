import { chatCommand } from './chat.js';
import { UsageError, type CommandContext } from './options.js';
import { runCommand } from './run.js';

/** Runs `rkllm-mcp chat` or `rkllm-mcp run` on this process's streams and signals; resolves to the exit code. */
export async function clientCommand(name: 'chat' | 'run', argv: string[], defaultUrl: () => string): Promise<number> {
  const context: CommandContext = {
    get defaultUrl() {
      return defaultUrl();
    },
    apiKey: process.env.RKLLM_MCP_API_KEY || undefined,
    stdin: process.stdin,
    stdout: process.stdout,
    stderr: process.stderr,
    onInterrupt: (listener) => {
      process.on('SIGINT', listener);
      return () => process.off('SIGINT', listener);
    },
  };
  try {
    return await (name === 'chat' ? chatCommand : runCommand)(argv, context);
  } catch (err) {
    const usage = err instanceof UsageError;
    process.stderr.write(`rkllm-mcp ${name}: ${err instanceof Error ? err.message : String(err)}\n`);
    if (usage) process.stderr.write(`Run rkllm-mcp ${name} --help for its flags.\n`);
    return usage ? 2 : 1;
  }
}
