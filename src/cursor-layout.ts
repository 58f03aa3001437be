/**
 * The cursor layout (version `1`), as data shared by server and client:
 * `"1"` then, per channel, `~<key>.<epoch>.<offset>`, where `key` is the
 * 32-bit FNV-1a hash of the channel name in base 36. Dependency-free, so the
 * browser bundle carries these few lines rather than the server's validation.
 */

/** A position in one channel: the last offset seen, inside an epoch. */
export interface Position {
  epoch: string;
  offset: number;
}

/** The first part of every cursor of this layout. */
export const CURSOR_VERSION = "1";

/** The short key of a channel inside a cursor. */
export function channelKey(channel: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < channel.length; i++) {
    h ^= channel.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0).toString(36);
}

/** One channel's part of a cursor. */
export function cursorSegment(key: string, pos: Position): string {
  return "~" + key + "." + pos.epoch + "." + pos.offset;
}
