/**
 * Cursors are opaque to clients, and the client sends back the latest one it
 * was given whenever it can. Two cases need the documented layout (version
 * `1`: `"1"` then `~<key>.<epoch>.<offset>` per channel, key = FNV-1a 32-bit
 * of the channel name in base 36): moving from WebSocket, which speaks
 * `{epoch, offset}`, to SSE or polling, which speak cursors; and back. Both
 * directions live here, and nowhere else.
 */
import { channelKey, CURSOR_VERSION, cursorSegment } from "../cursor-layout.js";
import type { Position } from "./types.js";

/**
 * Builds a cursor from per-channel positions; channels without one are left
 * out (they start live). Returns `undefined` when no channel has a position.
 */
export function buildCursor(positions: Iterable<readonly [string, Position | undefined]>): string | undefined {
  let s = CURSOR_VERSION;
  for (const [channel, p] of positions) if (p) s += cursorSegment(channelKey(channel), p);
  return s === CURSOR_VERSION ? undefined : s;
}

/**
 * Reads the positions of `channels` out of a cursor. A cursor of another
 * layout yields nothing, and the client keeps sending it back unchanged.
 */
export function readCursor(cursor: string, channels: Iterable<string>): Map<string, Position> {
  const out = new Map<string, Position>();
  const [version, ...segments] = cursor.split("~");
  if (version !== CURSOR_VERSION) return out;
  const byKey = new Map<string, Position>();
  // Epochs hold no ".", so a segment splits cleanly; the server made it, and validated it.
  for (const seg of segments) {
    const [key, epoch, offset] = seg.split(".");
    byKey.set(key!, { epoch: epoch!, offset: Number(offset) });
  }
  for (const c of channels) {
    const p = byKey.get(channelKey(c));
    if (p) out.set(c, p);
  }
  return out;
}
