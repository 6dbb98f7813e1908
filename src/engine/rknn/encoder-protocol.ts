/**
 * The messages between VisionEncoder (in the server process) and its worker (a child process that
 * owns the RKNN context), over Node's IPC channel with the "advanced" serialization, so typed
 * arrays cross as they are. Each request gets exactly one reply.
 */
import type { TensorAttr } from './abi.js';

export type EncoderRequest =
  /** Loads the library, `rknn_init` from the bytes of the model file, `rknn_set_core_mask` unless null, and the queries. Replies {@link Opened}. */
  | { id: number; op: 'open'; lib: string; model: string; coreMask: number | null }
  /** Sets the input (laid out as the input attr asks), runs, and gets `count` floats. Replies {@link Encoded}. */
  | { id: number; op: 'encode'; pixels: Uint8Array; count: number };

/** What the model says of itself. */
export interface Opened {
  n_input: number;
  n_output: number;
  input: TensorAttr;
  output: TensorAttr;
}

export interface Encoded {
  embed: Float32Array;
  /** From `rknn_inputs_set` to the end of `rknn_outputs_get`. */
  run_ms: number;
}

export type EncoderReply =
  | { id: number; ok: true; value: unknown }
  /** `fn` and `code` when a runtime function answered a failure status. */
  | { id: number; ok: false; message: string; fn?: string; code?: number };

/** Written by the worker to stderr after a failed request, then the request id and a newline. */
export const ENCODER_MARK = '\u0001rknn-encoder-mark ';
