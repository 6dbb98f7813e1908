/** The OpenAI-compatible API under `/v1` on the HTTP port. */
import type { Client } from '../../clients.js';
import type { HttpExchange, HttpRoute } from '../../transports/http-route.js';
import { checkModel, modelId } from '../generation-request.js';
import { readJson, sendJson, serveFace, type HubDeps } from '../http-kit.js';
import { chatCompletions } from './chat.js';
import { completions } from './completions.js';
import { embeddings } from './embeddings.js';
import { answerError } from './wire.js';

type Handler = (deps: HubDeps, exchange: HttpExchange, client: Client, body: Record<string, unknown>) => Promise<void>;

const POSTS: ReadonlyMap<string, [string, Handler]> = new Map([
  ['/v1/chat/completions', ['openai.chat.completions', chatCompletions]],
  ['/v1/completions', ['openai.completions', completions]],
  ['/v1/embeddings', ['openai.embeddings', embeddings]],
]);

/** The names the OpenAI face counts its requests under in the metrics. */
export const OPENAI_METHODS = ['openai.models', ...[...POSTS.values()].map(([name]) => name)];

function model(deps: HubDeps): Record<string, unknown> {
  return { id: modelId(deps.engine), object: 'model', created: 0, owned_by: 'rkllm-mcp' };
}

/** Lists the loaded model, or returns it by id (404 for any other). */
async function models(deps: HubDeps, exchange: HttpExchange): Promise<void> {
  const id = exchange.url.pathname.slice('/v1/models/'.length);
  if (exchange.url.pathname.startsWith('/v1/models/')) {
    checkModel(deps.engine, decodeURIComponent(id));
    sendJson(exchange.res, 200, model(deps));
    return;
  }
  sendJson(exchange.res, 200, { object: 'list', data: [model(deps)] });
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
        await serveFace(deps, exchange, name, async (client) => handler(deps, exchange, client, await readJson(exchange)), answerError);
      } else if ((pathname === '/v1/models' || pathname.startsWith('/v1/models/')) && method === 'GET') {
        await serveFace(deps, exchange, 'openai.models', () => models(deps, exchange), answerError);
      } else {
        exchange.req.resume();
        const message = `Unknown request URL: ${method} ${pathname}. The OpenAI API here serves GET /v1/models, POST /v1/chat/completions, /v1/completions and /v1/embeddings`;
        sendJson(exchange.res, 404, { error: { message, type: 'invalid_request_error', param: null, code: 'unknown_url' } });
      }
    },
  };
}
