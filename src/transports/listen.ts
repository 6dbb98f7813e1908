import type { AddressInfo, Server } from 'node:net';

/** "host:port", with an IPv6 host in brackets. */
export function formatAddress(address: AddressInfo): string {
  return `${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
}

/** Binds a TCP-based server (net or http) and resolves with its bound address; rejects if binding fails. */
export async function listen(server: Server, host: string, port: number): Promise<string> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return formatAddress(server.address() as AddressInfo);
}

/** A TCP-based server (net or http) on one address: bound once, stopped once. */
export class Listener {
  readonly #server: Server;
  readonly #host: string;
  readonly #port: number;
  #stopped: Promise<void> | undefined;

  constructor(server: Server, host: string, port: number) {
    this.#server = server;
    this.#host = host;
    this.#port = port;
  }

  /** Binds; resolves with the bound address, rejects if binding fails. */
  start(): Promise<string> {
    return listen(this.#server, this.#host, this.#port);
  }

  /** Takes no new connections; resolves once the listener is closed and the connections the server counts have ended. Idempotent. */
  stop(): Promise<void> {
    this.#stopped ??= new Promise<void>((resolve) => this.#server.close(() => resolve()));
    return this.#stopped;
  }
}
