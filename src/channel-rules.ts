/**
 * Channel-name rules (SPEC §2), the one copy shared by the server, the
 * browser client, the option schema and token claims. Dependency-free and
 * plain values, so the browser bundle carries only the regular expression it
 * uses.
 */

/** The characters of a channel name, as error messages spell them. */
export const CHANNEL_CHARS = "A-Z a-z 0-9 _ - : . @ /";

/** A channel name: 1–255 characters of {@link CHANNEL_CHARS}. */
export const CHANNEL_NAME_RE = /^[A-Za-z0-9_\-:.@/]{1,255}$/;

/** A channel pattern (token claims, `--client-publish`): the same characters and `*`, 1–255 of them. */
export const CHANNEL_PATTERN_RE = /^[A-Za-z0-9_\-:.@/*]{1,255}$/;

/** A channel-name prefix (`GET /api/channels?prefix=`): the same characters, 0–255 of them. */
export const CHANNEL_PREFIX_RE = /^[A-Za-z0-9_\-:.@/]{0,255}$/;
