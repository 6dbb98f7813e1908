import { readFile } from 'node:fs/promises';
import type { IncomingHttpHeaders } from 'node:http';
import { sendJson, type HttpExchange, type HttpRoute } from '../../transports/http-route.js';

export interface PlaygroundOptions {
  /** The WebSocket transport's bound address ("host:port"), read at each request; undefined when it is off. */
  wsAddress: () => string | undefined;
  /** Whether the server has API keys: the page then asks for one and sends `authenticate`. */
  keysRequired: boolean;
  /** The folder holding the page's files (default: `public/playground/` of this package). */
  root?: URL;
}

/** The page's files, by URL path, with their content type. `/` is the page itself. */
const FILES = new Map([
  ['/', { file: 'index.html', type: 'text/html; charset=utf-8' }],
  ['/playground/app.js', { file: 'app.js', type: 'text/javascript; charset=utf-8' }],
  ['/playground/style.css', { file: 'style.css', type: 'text/css; charset=utf-8' }],
]);

const CONFIG_PATH = '/playground/config.json';

/** From dist/src/faces/playground/ (or src/faces/playground/) up to the package's root. */
const DEFAULT_ROOT = new URL('../../../../public/playground/', import.meta.url);

/** The page loads only files of its own origin and talks to the server's WebSocket port: nothing from elsewhere. */
const CSP = "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; base-uri 'none'; form-action 'none'";

/** Whether a request for `/` asks for a page: a browser's Accept header names text/html; JSON-RPC clients do not. */
function wantsHtml(headers: IncomingHttpHeaders | undefined): boolean {
  return /\btext\/html\b/.test(headers?.accept ?? '');
}

/**
 * The playground: a page at `GET /` (for requests that accept HTML), with its script and style, and
 * a small JSON document telling the page where the WebSocket transport listens. The files are
 * static, served from the package: no CDN, no external fonts. The page streams over WebSocket.
 */
export function playgroundRoute(options: PlaygroundOptions): HttpRoute {
  const root = options.root ?? DEFAULT_ROOT;
  const cache = new Map<string, Promise<Buffer>>();
  const load = (file: string): Promise<Buffer> => {
    let body = cache.get(file);
    if (!body) {
      body = readFile(new URL(file, root));
      body.catch(() => cache.delete(file));
      cache.set(file, body);
    }
    return body;
  };
  return {
    matches: (method, path, headers) => method === 'GET' && (path === '/' ? wantsHtml(headers) : FILES.has(path) || path === CONFIG_PATH),
    serve: async ({ res, url }: HttpExchange) => {
      const headers = { 'cache-control': 'no-cache', 'x-content-type-options': 'nosniff' };
      if (url.pathname === CONFIG_PATH) {
        const ws = options.wsAddress();
        const port = ws === undefined ? null : Number(ws.slice(ws.lastIndexOf(':') + 1));
        return sendJson(res, 200, { ws_port: port, keys_required: options.keysRequired }, headers);
      }
      const { file, type } = FILES.get(url.pathname)!;
      const body = await load(file);
      res.writeHead(200, { ...headers, 'content-type': type, 'content-length': body.length, 'content-security-policy': CSP }).end(body);
    },
  };
}
