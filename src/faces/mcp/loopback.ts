import { isIP } from 'node:net';

/** Whether a host name (as a URL's `hostname` gives it, IPv6 in brackets) is this machine's loopback. */
export function isLoopbackAddress(hostname: string): boolean {
  const bare = hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname;
  if (bare === 'localhost' || bare.endsWith('.localhost')) return true;
  if (isIP(bare) === 4) return bare.startsWith('127.');
  return bare === '::1' || bare === '0:0:0:0:0:0:0:1';
}
