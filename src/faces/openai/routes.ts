/** The OpenAI-compatible API under `/v1` on the HTTP port. */
import type { Client } from '../../clients.js';
import { sendJson, type HttpExchange, type HttpRoute } from '../../transports/http-route.js';
import type { ModelEntry } from '../../models/catalog.js';
import { modelNotFound, readObject, serveFace, type HubDeps } from '../http-kit.js';
import { chatCompletions } from './chat.js';
import { completions } from './completions.js';
import { embeddings } from './embeddings.js';

type Handler = (deps: HubDeps, exchange: HttpExchange, client: Client, body: Record<string, unknown>) => Promise<void>;

const POSTS: ReadonlyMap<string, [string, Handler]> = new Map([
  ['/v1/chat/completions', ['openai.chat.completions', chatCompletions]],
  ['/v1/completions', ['openai.completions', completions]],
  ['/v1/embeddings', ['openai.embeddings', embeddings]],
]);

/** The names the OpenAI face counts its requests under in the metrics. */
export const OPENAI_METHODS = ['openai.models', ...[...POSTS.values()].map(([name]) => name)];

function model(entry: ModelEntry): Record<string, unknown> {
  return { id: entry.name, object: 'model', created: Math.floor(entry.modifiedAt.getTime() / 1000), owned_by: 'rkllm-mcp' };
}

/** The model `name` stands for: its alias's (`openai.model_aliases`), else itself. */
function unalias(deps: HubDeps, name: unknown): unknown {
  const aliases = deps.modelAliases ?? {};
  return typeof name === 'string' && Object.hasOwn(aliases, name) ? aliases[name] : name;
}

/** Lists every model requests may name (the built-in one, the folder's, their aliases), or returns one by id (404 for any other). */
async function models(deps: HubDeps, exchange: HttpExchange): Promise<void> {
  if (exchange.url.pathname.startsWith('/v1/models/')) {
    const id = decodeURIComponent(exchange.url.pathname.slice('/v1/models/'.length));
    const entry = await deps.models.find(unalias(deps, id) as string);
    if (!entry) throw modelNotFound(id);
    sendJson(exchange.res, 200, { ...model(entry), id });
    return;
  }
  const entries = await deps.models.list();
  const aliased = Object.entries(deps.modelAliases ?? {}).flatMap(([alias, name]) => {
    const entry = entries.find((e) => e.name === name);
    return entry ? [{ ...model(entry), id: alias }] : [];
  });
  sendJson(exchange.res, 200, { object: 'list', data: [...entries.map(model), ...aliased] });
}

/** Every path under `/v1`: the endpoints above, and OpenAI's 404 for the rest. */
export function openaiRoute(deps: HubDeps): HttpRoute {
  return {
    matches: (_method, path) => path === '/v1' || path.startsWith('/v1/'),
    serve: async (exchange) => {
      const { pathname } = exchange.url;
      const method = exchange.req.method ?? 'GET';
      const post = POSTS.get(pathname);
      if (post && method === 'POST') {
        const [name, handler] = post;
        await serveFace(
          deps,
          exchange,
          name,
          async (client) => {
            const body = await readObject(exchange);
            if (body.model !== undefined) body.model = unalias(deps, body.model);
            await handler(deps, exchange, client, body);
          },
          'openai',
        );
      } else if ((pathname === '/v1/models' || pathname.startsWith('/v1/models/')) && method === 'GET') {
        await serveFace(deps, exchange, 'openai.models', () => models(deps, exchange), 'openai');
      } else {
        exchange.req.resume();
        const message = `Unknown request URL: ${method} ${pathname}. The OpenAI API here serves GET /v1/models, POST /v1/chat/completions, /v1/completions and /v1/embeddings`;
        sendJson(exchange.res, 404, { error: { message, type: 'invalid_request_error', param: null, code: 'unknown_url' } });
      }
    },
  };
}
