/** Channel names and channel patterns (SPEC §2). */
import { httpError } from "../errors.js";

const CHANNEL_RE = /^[A-Za-z0-9_\-:.@/]{1,255}$/;

/** Whether `name` is a valid channel name: 1–255 of `A-Z a-z 0-9 _ - : . @ /`. */
export function isChannelName(name: unknown): name is string {
  return typeof name === "string" && CHANNEL_RE.test(name);
}

/** Throws `bad_channel` unless `name` is a valid channel name. */
export function assertChannelName(name: unknown): string {
  if (isChannelName(name)) return name;
  const shown = typeof name === "string" ? JSON.stringify(name.length > 60 ? name.slice(0, 60) + "…" : name) : typeof name;
  throw httpError("bad_channel", `invalid channel name ${shown}: use 1–255 characters of A-Z a-z 0-9 _ - : . @ /`);
}

/** The part before the first `:`, or "" when there is none. */
export function namespaceOf(channel: string): string {
  const i = channel.indexOf(":");
  return i < 0 ? "" : channel.slice(0, i);
}

/**
 * A compiled list of channel patterns. `*` matches any run of characters
 * (`game:*` matches every channel of the `game` namespace; `*` matches all).
 */
export class ChannelPatterns {
  private readonly exact = new Set<string>();
  private readonly prefixes: string[] = [];
  private readonly regexes: RegExp[] = [];
  readonly size: number;

  constructor(patterns: readonly string[]) {
    for (const p of patterns) {
      const star = p.indexOf("*");
      if (star < 0) this.exact.add(p);
      else if (star === p.length - 1) this.prefixes.push(p.slice(0, -1));
      else this.regexes.push(new RegExp("^" + p.split("*").map(escapeRe).join(".*") + "$"));
    }
    this.size = patterns.length;
  }

  matches(channel: string): boolean {
    if (this.exact.has(channel)) return true;
    for (const p of this.prefixes) if (channel.startsWith(p)) return true;
    for (const r of this.regexes) if (r.test(channel)) return true;
    return false;
  }
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}
