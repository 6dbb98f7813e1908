import { readFile } from 'node:fs/promises';
import type { IncomingHttpHeaders } from 'node:http';
import { sendJson, type HttpExchange, type HttpRoute } from '../../transports/http-route.js';

export interface PlaygroundOptions {
  /** The WebSocket transport's bound address ("host:port"), read at each request; undefined when it is off. */
  wsAddress: () => string | undefined;
  /** Whether the server has API keys: the pages then ask for one (the chat sends it as a bearer token, the playground with `authenticate`). */
  keysRequired: boolean;
  /** The folder holding the pages' files (default: `public/` of this package). */
  root?: URL;
}

/** The content types of the pages' files, by extension. */
const TYPES: Readonly<Record<string, string>> = {
  html: 'text/html; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
};

/**
 * The pages' files, by URL path: the file under the root. `/` is the chat, `/complete` the
 * completion playground; `/vendor/` holds the libraries the chat uses (see its README).
 */
const FILES = new Map([
  ['/', 'chat/index.html'],
  ['/complete', 'playground/index.html'],
  ...['chat/app.js', 'chat/conversations.js', 'chat/markdown.js', 'chat/style.css', 'vendor/marked.esm.js', 'vendor/purify.min.js']
    .concat(['playground/app.js', 'playground/style.css'])
    .map((file) => [`/${file}`, file] as const),
]);

const CONFIG_PATH = '/playground/config.json';

/** From dist/src/faces/playground/ (or src/faces/playground/) up to the package's root. */
const DEFAULT_ROOT = new URL('../../../../public/', import.meta.url);

/**
 * The pages load only files of their own origin and talk to it (the chat) or to the server's
 * WebSocket port (the playground): nothing from elsewhere. No page may frame them (clickjacking):
 * frame-ancestors, and X-Frame-Options for browsers without it.
 */
const CSP =
  "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/** Whether a request for `/` asks for a page: a browser's Accept header names text/html; JSON-RPC clients do not. */
function wantsHtml(headers: IncomingHttpHeaders | undefined): boolean {
  return /\btext\/html\b/.test(headers?.accept ?? '');
}

/**
 * The pages: the chat at `GET /` (for requests that accept HTML), which streams from
 * `/v1/chat/completions`; the completion playground at `GET /complete`, which streams over
 * WebSocket; their scripts and styles; and a small JSON document telling them where the WebSocket
 * transport listens and whether keys are needed. The files are static, served from the package: no
 * CDN, no external fonts.
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
      const file = FILES.get(url.pathname)!;
      const body = await load(file);
      res
        .writeHead(200, {
          ...headers,
          'content-type': TYPES[file.slice(file.lastIndexOf('.') + 1)],
          'content-length': body.length,
          'content-security-policy': CSP,
          'x-frame-options': 'DENY',
        })
        .end(body);
    },
  };
}
