import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { SetLevelRequestSchema, type LoggingLevel, type ServerNotification } from '@modelcontextprotocol/sdk/types.js';

const LEVELS: readonly LoggingLevel[] = ['debug', 'info', 'notice', 'warning', 'error', 'critical', 'alert', 'emergency'];

/** What a request handler gets to send notifications related to its request. */
export interface Notifier {
  sendNotification: (notification: ServerNotification) => Promise<void>;
}

/**
 * One session's log notifications: `logging/setLevel` sets the lowest level it gets (`info` until
 * then). Only what concerns the session's own requests is sent, each on its request's stream.
 */
export class SessionLog {
  #level: LoggingLevel = 'info';

  constructor(server: McpServer) {
    server.server.setRequestHandler(SetLevelRequestSchema, (request) => {
      this.#level = request.params.level;
      return {};
    });
  }

  /** Sends `data` to the caller of one request as `notifications/message`, when `level` is at or above the session's. */
  send(extra: Notifier, level: LoggingLevel, data: string): void {
    if (LEVELS.indexOf(level) < LEVELS.indexOf(this.#level)) return;
    extra.sendNotification({ method: 'notifications/message', params: { level, logger: 'rkllm-mcp', data } }).catch(() => {});
  }
}
