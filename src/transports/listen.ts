import { once } from 'node:events';
import type { AddressInfo, Server } from 'node:net';

/** "host:port", with an IPv6 host in brackets. */
export function formatAddress(address: AddressInfo): string {
  return `${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
}

/** Binds a TCP-based server (net or http) and resolves with its bound address; rejects if binding fails. */
export async function listen(server: Server, host: string, port: number): Promise<string> {
  server.listen(port, host);
  await once(server, 'listening');
  return formatAddress(server.address() as AddressInfo);
}
