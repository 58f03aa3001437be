/** What a reader asked from a position is answered: the reset rule, and reads of several channels (see Hub.readAfter). */
import type { ReadResult, StoredMessage } from "../broker/broker.js";
import type { PollReset } from "../wire.js";
import type { Position } from "./cursor.js";

/** A decoded cursor: each channel's position, by channel key. */
export type CursorPositions = ReadonlyMap<string, Position> | undefined;

/** What follows a cursor on a list of channels (see {@link Hub.readAfter}). */
export interface ChannelsRead {
  /** The messages after the cursor, channel by channel, each oldest first. */
  messages: StoredMessage[];
  /** The channels whose position history can no longer serve, each with where it now stands. */
  resets: PollReset[];
  /** Where each channel stands after `messages` and `resets`: the next cursor. */
  positions: Array<[string, Position]>;
}

/**
 * The reset rule, for a reader that asked from `since` and was answered `r`:
 * a position that history can no longer serve (expired, evicted, or of
 * another epoch) is announced with a reset to the channel's current position.
 * Subscriptions (`recover`) and polls (`readAfter`) both follow it; a
 * subscription that is live meets the same loss as a gap or an epoch change
 * in the stream (`emit`).
 */
export function lost(since: Position | undefined, r: ReadResult): boolean {
  return since !== undefined && !r.recovered;
}

/** Adds one channel's read from `since` to `out`. */
export function addRead(out: ChannelsRead, channel: string, since: Position | undefined, r: ReadResult): void {
  if (lost(since, r)) {
    out.resets.push({ channel, epoch: r.epoch, offset: r.offset });
    out.positions.push([channel, { epoch: r.epoch, offset: r.offset }]);
  } else if (since) {
    for (const m of r.messages) out.messages.push(m);
    const last = r.messages.length > 0 ? r.messages[r.messages.length - 1]!.offset : since.offset;
    out.positions.push([channel, { epoch: r.epoch, offset: last }]);
  } else {
    out.positions.push([channel, { epoch: r.epoch, offset: r.offset }]);
  }
}
