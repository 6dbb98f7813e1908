// The transport flags of the command line, run as a real process.
import { expect } from 'chai';
import { runCli, startServer, writeSettings } from '../helpers/server-process.js';

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
