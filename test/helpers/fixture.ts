import { connectLive, type LiveRpc, type LiveTransport } from './live-rpc.js';
import { HttpRpc } from './rpc.js';
import { startServer, type ServerProcess, type StartOptions } from './server-process.js';

/** A server shared by the tests of one `describe` block, and the live clients each test opens. */
export interface LiveFixture {
  readonly server: ServerProcess;
  readonly http: HttpRpc;
  /** Opens a client on `transport`; it is closed after the test. */
  readonly open: (transport: LiveTransport) => Promise<LiveRpc>;
  /** Closes `client` after the test. */
  readonly track: <T extends LiveRpc>(client: T) => T;
}

/** Registers the hooks: start the server before the block, close each test's clients after it, stop the server after the block. */
export function liveFixture(options: StartOptions = {}): LiveFixture {
  let server: ServerProcess | undefined;
  let http: HttpRpc | undefined;
  let clients: LiveRpc[] = [];
  const track = <T extends LiveRpc>(client: T): T => {
    clients.push(client);
    return client;
  };
  before(async () => {
    server = await startServer(options);
    http = new HttpRpc(server.url);
  });
  afterEach(async () => {
    await Promise.all(clients.map((c) => c.close()));
    clients = [];
  });
  after(async () => {
    await server?.stop();
  });
  return {
    get server() {
      return server!;
    },
    get http() {
      return http!;
    },
    open: async (transport) => track(await connectLive(transport, server!.addresses)),
    track,
  };
}
