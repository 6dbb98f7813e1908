import type { IncomingHttpHeaders } from 'node:http';
import { isIP } from 'node:net';
import { exposesBeyondLoopback } from '../auth.js';
import { fault, type ServerError } from '../errors.js';

/** The host name of a `Host` header or an origin's authority (an IPv6 address without brackets), or undefined when it does not parse. */
function hostName(authority: string): string | undefined {
  try {
    return new URL(`http://${authority}`).hostname.replace(/^\[(.*)\]$/, '$1');
  } catch {
    return undefined;
  }
}

/**
 * A page this server served itself: the origin names the host the request was sent to (its `Host`
 * header) by an address (an IP, or localhost), and either the port it was sent to or one of the
 * ports this server serves pages on (`pagePorts`: the playground on the HTTP port, calling the
 * WebSocket port). A name is not enough: DNS can point any name at this server (DNS rebinding),
 * and the browser then sends that name in both.
 */
function ownOrigin(origin: string, host: string | undefined, pagePorts: readonly number[]): boolean {
  if (!URL.canParse(origin) || host === undefined) return false;
  const url = new URL(origin);
  const name = url.hostname.replace(/^\[(.*)\]$/, '$1');
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || name !== hostName(host)) return false;
  const samePort = url.host === host.toLowerCase() || pagePorts.includes(Number(url.port || (url.protocol === 'https:' ? 443 : 80)));
  return samePort && (name === 'localhost' || isIP(name) !== 0);
}

/**
 * MCP's extra guard against DNS rebinding, for a server bound to loopback only: a `Host` that does
 * not name loopback is refused (after rebinding, a browser's same-origin GET carries no `Origin`,
 * but its `Host` names the attacker's domain). Not applied to the rest of the port, where a
 * reverse proxy may forward its own `Host`.
 */
export function foreignHost(headers: IncomingHttpHeaders): ServerError | undefined {
  const name = headers.host === undefined ? undefined : hostName(headers.host);
  if (headers.host === undefined || (name !== undefined && !exposesBeyondLoopback(name))) return undefined;
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
