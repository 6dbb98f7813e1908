// The command line, run as a real process: its flags, usage errors, exit codes and readiness line.
import { expect } from 'chai';
import { TWIN_MODELS, buildTwin } from '../helpers/rkllm-twin.js';
import { runCli, startServer, writeSettings } from '../helpers/server-process.js';

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
