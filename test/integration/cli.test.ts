// The command line, run as real processes (one file, so the suite starts few of them): its flags,
// usage errors, exit codes and readiness line; bad models and impossible settings refused at start,
// and SIGTERM while the model loads; the transport flags; settings (the file written on first
// start, precedence, validation, --print-settings); and `rkllm-mcp chat` and `rkllm-mcp run`
// against a real server in this process.
import { expect } from 'chai';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ServerError } from '../../src/errors.js';
import { ensureBuiltinModel } from '../../src/gguf/builtin.js';
import { checkModelFile } from '../../src/gguf/model-file.js';
import { defaultSettings } from '../../src/settings.js';
import { patchedCopy } from '../helpers/gguf-patch.js';
import { TWIN_MODELS, buildTwin, modelOfMostMemory } from '../helpers/rkllm-twin.js';
import { buildRknnTwin, twinModel } from '../helpers/rknn-twin.js';
import { runCli, scratchDir, spawnCli, startServer, writeSettings } from '../helpers/server-process.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { thrown } from '../helpers/thrown.js';

describe('Command line', function () {
  this.timeout(60_000);

  it('--help lists every flag and exits 0', async () => {
    const { code, stdout } = await runCli(['--help']);
    expect(code).to.equal(0);
    for (const flag of [
      '--http',
      '--no-http',
      '--host',
      '--model',
      '--settings',
      '--diagnostics',
      '--threads',
      '--parallel',
      '--context',
      '--log-level',
      '--help',
    ]) {
      expect(stdout).to.include(flag);
    }
    expect(stdout).to.include('rkllm-mcp doctor');
  });

  it('rkllm-mcp doctor is dispatched: a --root that does not exist is a usage error (exit 2)', async () => {
    const { code, stderr } = await runCli(['doctor', '--root', '/nonexistent/board']);
    expect(code).to.equal(2);
    expect(stderr).to.include('rkllm-mcp doctor: --root /nonexistent/board does not exist');
  });

  const usageErrors: Array<[string[], RegExp]> = [
    [['--bogus'], /Unknown option '--bogus'/],
    [['--http', 'eighty'], /--http expects an integer from 0 to 65535, got "eighty"/],
    [['--http', '70000'], /--http expects an integer/],
    [['--parallel', '0'], /--parallel expects an integer from 1/],
    [['--log-level', 'loud'], /setting "log_level" must be one of \["fatal",/],
    [['stray'], /positional/],
  ];
  for (const [args, pattern] of usageErrors) {
    it(`rejects ${args.join(' ')} with exit code 2`, async () => {
      const { code, stderr } = await runCli(args);
      expect(code).to.equal(2);
      expect(stderr).to.match(pattern);
    });
  }

  it('rejects a settings file with a bad value, naming the key and what it expects', async () => {
    const path = writeSettings({ streams: { buffer_timeout_s: 'soon' } });
    const { code, stderr } = await runCli(['--settings', path]);
    expect(code).to.equal(2);
    expect(stderr).to.include('setting "streams.buffer_timeout_s" must be number');
  });

  it('rejects an unknown setting', async () => {
    const { code, stderr } = await runCli(['--settings', writeSettings({ streams: { buffer_timout: 5 } })]);
    expect(code).to.equal(2);
    expect(stderr).to.include('setting "streams.buffer_timout" is not a known setting');
  });

  it('fails clearly on a model file that does not exist', async () => {
    const { code, stderr } = await runCli(['--model', '/nonexistent/model.gguf', '--http', '0']);
    expect(code).to.equal(1);
    expect(stderr).to.include('/nonexistent/model.gguf');
  });

  it('prints one readiness line naming each transport and its address, and exits 0 on SIGTERM', async () => {
    const server = await startServer();
    const ready = server
      .stderr()
      .split('\n')
      .filter((l) => l.includes('listening for connections'));
    expect(ready).to.have.lengthOf(1);
    expect(ready[0]).to.match(/http=127\.0\.0\.1:\d+/);
    expect(await server.stop()).to.equal(0);
  });
});

describe('rkllm-mcp --engine rkllm: errors at start', function () {
  this.timeout(60_000);

  /** Runs the server on one free HTTP port and nothing else, with `flags`; it should exit. */
  const serve = (...flags: string[]): ReturnType<typeof runCli> =>
    runCli(['--engine', 'rkllm', ...flags, '--http', '0', '--no-tcp', '--no-udp', '--no-ws']);

  it('a missing --model is a usage error', async () => {
    const { code, stderr } = await serve();
    expect(code).to.equal(2);
    expect(stderr).to.match(/"engine.model_path" is required with engine.kind "rkllm"/);
  });

  it('a library that cannot be loaded stops the server with the reason', async () => {
    const { code, stderr } = await serve('--model', TWIN_MODELS.story, '--rkllm-lib', '/nonexistent/librkllmrt.so');
    expect(code).to.equal(1);
    expect(stderr).to.match(/The RKLLM runtime could not start: Cannot load the RKLLM runtime library \/nonexistent\/librkllmrt\.so/);
  });

  it('a model the runtime refuses stops the server with the runtime code and reason', async () => {
    const { code, stderr } = await serve('--model', TWIN_MODELS.notAModel, '--rkllm-lib', await buildTwin('1.2'));
    expect(code).to.equal(1);
    expect(stderr).to.match(/rkllm_init failed with code -1: E rkllm: .*not an RKLLM model file/);
  });

  it('--vision-encoder and --rknn-lib reach the engine: an encoder as wide as no embedding of the model stops the start', async () => {
    const encoder = twinModel({ height: 4, width: 4, tokens: 4, embed: 5 });
    const model = join(scratchDir(), 'qwen2-vl-echo.rkllm');
    copyFileSync(TWIN_MODELS.echo, model);
    const vision = ['--vision-encoder', encoder, '--rknn-lib', await buildRknnTwin()];
    const { code, stderr } = await serve('--model', model, '--rkllm-lib', await buildTwin('1.3'), ...vision);
    expect(code).to.equal(1);
    expect(stderr).to.include(`The vision encoder ${encoder} gives embeddings 5 wide, but the language model ${model} takes 3`);
  });
});

describe('CLI messages (issue 14, section 5)', function () {
  this.timeout(120_000);

  it('--threads -1 says what is wrong with the value', async () => {
    const { code, stderr } = await runCli(['--threads', '-1']);
    expect(code).to.equal(2);
    expect(stderr).to.include('--threads expects an integer from');
    expect(stderr).to.include('"-1"');
  });

  for (const level of ['warn', 'error', 'silent']) {
    it(`prints the ready line at --log-level ${level}`, async () => {
      const proc = await startServer({ args: ['--log-level', level] });
      try {
        expect(proc.stderr()).to.include('listening for connections');
        expect(proc.addresses.http).to.match(/:\d+$/);
      } finally {
        await proc.stop();
      }
    });
  }
});

const NO_PORTS = ['--http', '0', '--tcp', '0', '--udp', '0', '--ws', '0'];

describe('Bad models and impossible settings (issue 14, section 4)', function () {
  this.timeout(60_000);
  let tiny: string;
  let dir: string;

  before(async () => {
    tiny = await ensureBuiltinModel('tiny');
    dir = scratchDir();
  });

  it('refuses a GGUF whose header claims more tensors than the file holds, naming the file', async () => {
    const bad = patchedCopy(tiny, dir, 'bad-tensors.gguf', 8, 100_000_000n);
    const { code, stderr } = await runCli(['--model', bad, ...NO_PORTS]);
    expect(code).to.equal(1);
    expect(stderr).to.include(bad).and.include('claims 100000000 tensors');
  });

  it('refuses a GGUF whose header claims more metadata entries than the file holds', async () => {
    const bad = patchedCopy(tiny, dir, 'bad-entries.gguf', 16, 100_000_000n);
    const { code, stderr } = await runCli(['--model', bad, ...NO_PORTS]);
    expect(code).to.equal(1);
    expect(stderr).to.include(bad).and.include('100000000 metadata entries');
  });

  it('refuses a FIFO given as the model instead of waiting on it (and so does the model file check, in this process)', async () => {
    const fifo = join(dir, 'model.gguf');
    execFileSync('mkfifo', [fifo]);
    const { code, stderr } = await runCli(['--model', fifo, ...NO_PORTS]);
    expect(code).to.equal(1);
    expect(stderr).to.include(fifo).and.include('is a FIFO, not a regular file');
    expect(thrown(() => checkModelFile(fifo, 'llama.cpp'), ServerError).message)
      .to.include(fifo)
      .and.include('is a FIFO, not a regular file');
  });

  it('refuses --context 1048576 --parallel 256 at start, with the estimate and the machine memory', async () => {
    const { code, stderr } = await runCli(['--context', '1048576', '--parallel', '256', ...NO_PORTS]);
    expect(code).to.equal(1);
    expect(stderr)
      .to.match(/needs about [\d.]+ GiB of memory/)
      .and.match(/this machine has [\d.]+ GiB/);
    expect(stderr).to.include("75% of the machine's memory");
  });

  it('engine.max_memory overrides the default share', async () => {
    const settings = writeSettings({ engine: { max_memory: 1_000_000 } });
    const { code, stderr } = await runCli(['--settings', settings, ...NO_PORTS]);
    expect(code).to.equal(1);
    expect(stderr).to.include('allowed (setting engine.max_memory)');
  });

  it('exits promptly on SIGTERM while the model loads', async () => {
    const bench = await ensureBuiltinModel('bench');
    const proc = spawnCli(['--model', bench, '--context', '65536', '--parallel', '4', ...NO_PORTS]);
    const exited = new Promise<number | string | null>((resolve) => proc.once('close', (code, signal) => resolve(code ?? signal)));
    let stderr = '';
    proc.stderr!.setEncoding('utf8');
    await new Promise<void>((resolve) =>
      proc.stderr!.on('data', (data: string) => {
        stderr += data;
        if (stderr.includes('loading the model')) resolve();
      }),
    );
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 5_000);
    const code = await exited;
    clearTimeout(timer);
    // The signal's default action: nothing was running, so nothing is drained.
    expect(code, stderr).to.equal('SIGTERM');
    expect(stderr).not.to.include('listening for connections');
  });
});

