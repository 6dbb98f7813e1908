/** The faces while the model loads: 503 with Retry-After, in each API's own error shape. */
import { fault } from '../errors.js';
import { sendError, type HttpRoute } from '../transports/http-route.js';

export function loadingRoute(): HttpRoute {
  return {
    matches: (_method, path) => path.startsWith('/v1/') || path.startsWith('/api/'),
    serve: async ({ req, res, url }) => {
      req.resume();
      sendError(
        res,
        fault('ENGINE_UNAVAILABLE', 'server_loading', {}, { retry_after: 1 }),
        url.pathname.startsWith('/v1/') ? 'openai' : 'ollama',
      );
    },
  };
}
