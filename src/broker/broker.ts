/**
 * The Broker stores messages and tells the hub about them. It knows nothing
 * about connections.
 *
 * Contract (every implementation, memory or Redis):
 * - `publish` assigns the next `offset` of the channel (previous + 1, starting
 *   at 1 in a new epoch), appends the message to the channel's history and
 *   resolves only after the message is stored: an acknowledged publish is
 *   never lost while its history lives. It rejects with
 *   `BrokerUnavailableError` when it cannot store.
 * - An `epoch` names one lifetime of a channel's history. It changes whenever
 *   the history is lost (expiry after `historyTtl`, a restart of the memory
 *   broker, a Redis without the data), and offsets restart with it.
 * - The listener given to `onMessage` is called once per stored message, in
 *   offset order per channel.
 * - `read` returns, in one consistent step, the channel's current position
 *   and, when asked from a position, the messages after it. History is bounded
 *   by `historySize` messages per channel.
 */
import type { Position } from "../hub/cursor.js";

export type { Position };

/** A stored message. `json` is the SPEC §3 message object, encoded once. */
export interface StoredMessage {
  readonly channel: string;
  readonly epoch: string;
  readonly offset: number;
  /** `{"channel":…,"offset":…,"data":…}` */
  readonly json: string;
}

/** What `read` returns. */
export interface ReadResult {
  /** The channel's current epoch. */
  epoch: string;
  /** The channel's latest offset (0 when never published in this epoch). */
  offset: number;
  /** Messages after `since`, oldest first, at most `limit`. */
  messages: StoredMessage[];
  /**
   * True when `since` was given and every message after it is available
   * (all of them are in `messages`, or `limit` cut them and the rest can be
   * read next). False when `since` is absent or its position is gone.
   */
  recovered: boolean;
}

export interface Broker {
  /** Stores a message whose data is already valid JSON text. */
  publish(channel: string, dataJson: string): Promise<StoredMessage>;
  /** The current position of `channel`, and the messages after `since`. */
  read(channel: string, since?: Position, limit?: number): Promise<ReadResult>;
  /**
   * The same read answered at once, by a broker that never waits (the memory
   * broker). Woken long polls use it to answer in the turn they are woken and
   * to share one answer among every poll waiting at the same cursor.
   */
  readSync?(channel: string, since?: Position, limit?: number): ReadResult;
  /** Sets the single fan-out listener. */
  onMessage(listener: (message: StoredMessage) => void): void;
  /** Whether the broker can store messages right now (`/readyz`). */
  isReady(): boolean;
  /** Periodic upkeep (history expiry); called by the server's ticker. */
  sweep(now: number): void;
  close(): Promise<void>;
}

/** Builds the message object JSON once. `dataJson` must already be valid JSON. */
export function encodeMessage(channel: string, offset: number, dataJson: string): string {
  return '{"channel":' + JSON.stringify(channel) + ',"offset":' + offset + ',"data":' + dataJson + "}";
}
