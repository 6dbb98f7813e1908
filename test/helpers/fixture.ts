import type { LiveRpc, LiveTransport } from './live-rpc.js';
import type { HttpRpc } from './rpc.js';
import { startTestServer, type TestServer, type TestServerOptions } from './server.js';

/** A server shared by the tests of one `describe` block, and the live clients each test opens. */
export interface LiveFixture {
  readonly server: TestServer;
  readonly http: HttpRpc;
  /** Opens a client on `transport`; it is closed after the test. */
  readonly open: (transport: LiveTransport) => Promise<LiveRpc>;
  /** Closes `client` after the test. */
  readonly track: <T extends LiveRpc>(client: T) => T;
}

/** Registers the hooks: start the server (in this process) before the block, close each test's clients after it, close the server after the block. */
export function liveFixture(options: TestServerOptions = {}): LiveFixture {
  let server: TestServer | undefined;
  let clients: LiveRpc[] = [];
  const track = <T extends LiveRpc>(client: T): T => {
    clients.push(client);
    return client;
  };
  before(async () => {
    server = await startTestServer(options);
  });
  afterEach(async () => {
    await Promise.all(clients.map((c) => c.close()));
    clients = [];
  });
  after(async () => {
    await server?.close();
  });
  return {
    get server() {
      return server!;
    },
    get http() {
      return server!.http;
    },
    open: async (transport) => track(await server!.connect(transport)),
    track,
  };
}
