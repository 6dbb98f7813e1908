/** The Ollama-compatible API under `/api` on the HTTP port. */
import type { Client } from '../../clients.js';
import { sendJson, type HttpExchange, type HttpRoute } from '../../transports/http-route.js';
import { readObject, serveFace, type HubDeps } from '../http-kit.js';
import { embed, embeddingsLegacy } from './embed.js';
import { chat, generate } from './generate.js';
import { ps, show, tags, version } from './info.js';

type Handler = (deps: HubDeps, exchange: HttpExchange, client: Client, body: Record<string, unknown>) => Promise<void>;

const POSTS: ReadonlyMap<string, Handler> = new Map<string, Handler>([
  ['/api/generate', generate],
  ['/api/chat', chat],
  ['/api/embed', embed],
  ['/api/embeddings', embeddingsLegacy],
  ['/api/show', (deps, exchange, _client, body) => show(deps, exchange, body)],
]);

const GETS: ReadonlyMap<string, (deps: HubDeps, exchange: HttpExchange) => Promise<void>> = new Map([
  ['/api/version', version],
  ['/api/tags', tags],
  ['/api/ps', ps],
]);

/** The names the Ollama face counts its requests under in the metrics. */
export const OLLAMA_METHODS = [...POSTS.keys(), ...GETS.keys()].map((path) => `ollama.${path.slice('/api/'.length)}`);

/** Every path under `/api`: the endpoints above, and a 404 in Ollama's shape for the rest. */
export function ollamaRoute(deps: HubDeps): HttpRoute {
  return {
    matches: (_method, path) => path === '/api' || path.startsWith('/api/'),
    serve: async (exchange) => {
      const { pathname } = exchange.url;
      const method = exchange.req.method ?? 'GET';
      const name = `ollama.${pathname.slice('/api/'.length)}`;
      const post = method === 'POST' ? POSTS.get(pathname) : undefined;
      const get = method === 'GET' || method === 'HEAD' ? GETS.get(pathname) : undefined;
      if (post) {
        await serveFace(deps, exchange, name, async (client) => post(deps, exchange, client, await readObject(exchange)), 'ollama');
      } else if (get) {
        await serveFace(deps, exchange, name, () => get(deps, exchange), 'ollama');
      } else {
        exchange.req.resume();
        sendJson(exchange.res, 404, { error: `${method} ${pathname} is not an endpoint of the Ollama API here` });
      }
    },
  };
}
