import type { Logger } from 'pino';
import type { ClientEnd } from '../../auth.js';
import type { Client, ClientGate } from '../../clients.js';
import type { Engine } from '../../engine/types.js';
import type { LoadedModels } from '../../models/loaded.js';
import type { BufferStore } from '../../streams/buffer-store.js';
import type { StreamHub } from '../../streams/hub.js';

/** What the MCP tools run on, once the model is loaded. */
export interface McpBackend {
  engine: Engine;
  hub: StreamHub;
  /** The hub's buffer store, which `rkllm://streams/{stream_id}` reads. */
  store: BufferStore;
  /** Runs waiting for a slot at most (`engine.queue_limit`), for `model_info`. */
  queueLimit: number;
  /** With a fleet: its instances, models, free slots and queue depth, for `model_info`. */
  fleet?: () => Promise<object>;
  /** The models a tool call may name (`model`). */
  models: LoadedModels;
}

/** What every MCP session is built from. */
export interface McpDeps {
  /**
   * The backend once the model is loaded. Waits while it loads, at most `engine.load_wait_ms`,
   * then rejects with ENGINE_UNAVAILABLE; `signal` (the request's) stops the wait.
   */
  backend(signal: AbortSignal): Promise<McpBackend>;
  gate: ClientGate;
  /** Counts one answered tool call (metrics): the tool, its seconds, and the JSON-RPC code of a tool error. */
  answered?: (tool: string, seconds: number, code?: number) => void;
  /** The server's name and version, as `initialize` reports them. */
  name: string;
  version: string;
  log: Logger;
}

/** The caller of one MCP request: admitted by the gate (key, request rate) under `method`, as JSON-RPC requests are. */
export function admitCaller(gate: ClientGate, peer: ClientEnd, method: string, id: string | number): Client {
  return gate.admit({ jsonrpc: '2.0', method, id }, peer);
}
