/** The faces while the model loads: 503 with Retry-After, in each API's own error shape. */
import { fault } from '../errors.js';
import type { HttpRoute } from '../transports/http-route.js';
import { httpFault, sendJson } from './http-kit.js';
import { answerError } from './openai/wire.js';

export function loadingRoute(): HttpRoute {
  return {
    matches: (_method, path) => path.startsWith('/v1/') || path.startsWith('/api/'),
    serve: async ({ req, res, url }) => {
      req.resume();
      const answer = httpFault(fault('ENGINE_UNAVAILABLE', 'server_loading', {}, { retry_after: 1 }));
      if (url.pathname.startsWith('/v1/')) answerError(res, answer);
      else sendJson(res, answer.status, { error: answer.error.message }, answer.headers);
    },
  };
}
