// The command line, run as a real process: its flags, usage errors, exit codes and readiness line;
// bad models and impossible settings refused at start, and SIGTERM while the model loads.
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { ensureBuiltinModel } from '../../src/gguf/builtin.js';
import { patchedCopy } from '../helpers/gguf-patch.js';
import { TWIN_MODELS, buildTwin } from '../helpers/rkllm-twin.js';
import { runCli, scratchDir, spawnCli, startServer, writeSettings } from '../helpers/server-process.js';

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

  it('refuses a FIFO given as the model instead of waiting on it', async () => {
    const fifo = join(dir, 'model.gguf');
    execFileSync('mkfifo', [fifo]);
    const { code, stderr } = await runCli(['--model', fifo, ...NO_PORTS]);
    expect(code).to.equal(1);
    expect(stderr).to.include(fifo).and.include('is a FIFO, not a regular file');
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
