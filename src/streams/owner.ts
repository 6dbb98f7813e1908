/**
 * Who starts a stream. The stream's id is made by its owner, so that, with API keys, the id itself
 * tells which key started it; and the stream counts against the owner's stream limit while it is
 * queued or running.
 */
export interface StreamOwner {
  /** Whose `keep_history` conversation its runs continue (`RunRequest.owner`); absent: the shared one. */
  readonly id?: string;
  /** Whether its runs may load a model that is not loaded (an admin key, or anyone without keys); absent: yes. */
  readonly admin?: boolean;
  /** Whose line the stream waits in, in the fair queue: one per API key, or per address without keys. */
  readonly queueKey: string;
  /** The id of a new stream, from a fresh random one. */
  streamId(fresh: string): string;
  /** Counts a new stream, or throws the refusal when the owner's limit is reached. Returns the release, called once when the stream ends. */
  admitStream(): () => void;
}

/** The owner of streams started by the server itself or when nobody needs telling apart: ids as they are, no limit. */
export const ANYONE: StreamOwner = {
  queueKey: '',
  streamId: (fresh) => fresh,
  admitStream: () => () => {},
};