// The transport flags.
describe('Command line: transports', function () {
  this.timeout(60_000);

  it('--help lists every transport flag', async () => {
    const { code, stdout } = await runCli(['--help']);
    expect(code).to.equal(0);
    for (const flag of ['--tcp', '--udp', '--ws', '--no-tcp', '--no-udp', '--no-ws', '--stdio']) expect(stdout).to.include(flag);
  });

  const usageErrors: Array<[string[], RegExp]> = [
    [['--tcp', '1', '--no-tcp'], /--tcp and --no-tcp contradict each other/],
    [['--udp', '70000'], /--udp expects an integer from 0 to 65535, got "70000"/],
    [['--ws', 'x'], /--ws expects an integer/],
    [['--stdio', 'yes'], /positional/],
  ];
  for (const [args, pattern] of usageErrors) {
    it(`rejects ${args.join(' ')} with exit code 2`, async () => {
      const { code, stderr } = await runCli(args);
      expect(code).to.equal(2);
      expect(stderr).to.match(pattern);
    });
  }

  it('rejects a datagram limit UDP cannot carry, naming the setting', async () => {
    const { code, stderr } = await runCli(['--settings', writeSettings({ udp: { max_datagram_bytes: 70_000 } })]);
    expect(code).to.equal(2);
    expect(stderr).to.include('setting "udp.max_datagram_bytes" must be <= 65507');
  });

  it('the readiness line names only the transports left on', async () => {
    const server = await startServer({ args: ['--no-udp', '--no-ws'] });
    try {
      const ready = server
        .stderr()
        .split('\n')
        .find((l) => l.includes('listening for connections'))!;
      expect(ready).to.match(/listening for connections: http=127\.0\.0\.1:\d+ tcp=127\.0\.0\.1:\d+ \(/);
      expect(Object.keys(server.addresses)).to.deep.equal(['http', 'tcp']);
    } finally {
      await server.stop();
    }
  });

  it('fails clearly when a port is taken, before the readiness line', async () => {
    const first = await startServer();
    try {
      const { code, stderr } = await runCli(['--http', '0', '--tcp', first.addresses.tcp!.split(':')[1]!, '--udp', '0', '--ws', '0']);
      expect(code).to.equal(1);
      expect(stderr).to.include('EADDRINUSE').and.not.include('listening for connections');
    } finally {
      await first.stop();
    }
  });
});

// Settings through the real command line.
async function printed(args: string[], options: { env?: Record<string, string>; cwd?: string } = {}): Promise<any> {
  const { code, stdout, stderr } = await runCli(['--print-settings', ...args], options);
  expect(code, stderr).to.equal(0);
  return JSON.parse(stdout);
}

describe('Settings', function () {
  this.timeout(60_000);

  it('first start writes the per-user settings file with every default, and nothing into the working directory', async () => {
    const cwd = scratchDir();
    const config = scratchDir();
    const server = await startServer({ cwd, settings: null, env: { XDG_CONFIG_HOME: config } });
    try {
      const path = join(config, 'rkllm-mcp', 'settings.json');
      expect(JSON.parse(readFileSync(path, 'utf8'))).to.deep.equal(defaultSettings());
      expect(server.stderr()).to.include('wrote the settings file with every default');
      expect(server.stderr()).to.include(`"settings":${JSON.stringify(path)},"from":"user"`);
      expect(readdirSync(cwd)).to.deep.equal([]);
    } finally {
      await server.stop();
    }
  });

  it('--vision-encoder and --rknn-lib set engine.rkllm.vision; folders.images is anchored like the other folders', async () => {
    const cwd = scratchDir();
    const merged = await printed(['--vision-encoder', '/m/qwen2-vl.vision.rknn', '--rknn-lib', '/opt/librknnrt.so'], {
      cwd,
      env: { RKLLM_MCP_ENGINE_RKLLM_VISION_CORE_MASK: '2' },
    });
    expect(merged.engine.rkllm.vision).to.include({ encoder: '/m/qwen2-vl.vision.rknn', rknn_lib: '/opt/librknnrt.so', core_mask: '2' });
    expect(merged.folders.images)
      .to.be.a('string')
      .and.match(/images$/);
  });

  it('a settings.json in the working directory is read when it exists, and said so', async () => {
    const cwd = scratchDir();
    writeFileSync(join(cwd, 'settings.json'), JSON.stringify({ streams: { max_buffers: 5 } }));
    const { code, stdout, stderr } = await runCli(['--print-settings'], { cwd });
    expect(code, stderr).to.equal(0);
    const merged = JSON.parse(stdout);
    expect(merged.streams.max_buffers).to.equal(5);
    expect(stderr).to.include(`settings file:  ${join(cwd, 'settings.json')} (settings.json in the working directory)`);
    expect(merged.folders.prompt_caches).to.equal(join(cwd, 'prompt-caches'));
  });

  it('--settings FILE is written there when missing, and left as it is when present', async () => {
    const path = join(scratchDir(), 'mine.json');
    const server = await startServer({ args: ['--settings', path] });
    expect(server.stderr()).to.include('wrote the settings file with every default');
    await server.stop();
    expect(JSON.parse(readFileSync(path, 'utf8'))).to.deep.equal(defaultSettings());
    writeFileSync(path, JSON.stringify({ streams: { max_buffers: 7 } }));
    expect((await printed(['--settings', path])).streams.max_buffers).to.equal(7);
    expect(JSON.parse(readFileSync(path, 'utf8'))).to.deep.equal({ streams: { max_buffers: 7 } });
  });

  it('precedence: defaults < file < environment < flags', async () => {
    const file = writeSettings({ http: { port: 1111 }, tcp: { port: 2222 }, udp: { port: 3333 }, streams: { max_buffers: 9 } });
    const env = { RKLLM_MCP_TCP_PORT: '4444', RKLLM_MCP_UDP_PORT: '5555' };
    const merged = await printed(['--settings', file, '--udp', '6666'], { env });
    expect(merged.http.port, 'file over default').to.equal(1111);
    expect(merged.tcp.port, 'environment over file').to.equal(4444);
    expect(merged.udp.port, 'flag over environment').to.equal(6666);
    expect(merged.streams.max_buffers).to.equal(9);
    expect(merged.ws.port, 'default').to.equal(8083);
  });

  it('--print-settings prints the merged result, redacts API keys, and writes no file', async () => {
    const cwd = scratchDir();
    const merged = await printed([], { cwd, env: { RKLLM_MCP_AUTH_API_KEYS: 'print-me-not-0123456789' } });
    expect(merged).to.deep.include({ host: '127.0.0.1', log_level: 'info' });
    expect(merged.auth.api_keys).to.have.lengthOf(1);
    expect(JSON.stringify(merged)).not.to.include('print-me-not');
    expect(existsSync(join(cwd, 'settings.json'))).to.equal(false);
  });

  const rejected: Array<[string, { args?: string[]; env?: Record<string, string>; file?: object }, string]> = [
    ['a bad value in the file', { file: { limits: { max_streams: -1 } } }, 'setting "limits.max_streams" must be >= 0'],
    ['an unknown setting in the file', { file: { auth: { keys: [] } } }, 'setting "auth.keys" is not a known setting'],
    [
      'a key too short to be safe',
      { file: { auth: { api_keys: ['short'] } } },
      'setting "auth.api_keys.0" must NOT have fewer than 16 characters',
    ],
    [
      'a bad value in the environment',
      { env: { RKLLM_MCP_SHUTDOWN_DRAIN_TIMEOUT_S: 'soon' } },
      'RKLLM_MCP_SHUTDOWN_DRAIN_TIMEOUT_S (setting "shutdown.drain_timeout_s") must be a number',
    ],
    [
      'an out-of-range value in the environment',
      { env: { RKLLM_MCP_LIMITS_REQUEST_BURST: '0' } },
      'environment: setting "limits.request_burst" must be >= 1',
    ],
    ['an unknown variable', { env: { RKLLM_MCP_HTTP_PROT: '1' } }, 'RKLLM_MCP_HTTP_PROT is not a known setting'],
    ['a bad value among the flags', { args: ['--log-level', 'loud'] }, 'command line: setting "log_level" must be one of'],
  ];
  for (const [what, given, message] of rejected) {
    it(`rejects ${what} with exit code 2, naming the key and what it expects`, async () => {
      const args = [...(given.args ?? []), ...(given.file ? ['--settings', writeSettings(given.file as Record<string, unknown>)] : [])];
      const { code, stderr } = await runCli(args, given.env ? { env: given.env } : {});
      expect(code).to.equal(2);
      expect(stderr).to.include(message);
    });
  }
});

// `rkllm-mcp chat` and `rkllm-mcp run`, spawned, against a real server in this process.
const GREEDY_FLAGS = ['--top-k', '1', '--temperature', '0'];
const GREEDY = { top_k: 1, temperature: 0 };

/** A spawned command: its output so far, and waits on it. */
function watch(proc: ChildProcess): {
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
  output: (done: (stdout: string) => boolean) => Promise<void>;
} {
  let stdout = '';
  let stderr = '';
  const waiters = new Set<() => void>();
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
    stdout += d;
    for (const w of [...waiters]) w();
  });
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => proc.once('close', (code) => resolve(code)));
  const output = (done: (stdout: string) => boolean): Promise<void> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`stdout not as awaited within 30 s: ${stdout}\n${stderr}`)), 30_000);
      const check = (): void => {
        if (!done(stdout)) return;
        clearTimeout(timer);
        waiters.delete(check);
        resolve();
      };
      waiters.add(check);
      check();
    });
  return { stdout: () => stdout, stderr: () => stderr, exited, output };
}

