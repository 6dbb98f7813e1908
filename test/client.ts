/**
 * The seed plan's test client (`tests/client.js`), ported: it starts the real server process with
 * the built-in model and speaks JSON-RPC to it over real HTTP.
 */
import { HttpRpc, type RpcResponse } from './helpers/rpc.js';
import { startServer, type ServerProcess } from './helpers/server-process.js';

export class RKLLMTestClient {
  #server: ServerProcess | undefined;
  #starting: Promise<ServerProcess> | undefined;
  #rpc: HttpRpc | undefined;

  /** @param args extra server flags; the seed's test methods need --diagnostics. */
  constructor(readonly args: string[] = ['--diagnostics']) {}

  async startServer(): Promise<void> {
    this.#starting = startServer({ args: this.args });
  }

  /** Resolves once the server printed its readiness line. */
  async waitForServer(): Promise<void> {
    this.#server = await this.#starting!;
    this.#rpc = new HttpRpc(this.#server.url);
  }

  httpRequest<T = any>(method: string, params?: unknown): Promise<RpcResponse<T>> {
    return this.#rpc!.call<T>(method, params);
  }

  async stopServer(): Promise<void> {
    await this.#server?.stop();
  }
}
