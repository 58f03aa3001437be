/** Channel names and channel patterns (SPEC §2). */
import { CHANNEL_CHARS, CHANNEL_NAME_RE } from "../channel-rules.js";
import { httpError } from "../errors.js";

/** Whether `name` is a valid channel name: 1–255 of `A-Z a-z 0-9 _ - : . @ /`. */
export function isChannelName(name: unknown): name is string {
  return typeof name === "string" && CHANNEL_NAME_RE.test(name);
}

/** Throws `bad_channel` unless `name` is a valid channel name. */
export function assertChannelName(name: unknown): string {
  if (isChannelName(name)) return name;
  const shown = typeof name === "string" ? JSON.stringify(name.length > 60 ? name.slice(0, 60) + "…" : name) : typeof name;
  throw httpError("bad_channel", `invalid channel name ${shown}: use 1–255 characters of ${CHANNEL_CHARS}`);
}

/** The part before the first `:`, or "" when there is none. */
export function namespaceOf(channel: string): string {
  const i = channel.indexOf(":");
  return i < 0 ? "" : channel.slice(0, i);
}

/**
 * A compiled list of channel patterns. `*` matches any run of characters,
 * the empty run included (`game:*` matches every channel of the `game`
 * namespace; `*` matches all); every other character matches itself.
 * Every pattern of Heartline (token claims, `--client-publish`) is matched
 * here, without regular expressions: exact names by a set, `prefix*` by
 * `startsWith`, anything else by {@link wildcardMatch}, whose time is bounded
 * by the product of the two lengths, whatever the input.
 */
export class ChannelPatterns {
  private readonly exact = new Set<string>();
  private readonly prefixes: string[] = [];
  private readonly wildcards: string[] = [];
  readonly size: number;

  constructor(patterns: readonly string[]) {
    for (const p of patterns) {
      const star = p.indexOf("*");
      if (star < 0) this.exact.add(p);
      else if (star === p.length - 1) this.prefixes.push(p.slice(0, -1));
      else this.wildcards.push(p);
    }
    this.size = patterns.length;
  }

  matches(channel: string): boolean {
    if (this.exact.has(channel)) return true;
    for (const p of this.prefixes) if (channel.startsWith(p)) return true;
    for (const p of this.wildcards) if (wildcardMatch(p, channel)) return true;
    return false;
  }
}

const STAR = 42; // "*"

/**
 * Whether `text` matches `pattern`, where `*` matches any run of characters
 * (the empty one included) and every other character itself. Greedy two
 * pointers: on a mismatch, the last `*` seen takes one more character and
 * matching resumes after it. Earlier stars never need revisiting (what a later
 * star can absorb includes whatever an earlier one could), so the work is at
 * most `pattern.length × text.length` steps, with no backtracking blow-up.
 */
export function wildcardMatch(pattern: string, text: string): boolean {
  const pn = pattern.length;
  const tn = text.length;
  let p = 0;
  let t = 0;
  let star = -1;
  let mark = 0;
  while (t < tn) {
    const c = p < pn ? pattern.charCodeAt(p) : -1;
    if (c === STAR) {
      star = p++;
      mark = t;
    } else if (c === text.charCodeAt(t)) {
      p++;
      t++;
    } else if (star >= 0) {
      p = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (p < pn && pattern.charCodeAt(p) === STAR) p++;
  return p === pn;
}