describe('rkllm-mcp chat and run', function () {
  this.timeout(120_000);
  let server: TestServer;

  before(async () => {
    server = await startTestServer();
  });
  after(async () => {
    await server?.close();
  });

  /** Tokens the KV cache holds in its fullest slot: what the kept history holds. */
  async function kvTokens(): Promise<number> {
    const { cache_sizes } = await server.http.result<{ cache_sizes: number[] }>('rkllm_get_kv_cache_size', {});
    return Math.max(...cache_sizes);
  }

  /** What a conversation of greedy turns answers, through rkllm_run with keep_history. */
  async function conversation(prompts: string[], maxNewTokens: number): Promise<string[]> {
    await server.http.result('rkllm_clear_kv_cache', { keep_system_prompt: 1 });
    const replies: string[] = [];
    for (const prompt of prompts) {
      const { text } = await server.http.result('rkllm_run', {
        prompt_input: prompt,
        keep_history: 1,
        max_new_tokens: maxNewTokens,
        ...GREEDY,
      });
      replies.push(text as string);
    }
    return replies;
  }

  it('chat on pipes: two input lines are two turns of one conversation, each reply on stdout, exit 0 at end of input', async () => {
    const prompts = ['Alice was beginning', 'The Queen said'];
    await conversation(prompts.slice(1), 30);
    const oneTurn = await kvTokens();
    const expected = await conversation(prompts, 30);
    const twoTurns = await kvTokens();
    expect(twoTurns, 'the history holds both turns').to.be.greaterThan(oneTurn);
    const child = spawnCli(['chat', '--url', server.url, '--max-new-tokens', '30', ...GREEDY_FLAGS]);
    const chat = watch(child);
    child.stdin!.end(prompts.map((p) => `${p}\n`).join(''));
    expect(await chat.exited, chat.stderr()).to.equal(0);
    expect(chat.stdout()).to.equal(`${expected[0]}\n${expected[1]}\n`);
    expect(await kvTokens(), 'chat kept the conversation (keep_history)').to.equal(twoTurns);
  });

  for (const scheme of ['http', 'ws']) {
    it(`run prints the same text as rkllm_run (over ${scheme})`, async () => {
      const params = { prompt_input: 'Alice was beginning', max_new_tokens: 60, ...GREEDY };
      const { text } = await server.http.result('rkllm_run', params);
      const url = scheme === 'http' ? server.url : `ws://${server.addresses.ws}`;
      const run = watch(spawnCli(['run', '--url', url, '--max-new-tokens', '60', ...GREEDY_FLAGS, params.prompt_input]));
      expect(await run.exited, run.stderr()).to.equal(0);
      expect(run.stdout()).to.equal(`${text}\n`);
    });
  }

  it('run connects to the HTTP port of the settings when --url is not given', async () => {
    const port = server.addresses.http!.split(':')[1]!;
    const run = watch(spawnCli(['run', '--max-new-tokens', '5', ...GREEDY_FLAGS, 'Once'], { env: { RKLLM_MCP_HTTP_PORT: port } }));
    expect(await run.exited, run.stderr()).to.equal(0);
    expect(run.stdout().length).to.be.greaterThan(1);
  });

  it('SIGINT during run aborts the run on the server and exits 130', async () => {
    const child = spawnCli(['run', '--url', server.url, '--max-new-tokens', '2000', ...GREEDY_FLAGS, 'Down, down, down']);
    const run = watch(child);
    await run.output((out) => out.length > 0);
    child.kill('SIGINT');
    expect(await run.exited, run.stderr()).to.equal(130);
    await server.streams.until(() => server.streams.live === 0, 'the run to be aborted');
    expect(await server.http.result('rkllm_is_running', {})).to.include({ running: false, active: 0 });
  });

  it('a usage error exits 2', async () => {
    const run = watch(spawnCli(['run', '--top-k', 'many', 'x']));
    expect(await run.exited).to.equal(2);
    expect(run.stderr()).to.match(/--top-k expects a number/);
  });

  it('SIGINT during a reply stops only that reply; the next line is answered; end of input exits 0', async () => {
    const [full] = await conversation(['Down, down, down'], 500);
    const child = spawnCli(['chat', '--url', server.url, '--max-new-tokens', '500', ...GREEDY_FLAGS]);
    const chat = watch(child);
    child.stdin!.write('Down, down, down\n');
    await chat.output((out) => out.length > 0);
    child.kill('SIGINT');
    await chat.output((out) => out.includes('\n'));
    await server.streams.until(() => server.streams.live === 0, 'the first reply to stop');
    expect(await server.http.result('rkllm_is_running', {})).to.include({ running: false, active: 0 });
    child.stdin!.end('The King\n');
    expect(await chat.exited, chat.stderr()).to.equal(0);
    const out = chat.stdout();
    let k = 0;
    while (k < out.length && out[k] === full![k]) k++;
    expect(k, 'the first reply was cut short').to.be.lessThan(full!.length);
    expect(out[k], 'the first reply ends with a newline').to.equal('\n');
    expect(out.slice(k + 1).length, 'the second line got a reply').to.be.greaterThan(1);
    expect(out.endsWith('\n')).to.equal(true);
  });

  it('a second SIGINT exits 0, with the input still open', async () => {
    const child = spawnCli(['chat', '--url', server.url, '--max-new-tokens', '500', ...GREEDY_FLAGS]);
    const chat = watch(child);
    child.stdin!.write('Down, down, down\n');
    await chat.output((out) => out.length > 0);
    child.kill('SIGINT');
    // Two signals sent at once may arrive as one: the second goes once the first has stopped the reply.
    await chat.output((out) => out.includes('\n'));
    child.kill('SIGINT');
    expect(await chat.exited, chat.stderr()).to.equal(0);
  });
});

describe('rkllm-mcp --engine rkllm --parallel N at start', function () {
  this.timeout(60_000);

  it('refuses more instances than the memory holds before the runtime is called, saying how many fit; --parallel 0 is a usage error', async () => {
    const { path: big, remove } = modelOfMostMemory();
    try {
      const library = await buildTwin('1.3');
      const ports = ['--http', '0', '--tcp', '0', '--udp', '0', '--ws', '0'];
      const args = ['--engine', 'rkllm', '--model', big, '--rkllm-lib', library, ...ports];
      const refused = await runCli([...args, '--parallel', '3']);
      expect(refused.code).to.not.equal(0);
      expect(refused.stderr)
        .to.match(/x 3 instances/)
        .and.match(/run at most 1 instance \(--parallel 1\)/);
      const zero = await runCli([...args, '--parallel', '0']);
      expect(zero.code).to.equal(2);
      expect(zero.stderr).to.include('--parallel expects an integer from 1 to 256, got "0"');
    } finally {
      remove();
    }
  });
});
