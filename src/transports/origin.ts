import type { IncomingHttpHeaders } from 'node:http';
import { isIP } from 'node:net';
import { fault, type ServerError } from '../errors.js';

/**
 * A page this server served itself: the origin names exactly the host and port the request was
 * sent to (its `Host` header), by an address (an IP, or localhost). A name is not enough: DNS can
 * point any name at this server (DNS rebinding), and the browser then sends that name in both.
 */
function ownOrigin(origin: string, host: string | undefined): boolean {
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return false;
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || host === undefined || url.host !== host.toLowerCase()) return false;
  const name = url.hostname.replace(/^\[(.*)\]$/, '$1');
  return name === 'localhost' || isIP(name) !== 0;
}

/**
 * The one rule against browsers reaching the server from other sites, for every HTTP request
 * (JSON-RPC and every face on the port) and every WebSocket handshake: a request that carries an
 * `Origin` header is refused (FORBIDDEN, HTTP 403) unless that origin is the server's own or is
 * listed in `allowed` (setting `http.allowed_origins`). Requests without `Origin` (curl, SDKs,
 * anything that is not a browser) pass. Returns the refusal, or undefined.
 */
export function foreignOrigin(headers: IncomingHttpHeaders, allowed: ReadonlySet<string>): ServerError | undefined {
  const origin = headers.origin;
  if (origin === undefined || allowed.has(origin) || ownOrigin(origin, headers.host)) return undefined;
  return fault('FORBIDDEN', 'origin', { origin: JSON.stringify(origin) }, { origin });
}
