/**
 * What both engines say about a failure. The refusals both send word for word (MODEL_LOADED,
 * ENGINE_UNAVAILABLE) are templates in src/errors.ts.
 */

/** The text of anything thrown. */
export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
