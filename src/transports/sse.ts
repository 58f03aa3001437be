/**
 * Server-Sent Events transport (SPEC §3). Every message is `id: <cursor>`
 * plus an unnamed event whose data is the message object, so a plain
 * browser EventSource resumes by itself through `Last-Event-ID`. The data part
 * is encoded once per message; only the short `id:` line is per connection.
 *
 * A stream is written either through node:http's response (servers Heartline
 * is attached to) or, on servers Heartline creates, straight to the socket
 * once the request is taken out of node:http like an upgrade (see
 * StreamRequest in bare.ts): an idle stream then holds no parser, request or
 * response, and each write skips the chunked encoding.
 */
import type { ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { Session } from "../hooks/runner.js";
import type { TokenClaims } from "../auth/tokens.js";
import type { CloseReason } from "../close-codes.js";
import { HeartlineError } from "../errors.js";
import { h2StreamOf } from "../http/h2.js";
import { cursorSegment, positionIn, type Position } from "../hub/cursor.js";
import type { Outgoing, PresenceOut, Subscription } from "../hub/hub.js";
import { headerLines, sseDisconnectEvent, sseErrorEvent, sseEvent, sseIdLine, sseRetry, sseUnsubscribedEvent, statusLine } from "../wire.js";
import { bareHead, type HttpOutput } from "./bare.js";
import { Connection, type ServerContext } from "./connection.js";

const CONN = Symbol("heartline.connection");
/** Where a stream's bytes go: node:http's response, or the bare socket (see bare.ts). Both are writable streams with the same calls. */
export type SseOutput = HttpOutput & { [CONN]?: SseConnection };

/** Reconnection delay the stream announces first (SPEC: 1000–5000 ms). */
export const SSE_RETRY_MS = 2000;
const PING_EVENT = Buffer.from(sseEvent("ping", undefined, "{}"));
/** The last event of a stream the server ends on purpose, by close reason. */
const FINAL_EVENTS: Partial<Record<CloseReason, string>> = {
  token_expired: sseErrorEvent("token_expired", "the token has expired; reconnect with a new one"),
  token_revoked: sseErrorEvent("token_revoked", "the token was revoked; reconnect with a new one"),
  disconnected: sseDisconnectEvent(false),
  disconnected_reconnect: sseDisconnectEvent(true),
};
const RETRY_LINE = sseRetry(SSE_RETRY_MS);
const SSE_HEADERS = {
  "Content-Type": "text/event-stream; charset=utf-8",
  "Cache-Control": "no-cache, no-transform",
  Connection: "keep-alive",
  "X-Accel-Buffering": "no",
} as const;
/** HTTP/2 forbids connection-specific headers (see h2.ts): its streams get the others. */
const H2_SSE_HEADERS = {
  "Content-Type": SSE_HEADERS["Content-Type"],
  "Cache-Control": SSE_HEADERS["Cache-Control"],
  "X-Accel-Buffering": SSE_HEADERS["X-Accel-Buffering"],
} as const;
/**
 * The head of a stream written on the bare socket: no Content-Length and no
 * chunked encoding, so the body runs until the connection closes (RFC 9112
 * §6.3), which `Connection: close` announces.
 */
const RAW_HEAD = statusLine(200, "OK") + headerLines({ ...SSE_HEADERS, Connection: "close" });


export class SseConnection extends Connection {
  readonly kind = "sse" as const;

  constructor(
    ctx: ServerContext,
    ip: string,
    readonly out: SseOutput,
  ) {
    super(ctx, ip);
    out[CONN] = this;
    out.on("close", onClose);
  }

  /** True while the response is corked for this turn (see batch.ts). */
  corked = false;

  cork(): void {
    this.out.cork();
  }

  uncork(): void {
    this.corked = false;
    this.out.uncork();
  }

  /** The cursor of every channel this stream has a position in. */
  cursor(): string {
    let s = "1";
    const subs = this.subs;
    for (let i = 0; i < subs.length; i++) if (subs[i]!.epoch !== "") s += cursorSegment(subs[i]!.key, subs[i]!);
    return s;
  }

  deliver(sub: Subscription, msg: Outgoing): void {
    // On one channel, the cursor names this channel alone, at this message:
    // the whole event is the same for every such stream (Outgoing.sseSolo).
    const solo = this.subs.length === 1 && this.subs[0] === sub;
    const id = solo ? undefined : sseIdLine(this.cursor());
    const body = solo ? msg.sseSolo(sub.key) : msg.sse;
    if (!this.writable((id?.length ?? 0) + body.length)) return;
    const out = this.out;
    if (!this.corked) {
      this.corked = true;
      this.ctx.registry.batch.corkUntilFlush(this);
    }
    if (id !== undefined) out.write(id);
    out.write(body);
    this.lastSendAt = this.ctx.now;
    this.ctx.stats.delivered.sse++;
  }

  reset(sub: Subscription, epoch: string, offset: number): void {
    this.writeText(sseEvent("reset", this.cursor(), JSON.stringify({ channel: sub.channel, epoch, offset })));
  }

  presence(_sub: Subscription, out: PresenceOut): void {
    this.writeText(out.sse);
  }

  subscribed(): void {
    // SSE has no per-channel acknowledgement; the first `id:` line follows the setup.
  }

  protected sendUnsubscribed(channel: string): void {
    this.writeText(sseUnsubscribedEvent(channel, this.cursor()));
  }

  sendPing(): void {
    if (!this.writable(PING_EVENT.length)) return;
    this.out.write(PING_EVENT);
    this.lastSendAt = this.ctx.now;
    this.ctx.stats.heartbeats.sse++;
  }

  /** Writes an event given as text (rare events: resets, position, errors). */
  writeText(text: string): void {
    if (!this.writable(text.length)) return;
    this.out.write(text);
    this.lastSendAt = this.ctx.now;
  }

  bufferedBytes(): number {
    return this.out.writableLength;
  }

  private writable(bytes: number): boolean {
    if (this.closed) return false;
    if (this.overBudget(bytes)) {
      this.close("slow_consumer");
      return false;
    }
    return true;
  }

  protected end(reason: CloseReason): void {
    // A slow consumer's queue is dropped at once; otherwise end the stream
    // cleanly so EventSource reconnects after `retry`.
    if (reason === "slow_consumer") this.out.destroy();
    else if (!this.out.writableEnded) {
      const last = FINAL_EVENTS[reason];
      if (last !== undefined) this.out.end(last);
      else this.out.end();
      // A bare socket stays half-open until the peer closes its side: cut it if that never comes.
      this.terminateAt = this.ctx.now + 5000;
      this.ctx.registry.closing.add(this);
    }
  }

  terminate(): void {
    this.ctx.registry.closing.delete(this);
    this.out.destroy();
  }
}

function onClose(this: SseOutput): void {
  const c = this[CONN];
  if (!c) return;
  c.ctx.registry.closing.delete(c);
  c.close("going_away");
}

/**
 * Starts a stream through node:http's response: headers, then `retry:`. On
 * HTTP/2 the events are then written to the request's stream itself, which
 * corks, counts its unsent bytes and ends like a socket, alone: the
 * session's other streams go on (its socket, never written to here, is the
 * session's).
 */
export function openSseResponse(res: ServerResponse, headers: Record<string, string>): SseOutput {
  const stream = h2StreamOf(res);
  if (stream !== undefined) {
    res.writeHead(200, { ...headers, ...H2_SSE_HEADERS });
    stream.write(RETRY_LINE);
    return stream as unknown as SseOutput;
  }
  res.writeHead(200, { ...headers, ...SSE_HEADERS });
  res.write(RETRY_LINE);
  res.socket?.setNoDelay(true);
  return res;
}

/**
 * Starts a stream on a socket taken out of node:http: the head and `retry:`
 * in one write. What the client sends from now on is read and dropped, so
 * that its end of the connection is noticed.
 */
export function openSseSocket(socket: Socket, headers: Record<string, string>): SseOutput {
  socket.setNoDelay(true);
  socket.write(bareHead(RAW_HEAD, headers) + RETRY_LINE);
  // node:http servers allow half-open sockets: a client that ends its side is gone.
  socket.on("end", onClose);
  socket.resume();
  return socket;
}

/**
 * Serves an admitted SSE request whose stream is open (headers and `retry:`
 * written): the subscriptions (replay from the cursor), then an
 * `event: position` carrying the cursor as its id, so a client that hears
 * nothing still resumes from here.
 */
export async function serveSse(
  ctx: ServerContext,
  out: SseOutput,
  ip: string,
  channels: string[],
  cursor: ReadonlyMap<string, Position> | undefined,
  claims?: TokenClaims,
  session?: Session,
  client?: string,
): Promise<void> {
  const conn = new SseConnection(ctx, ip, out);
  conn.admitted(claims, session, client);
  ctx.registry.track(conn);
  // The client may have gone while its token was checked: its close event is past.
  if (out.destroyed) {
    conn.close("going_away");
    return;
  }
  try {
    await Promise.all(channels.map((c) => conn.subscribe(c, positionIn(cursor, c))));
  } catch (err) {
    if (!conn.closed) {
      const e = err instanceof HeartlineError ? err : new HeartlineError("internal_error", "unexpected error; it was logged");
      if (!(err instanceof HeartlineError)) ctx.log.error({ err }, "SSE subscribe failed");
      conn.writeText(sseEvent("error", undefined, JSON.stringify(e.toJSON().error)));
      conn.close("internal_error");
    }
    return;
  }
  // A named event with data: every EventSource implementation records its id,
  // while a bare id: line is dropped by some of them.
  if (!conn.closed) conn.writeText(sseEvent("position", conn.cursor(), "{}"));
}
