import type { IncomingHttpHeaders } from 'node:http';
import { isIP } from 'node:net';
import { exposesBeyondLoopback } from '../auth.js';
import { fault, type ServerError } from '../errors.js';

/**
 * A page this server served itself: the origin names the host the request was sent to (its `Host`
 * header) by an address (an IP, or localhost), and either the port it was sent to or one of the
 * ports this server serves pages on (`pagePorts`: the playground on the HTTP port, calling the
 * WebSocket port). A name is not enough: DNS can
 * point any name at this server (DNS rebinding), and the browser then sends that name in both.
 */
function ownOrigin(origin: string, host: string | undefined, pagePorts: readonly number[]): boolean {
  let url: URL;
  let sentTo: URL;
  try {
    url = new URL(origin);
    sentTo = new URL(`http://${host ?? ''}`);
  } catch {
    return false;
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || host === undefined || url.hostname !== sentTo.hostname) return false;
  const samePort = url.host === host.toLowerCase() || pagePorts.includes(Number(url.port || (url.protocol === 'https:' ? 443 : 80)));
  const name = url.hostname.replace(/^\[(.*)\]$/, '$1');
  return samePort && (name === 'localhost' || isIP(name) !== 0);
}

function loopbackHost(host: string): boolean {
  let name: string;
  try {
    name = new URL(`http://${host}`).hostname.replace(/^\[(.*)\]$/, '$1');
  } catch {
    return false;
  }
  return !exposesBeyondLoopback(name);
}

/**
 * MCP's extra guard against DNS rebinding, for a server bound to loopback only: a `Host` that does
 * not name loopback is refused (after rebinding, a browser's same-origin GET carries no `Origin`,
 * but its `Host` names the attacker's domain). Not applied to the rest of the port, where a
 * reverse proxy may forward its own `Host`.
 */
export function foreignHost(headers: IncomingHttpHeaders): ServerError | undefined {
  if (headers.host === undefined || loopbackHost(headers.host)) return undefined;
  return fault('FORBIDDEN', 'host', { host: JSON.stringify(headers.host) }, { host: headers.host });
}

/**
 * The one rule against browsers reaching the server from other sites, for every HTTP request
 * (JSON-RPC and every face on the port) and every WebSocket handshake: a request that carries an
 * `Origin` header is refused (FORBIDDEN, HTTP 403) unless that origin is the server's own or is
 * listed in `allowed` (setting `http.allowed_origins`). Requests without `Origin` (curl, SDKs,
 * anything that is not a browser) pass. Returns the refusal, or undefined.
 */
export function foreignOrigin(
  headers: IncomingHttpHeaders,
  allowed: ReadonlySet<string>,
  pagePorts: readonly number[] = [],
): ServerError | undefined {
  const origin = headers.origin;
  if (origin === undefined || allowed.has(origin) || ownOrigin(origin, headers.host, pagePorts)) return undefined;
  return fault('FORBIDDEN', 'origin', { origin: JSON.stringify(origin) }, { origin });
}
