import type { JsonSchema } from '../request-schema.js';

export { bool, compileParams, int, num, object, str, type JsonSchema } from '../request-schema.js';

/** A JSON-RPC id given back as `request_id`. */
export const requestIdSchema: JsonSchema = {
  type: ['string', 'number', 'null'],
  description: 'The JSON-RPC id of the rkllm_run_async request',
};
