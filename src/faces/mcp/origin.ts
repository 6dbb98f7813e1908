import { isLoopbackAddress } from './loopback.js';

/**
 * Guards `/mcp` against DNS rebinding: a web page on another site whose name is made to resolve to
 * this machine. A browser always names the page's origin in `Origin` and the name it resolved in
 * `Host`: an `Origin` must be a loopback origin or one of `allowed`; and when the server listens on
 * loopback only, `Host` must name loopback too. Clients that are not browsers send no `Origin`.
 * Returns why the request is refused, or undefined when it may pass.
 */
export function refuseOrigin(
  headers: { origin?: string | undefined; host?: string | undefined },
  allowed: readonly string[],
  loopbackOnly: boolean,
): string | undefined {
  const { origin, host } = headers;
  if (origin !== undefined && !allowed.includes(origin)) {
    let hostname: string;
    try {
      hostname = new URL(origin).hostname;
    } catch {
      return `Forbidden: the Origin header "${origin}" is not an origin`;
    }
    if (!isLoopbackAddress(hostname)) return `Forbidden: Origin ${origin} is not allowed (setting mcp.allowed_origins)`;
  }
  if (loopbackOnly && host !== undefined) {
    let hostname: string;
    try {
      hostname = new URL(`http://${host}`).hostname;
    } catch {
      return `Forbidden: the Host header "${host}" is not a host`;
    }
    if (!isLoopbackAddress(hostname)) return `Forbidden: Host ${host} is not this machine's loopback address`;
  }
  return undefined;
}
