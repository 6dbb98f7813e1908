/**
 * The seed plan's test client (`tests/client.js`), ported: it starts a real server with the
 * built-in model (in this process, on free ports) and speaks JSON-RPC to it over real HTTP.
 */
import { HttpRpc, type RpcResponse } from './helpers/rpc.js';
import { startTestServer, type TestServer } from './helpers/server.js';

export class RKLLMTestClient {
  #server: TestServer | undefined;
  #starting: Promise<TestServer> | undefined;
  #rpc: HttpRpc | undefined;

  /** @param settings over the test defaults; the seed's test methods need `diagnostics`. */
  constructor(readonly settings: Record<string, unknown> = { diagnostics: true }) {}

  async startServer(): Promise<void> {
    this.#starting = startTestServer({ settings: this.settings });
  }

  /** Resolves once the server serves (its model loaded). */
  async waitForServer(): Promise<void> {
    this.#server = await this.#starting!;
    this.#rpc = new HttpRpc(this.#server.url);
  }

  httpRequest<T = any>(method: string, params?: unknown): Promise<RpcResponse<T>> {
    return this.#rpc!.call<T>(method, params);
  }

  async stopServer(): Promise<void> {
    await this.#server?.close();
  }
}
