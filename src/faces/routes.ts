/** The faces on the HTTP port: OpenAI under `/v1`, Ollama under `/api`; while the model loads, 503 in each one's shape. */
import { fault } from '../errors.js';
import { sendError, type HttpRoute } from '../transports/http-route.js';
import type { HubDeps } from './http-kit.js';
import { OLLAMA_METHODS, ollamaRoute } from './ollama/routes.js';
import { OPENAI_METHODS, openaiRoute } from './openai/routes.js';

/** The names the faces count their requests under in the metrics. */
export const FACE_METHODS: readonly string[] = [...OPENAI_METHODS, ...OLLAMA_METHODS];

export function faceRoutes(deps: HubDeps): HttpRoute[] {
  return [openaiRoute(deps), ollamaRoute(deps)];
}

/** The faces while the model loads: 503 with Retry-After, in each API's own error shape. */
export function loadingRoute(): HttpRoute {
  return {
    matches: (_method, path) => path.startsWith('/v1/') || path.startsWith('/api/'),
    serve: async ({ req, res, url }) => {
      req.resume();
      const api = url.pathname.startsWith('/v1/') ? 'openai' : 'ollama';
      sendError(res, fault('ENGINE_UNAVAILABLE', 'server_loading', {}, { retry_after: 1 }), api);
    },
  };
}
