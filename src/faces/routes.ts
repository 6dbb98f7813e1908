/** The faces on the HTTP port once the model is loaded: OpenAI under `/v1`, Ollama under `/api`. */
import type { HttpRoute } from '../transports/http-route.js';
import type { HubDeps } from './http-kit.js';
import { OLLAMA_METHODS, ollamaRoute } from './ollama/routes.js';
import { OPENAI_METHODS, openaiRoute } from './openai/routes.js';

export { loadingRoute } from './loading.js';

/** The names the faces count their requests under in the metrics. */
export const FACE_METHODS: readonly string[] = [...OPENAI_METHODS, ...OLLAMA_METHODS];

export function faceRoutes(deps: HubDeps): HttpRoute[] {
  return [openaiRoute(deps), ollamaRoute(deps)];
}
