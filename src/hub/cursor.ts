/**
 * Cursors (SPEC §2): one opaque string naming a position in every channel of a
 * subscription, made only of URL-unreserved characters so it travels unescaped
 * in a query string, an SSE `id:` line and a `Last-Event-ID` header.
 *
 * Layout (opaque to clients; documented in docs/PROTOCOL.md for debugging):
 * `1` then, per channel, `~<key>.<epoch>.<offset>`, where `key` is a 32-bit
 * FNV-1a hash of the channel name in base 36. Channel names are not spelled
 * out (they may hold `: / @`, which are not unreserved, and they are already
 * in the request); a channel missing from the cursor starts live.
 * A cursor is input from the network: it is validated and never trusted.
 */
import { channelKey, CURSOR_VERSION as VERSION, cursorSegment, type Position } from "../cursor-layout.js";
import { httpError } from "../errors.js";

export { channelKey, cursorSegment, type Position };

const MAX_CURSOR_LENGTH = 32 * 1024;
const SEGMENT_RE = /^([0-9a-z]{1,7})\.([A-Za-z0-9_-]{1,64})\.(0|[1-9][0-9]{0,15})$/;
/** Epochs must be safe inside a cursor segment. */
export const EPOCH_RE = /^[A-Za-z0-9_-]{1,64}$/;

/** Encodes positions of `[channel, position]` pairs. */
export function encodeCursor(entries: Iterable<readonly [string, Position]>): string {
  let s = VERSION;
  for (const [channel, pos] of entries) s += cursorSegment(channelKey(channel), pos);
  return s;
}

/** Decodes a cursor into positions by channel key. Throws `bad_cursor` on anything malformed. */
export function decodeCursor(text: unknown): Map<string, Position> {
  if (typeof text !== "string" || text.length === 0) throw httpError("bad_cursor", "the cursor is empty");
  if (text.length > MAX_CURSOR_LENGTH) throw httpError("bad_cursor", `the cursor is longer than ${MAX_CURSOR_LENGTH} characters`);
  const parts = text.split("~");
  if (parts[0] !== VERSION) throw httpError("bad_cursor", "the cursor is malformed: unknown version");
  const out = new Map<string, Position>();
  for (let i = 1; i < parts.length; i++) {
    const m = SEGMENT_RE.exec(parts[i]!);
    if (!m) throw httpError("bad_cursor", `the cursor is malformed at part ${i}`);
    const offset = Number(m[3]);
    if (!Number.isSafeInteger(offset)) throw httpError("bad_cursor", `the cursor's offset at part ${i} is too large`);
    out.set(m[1]!, { epoch: m[2]!, offset });
  }
  return out;
}

/** A decoded cursor that requests share: read it, never change it. */
export interface SharedCursor {
  /** The cursor's text (as first received). */
  readonly text: string;
  readonly positions: ReadonlyMap<string, Position>;
}

/**
 * {@link decodeCursor} through a small cache of recent cursors, one per
 * server (its admission step): after a message every poller of a channel
 * sends the same cursor, so requests with the same text get the same object,
 * and a held poll keeps that object rather than its own copy.
 */
export class CursorCache {
  private readonly recent = new Map<string, SharedCursor>();

  constructor(
    private readonly max = 256,
    private readonly maxLength = 512,
  ) {}

  /** The decoded cursor of `text`. Throws `bad_cursor` as decodeCursor does. */
  decode(text: string): SharedCursor {
    let c = this.recent.get(text);
    if (c) return c;
    c = { text, positions: decodeCursor(text) };
    if (text.length <= this.maxLength) {
      if (this.recent.size >= this.max) this.recent.clear();
      this.recent.set(text, c);
    }
    return c;
  }
}

/** The position a decoded cursor holds for `channel`, if any. */
export function positionIn(cursor: ReadonlyMap<string, Position> | undefined, channel: string): Position | undefined {
  return cursor?.get(channelKey(channel));
}

/** Validates a `since` object of a WebSocket subscribe frame. */
export function parseSince(since: unknown): Position | undefined {
  if (since === undefined || since === null) return undefined;
  if (typeof since !== "object" || Array.isArray(since)) throw httpError("bad_cursor", "since must be an object {epoch, offset}");
  const { epoch, offset } = since as Record<string, unknown>;
  if (typeof epoch !== "string" || !EPOCH_RE.test(epoch)) throw httpError("bad_cursor", "since.epoch must be a string of 1–64 of A-Z a-z 0-9 _ -");
  if (typeof offset !== "number" || !Number.isSafeInteger(offset) || offset < 0) throw httpError("bad_cursor", "since.offset must be a non-negative integer");
  return { epoch, offset };
}
