import { AUTHENTICATE, type ClientGate } from '../clients.js';
import type { Method } from '../jsonrpc/dispatcher.js';
import { method } from './core.js';
import { object, str } from '../request-schema.js';

/** `authenticate`: how a TCP, WebSocket or stdio client presents its API key, once per connection. */
export function authenticateMethod(gate: ClientGate): [string, Method] {
  return method<{ api_key: string }>(
    AUTHENTICATE,
    'Binds an API key to this live connection (TCP, WebSocket, stdio), so its later requests need none. ' +
      'Over HTTP send "Authorization: Bearer <key>" instead; over UDP put "api_key" in every request. A wrong key answers -32015.',
    object({ api_key: str('One of the keys in the setting auth.api_keys', 4096) }, ['api_key']),
    (params, ctx) => gate.authenticate(params.api_key, ctx.client, ctx.connection, ctx.transport),
  );
}
