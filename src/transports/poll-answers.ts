/**
 * Long-poll answers, and the table that lets the polls of one pass share
 * them. After a message every poller of a channel polls again with the same
 * cursor, and the polls that one pass reads at one cursor on the same
 * channels get the same answer: it is worked out and encoded once.
 *
 * The table finds an answer by the cursor's object, not its text: requests
 * that send the same cursor text share one decoded cursor (CursorCache), so
 * a lookup is an identity hash, with no key string built, hashed and
 * compared for every poll. Two objects with the same text (the cache was
 * full) only miss the sharing.
 */
import { encodeCursor, positionIn, type SharedCursor } from "../hub/cursor.js";
import type { ChannelsRead, CursorPositions, Hub } from "../hub/hub.js";
import { pollAnswerJson } from "../wire.js";

/** Most messages in one answer; the client polls again at once for the rest. */
export const POLL_BATCH_LIMIT = 1000;

/** An answer ready to send: its body, the body's length in bytes, and how many messages it carries. */
export interface PollAnswer {
  readonly body: string;
  readonly bytes: number;
  readonly messages: number;
}

/** `{"messages":[…],"cursor":"…","resets":[…],"presence":[…]}`; the messages and presence events are already JSON. */
export function encodeAnswer(c: ChannelsRead, presence?: readonly string[]): PollAnswer {
  const body = pollAnswerJson(c.messages, encodeCursor(c.positions), c.resets, presence);
  return { body, bytes: Buffer.byteLength(body), messages: c.messages.length };
}

/**
 * Whether a held poll has something to answer: messages, a reset, or a
 * channel the cursor did not name that has just been given a position
 * (answered at once, so the client holds it before anything is published there).
 */
export function hasNews(c: ChannelsRead, channels: readonly string[], cursor: CursorPositions): boolean {
  if (c.messages.length > 0 || c.resets.length > 0) return true;
  let named = 0;
  for (const ch of channels) if (positionIn(cursor, ch) !== undefined) named++;
  return c.positions.length > named;
}

/** One answer of a pass: for polls at its cursor on `channels` (null: nothing new), and the next for the same cursor. */
interface Shared {
  readonly channels: readonly string[];
  readonly answer: PollAnswer | null;
  readonly next: Shared | undefined;
}

function sameChannels(a: readonly string[], b: readonly string[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The answers worked out in one pass, by (cursor object, channels). Nothing may be stored while a table is in use. */
export class AnswerTable {
  private readonly byCursor = new Map<SharedCursor, Shared>();

  /**
   * What follows `cursor` on `channels` when the hub reads at once, as an
   * answer, or null when nothing is new; worked out once per (cursor, channels).
   */
  read(hub: Hub, cursor: SharedCursor, channels: readonly string[]): PollAnswer | null {
    const first = this.byCursor.get(cursor);
    for (let s = first; s !== undefined; s = s.next) if (sameChannels(s.channels, channels)) return s.answer;
    const c = hub.readAfterNow(channels, cursor.positions, POLL_BATCH_LIMIT);
    const answer = hasNews(c, channels, cursor.positions) ? encodeAnswer(c) : null;
    this.byCursor.set(cursor, { channels, answer, next: first });
    return answer;
  }
}
