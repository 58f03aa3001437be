/**
 * A long poll repeated on its kept-alive connection. A long-polling client
 * sends the same request again and again; only its cursor changes. When the
 * next request on the connection is that same poll byte for byte but for the
 * cursor's value, it is served with the admission of the first (the one
 * admission.ts made) instead of being parsed into a request and admitted
 * again: nothing admission reads has changed (the same target but for the
 * cursor, the same header fields and so the same Origin, client address and
 * keep-alive; the same socket), and the new cursor is decoded and checked as
 * admission decodes one. This is most of what a poll costs the server
 * beyond its two system calls.
 *
 * Only what admission decides from the request alone is reused. What can
 * change between two identical requests sends the repeat through the whole
 * admission instead: a token that has expired or been revoked since (the
 * same token verifies to the same claims, and allows the same channels), a
 * server that is draining. A repeat is never offered when hooks are
 * configured (the application decides each time), nor for a poll of the
 * event feed. What follows admission (the connection slot of a held poll,
 * presence, the answer) is the same as for any poll: `PollTransport.serve`.
 */
import type { IncomingMessage } from "node:http";
import type { Socket } from "node:net";
import { queryOf } from "../http/request-path.js";
import { offerRepeat, type Repeatable } from "../transports/bare.js";
import type { Poller } from "../transports/poll.js";
import type { SubscribeRequest } from "./admission.js";
import type { Door } from "./door.js";

/** Characters of a cursor (URL-unreserved: the same whether percent-decoded or not). */
const CURSOR_CHAR = new Uint8Array(256);
for (const c of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-") CURSOR_CHAR[c.charCodeAt(0)] = 1;
/** A cursor longer than this is not looked for in a repeat (the whole admission reads it). */
const MAX_CURSOR = 4096;

/**
 * Offers the poll `req` (admitted as `s`, on a bare socket) for repeating on
 * its connection when it is kept alive, or withdraws what was offered there
 * when it cannot be repeated.
 */
export function offerPollRepeat(d: Door, req: IncomingMessage, socket: Socket, s: SubscribeRequest, cors: Record<string, string>, who: Poller, keepAlive: boolean): void {
  offerRepeat(socket, keepAlive && repeatable(d, req, s) ? PollRepeat.of(d, req, s, cors, who) : undefined);
}

function repeatable(d: Door, req: IncomingMessage, s: SubscribeRequest): boolean {
  const feed = d.ctx.config.eventsChannel;
  return !d.ctx.hooks.enabled && !s.asServer && (feed === undefined || !s.channels.includes(feed)) && s.shared !== undefined && req.httpVersionMajor === 1;
}

class PollRepeat implements Repeatable {
  length = 0;

  private constructor(
    private readonly d: Door,
    private readonly s: SubscribeRequest,
    private readonly cors: Record<string, string>,
    private readonly who: Poller,
    /** The request line up to the cursor's value. */
    private readonly before: Buffer,
    /** From after the cursor's value to the end of the head. */
    private readonly after: Buffer,
  ) {}

  /**
   * The repeatable form of `req`, or undefined: its target must hold exactly
   * one `cursor=` parameter (and no `lastEventId=`, which would come first),
   * the value the admission read.
   */
  static of(d: Door, req: IncomingMessage, s: SubscribeRequest, cors: Record<string, string>, who: Poller): PollRepeat | undefined {
    const target = req.url ?? "";
    let at = -1;
    for (let i = target.indexOf("cursor="); i > 0; i = target.indexOf("cursor=", i + 1)) {
      const c = target.charCodeAt(i - 1);
      if (c === 0x3f /* ? */ || c === 0x26 /* & */) {
        at = i + 7;
        break;
      }
    }
    if (at < 0) return undefined;
    let end = at;
    while (end < target.length && CURSOR_CHAR[target.charCodeAt(end)] === 1) end++;
    const params = queryOf(target).searchParams;
    const cursors = params.getAll("cursor");
    if (cursors.length !== 1 || cursors[0] !== target.slice(at, end) || params.has("lastEventId") || cursors[0] !== s.shared?.text) return undefined;
    let head = target.slice(end) + " HTTP/1." + req.httpVersionMinor + "\r\n";
    const raw = req.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) head += raw[i] + ": " + raw[i + 1] + "\r\n";
    head += "\r\n";
    return new PollRepeat(d, s, cors, who, Buffer.from("GET " + target.slice(0, at), "latin1"), Buffer.from(head, "latin1"));
  }

  match(bytes: Buffer): string | undefined {
    const ctx = this.d.ctx;
    if (ctx.draining) return undefined;
    const claims = this.s.claims;
    if (claims !== undefined && (ctx.auth.now() >= claims.expMs || ctx.auth.isRevoked(claims))) return undefined;
    const before = this.before;
    const after = this.after;
    const from = before.length;
    if (bytes.length < from + 1 + after.length || bytes.compare(before, 0, from, 0, from) !== 0) return undefined;
    let end = from;
    const limit = Math.min(bytes.length, from + MAX_CURSOR);
    while (end < limit && CURSOR_CHAR[bytes[end]!] === 1) end++;
    if (end === from || end + after.length > bytes.length || bytes.compare(after, 0, after.length, end, end + after.length) !== 0) return undefined;
    this.length = end + after.length;
    return bytes.toString("latin1", from, end);
  }

  serve(socket: Socket, cursor: string, rest: Buffer): void {
    const { d, s, cors } = this;
    try {
      const shared = d.admission.cursor(cursor);
      d.ctx.stats.pollRepeats++;
      d.poll.serve(socket, s.ip, s.channels, shared, s.hold, cors, s.claims, true, rest, this.who)?.catch((err) => d.fail(socket, err, cors));
    } catch (err) {
      d.fail(socket, err, cors);
    }
  }
}
