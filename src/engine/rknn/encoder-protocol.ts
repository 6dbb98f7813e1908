/**
 * The messages between VisionEncoder (in the server process) and its worker (a child process that
 * owns the RKNN context), over the channel of worker-process.ts.
 */
import type { TensorAttr } from './abi.js';

export type EncoderCommand =
  /** Loads the library, `rknn_init` from the bytes of the model file, `rknn_set_core_mask` unless null, and the queries. Replies {@link Opened}. */
  | { op: 'open'; lib: string; model: string; coreMask: number | null }
  /** Sets the input (laid out as the input attr asks), runs, and gets `count` floats. Replies {@link Encoded}. */
  | { op: 'encode'; pixels: Uint8Array; count: number };

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
